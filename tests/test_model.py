import math

import pytest
import torch
from model_helpers import random_model, tiny_config

from lit_gpt.config import Config
from lit_gpt.generate import generate
from lit_gpt.model import GPT, RMSNorm, flops_per_token, num_parameters


def test_tiny_llama_parameter_count_and_flops():
    config = Config.from_name("tiny_LLaMA_1b", kernels="torch")
    with torch.device("meta"):
        model = GPT(config)
    assert sum(p.numel() for p in model.parameters()) == 1_100_048_384
    assert num_parameters(config) == 1_100_048_384
    embedding = config.padded_vocab_size * config.n_embd
    assert num_parameters(config, exclude_embedding=True) == 1_100_048_384 - embedding
    assert flops_per_token(config) == 6 * (1_100_048_384 - embedding) + 12 * 22 * 2048 * 2048 == 7_314_370_560


def _check_tinyllama_init(model: GPT) -> None:
    d, n_layer = model.config.n_embd, model.config.n_layer
    std, residual_std = math.sqrt(2 / (5 * d)), 1 / math.sqrt(d) / n_layer
    for name, p in model.named_parameters():
        if isinstance(model.get_submodule(name.rsplit(".", 1)[0]), RMSNorm):
            assert torch.all(p == 1), name
            continue
        want = residual_std if name.endswith(("attn.proj.weight", "mlp.proj.weight")) else std
        assert p.std().item() == pytest.approx(want, rel=0.03), name
        assert abs(p.mean().item()) < want / 20, name


@pytest.mark.parametrize("on_meta", [False, True], ids=["eager", "meta_to_empty"])
def test_tinyllama_init(on_meta):
    config = Config(
        name="medium",
        n_layer=3,
        n_head=8,
        n_query_groups=2,
        n_embd=512,
        intermediate_size=1376,
        vocab_size=1024,
        block_size=128,
        kernels="torch",
    )
    torch.manual_seed(0)
    if not on_meta:
        model = GPT(config)
    else:
        with torch.device("meta"):
            model = GPT(config)
        model.to_empty(device="cpu")
        # what to_empty leaves is arbitrary memory: make "init never ran" impossible to miss
        for p in model.parameters():
            p.data.fill_(0.5)
        model.init_weights()
    _check_tinyllama_init(model)
    assert model.rope_cos.shape == (128, 64)
    reference = GPT(config)
    torch.testing.assert_close(model.rope_cos, reference.rope_cos)
    assert torch.isfinite(model(torch.randint(0, 1024, (1, 16)))).all()


@torch.no_grad()
def test_kv_cache_steps_match_full_recomputation():
    model = random_model(tiny_config())
    tokens = torch.randint(0, 128, (1, 64), generator=torch.Generator().manual_seed(0))
    full = model(tokens)
    model.setup_kv_cache(batch_size=1)
    prompt_len = 40  # prefill a long prompt in one pass, then one position at a time
    prefill = model(tokens[:, :prompt_len], input_pos=torch.arange(prompt_len))
    torch.testing.assert_close(prefill, full[:, :prompt_len], atol=1e-5, rtol=0)
    for pos in range(prompt_len, 64):
        step = model(tokens[:, pos : pos + 1], input_pos=torch.tensor([pos]))
        torch.testing.assert_close(step[:, 0], full[:, pos], atol=1e-5, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize("prompt_len", [1, 45])
def test_cached_greedy_generation_equals_recomputation(prompt_len):
    model = random_model(tiny_config())
    prompt = torch.randint(0, 128, (prompt_len,), generator=torch.Generator().manual_seed(prompt_len))
    new = 64 - prompt_len
    cached = list(generate(model, prompt, new, temperature=0))
    tokens = prompt.tolist()
    for _ in range(new):  # no cache: the whole sequence again for every token
        tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    assert cached == tokens[prompt_len:]
    assert all(block.attn.kv_cache is None for block in model.transformer.h)


@torch.no_grad()
def test_max_seq_length_sizes_rope_and_kv_cache():
    model = random_model(tiny_config())
    model.max_seq_length = 24
    model.setup_kv_cache(batch_size=2)
    assert model.transformer.h[0].attn.kv_cache.k.shape == (2, 2, 24, 8)
    assert model.rope_cos.shape == (24, 8)
    with pytest.raises(ValueError, match="exceeds max_seq_length 24"):
        model(torch.zeros(1, 25, dtype=torch.long))
    # beyond block_size: the RoPE tables grow and the first positions keep their values
    short = model.rope_cos.clone()
    model.max_seq_length = 80
    assert model.rope_cos.shape == (80, 8)
    torch.testing.assert_close(model.rope_cos[:24], short)
    assert model(torch.zeros(1, 80, dtype=torch.long)).shape == (1, 80, 128)
    model.setup_kv_cache(batch_size=1, max_seq_length=70)
    assert model.max_seq_length == 70 and model.transformer.h[1].attn.kv_cache.v.shape == (1, 2, 70, 8)


def test_input_pos_without_cache_raises():
    model = random_model(tiny_config())
    with pytest.raises(RuntimeError, match="setup_kv_cache"):
        model(torch.zeros(1, 3, dtype=torch.long), input_pos=torch.arange(3))


def test_loss_equals_cross_entropy_of_logits():
    model = random_model(tiny_config())
    tokens = torch.randint(0, 128, (2, 17), generator=torch.Generator().manual_seed(0))
    inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
    targets[0, :4] = -100
    logits = model(inputs)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 128), targets.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(model(inputs, targets=targets), expected)


