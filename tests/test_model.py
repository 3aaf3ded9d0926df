import math

import pytest
import torch
from model_fixtures import random_model, tiny_config

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
    config = Config(name="medium", n_layer=3, n_head=8, n_query_groups=2, n_embd=512, intermediate_size=1376,
                    vocab_size=1024, block_size=128, kernels="torch")
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
        step = model(tokens[:, pos:pos + 1], input_pos=torch.tensor([pos]))
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