def _packed_documents(bos_id: int, lengths: list[int], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    docs = []
    for n in lengths:
        doc = torch.randint(2, 128, (n,), generator=g)
        doc[0] = bos_id
        docs.append(doc)
    return docs


def test_document_mask_equals_each_document_alone():
    """With the document mask, a packed row gives every document the logits it has when run alone:
    RoPE scores depend only on relative positions, so only the mask can make them differ."""
    config = tiny_config(document_mask=True, bos_id=1)
    model = random_model(config)
    plain = random_model(tiny_config())
    docs = _packed_documents(1, [7, 12, 1, 9])
    packed = torch.cat(docs)[None]
    logits = model(packed)[0]
    alone = torch.cat([plain(d[None])[0] for d in docs])
    torch.testing.assert_close(logits, alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain(packed)[0], alone, atol=1e-3)  # without the mask the documents mix
    # the loss path and the backward pass work with the mask too (dense SDPA mask on the CPU)
    targets = torch.roll(packed, -1, dims=1)
    loss = model(packed, targets=targets)
    loss.backward()
    assert torch.isfinite(loss) and model.transformer.h[0].attn.qkv.weight.grad.abs().sum() > 0


def test_document_block_mask_equals_dense_mask():
    """The FlexAttention block mask (used on CUDA) and the dense mask (CPU) keep the same pairs."""
    from torch.nn.attention.flex_attention import flex_attention

    from lit_gpt.model import document_causal_mask

    idx = torch.cat(_packed_documents(1, [5, 20, 3, 12], seed=1))[None].repeat(2, 1)
    idx[1, 9] = 1  # the second row holds one more document
    dense = document_causal_mask(idx, bos_id=1)
    assert dense.shape == (2, 1, 40, 40)
    block = document_causal_mask(idx, bos_id=1, flex=True)
    q, k, v = (torch.randn(2, 4, 40, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    with torch.no_grad():
        torch.testing.assert_close(
            flex_attention(q, k, v, block_mask=block),
            torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense),
        )


def test_document_mask_compiled_block_equals_dense():
    """A compiled block with the FlexAttention mask (the CUDA path) gives the dense-mask output."""
    from lit_gpt.model import document_causal_mask

    model = random_model(tiny_config(n_embd=64, document_mask=True))
    idx = torch.cat(_packed_documents(1, [9, 14, 9], seed=2))[None].repeat(2, 1)
    idx[1, 5] = 1
    x = torch.randn(2, 32, 64, generator=torch.Generator().manual_seed(0))
    cos, sin = model.rope_cos[:32], model.rope_sin[:32]
    block = model.transformer.h[0]
    with torch.no_grad():
        expected = block(x, cos, sin, document_causal_mask(idx, 1, flex=False))
        compiled = torch.compile(block, fullgraph=True)(x, cos, sin, document_causal_mask(idx, 1, flex=True))
    torch.testing.assert_close(compiled, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16_autocast"])
def test_residual_stream_takes_the_autocast_dtype(autocast):
    """Under autocast the blocks carry the residual stream in autocast's dtype (as FSDP2's bf16 parameters
    give it; half the bytes in every norm and residual add), while the weights and their gradients stay
    fp32; without autocast everything stays fp32."""
    model = GPT(tiny_config(kernels="torch")).train()
    seen = []
    for block in model.transformer.h:
        block.register_forward_hook(lambda module, args, out: seen.append((args[0].dtype, out.dtype)))
    idx = torch.randint(0, model.config.vocab_size, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(idx, targets=idx)
    loss.backward()
    want = torch.bfloat16 if autocast else torch.float32
    assert seen == [(want, want)] * model.config.n_layer
    assert loss.dtype == torch.float32
    for name, p in model.named_parameters():
        assert p.dtype == p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all(), name
