"""What is applied to a model from outside it: activation checkpointing and meta-device materialisation."""

import math

import pytest
import torch
from torch.distributed.checkpoint.state_dict import get_model_state_dict

from lit_gpt.config import Config
from lit_gpt.model import GPT
from lit_gpt.training.parallel import apply_activation_checkpointing, materialize

CONFIG = Config(
    name="t",
    n_layer=2,
    n_head=4,
    n_query_groups=2,
    n_embd=32,
    intermediate_size=88,
    vocab_size=128,
    block_size=16,
    kernels="torch",
)


@pytest.mark.parametrize("what", ["block", "mlp"])
def test_activation_checkpointing_changes_neither_results_nor_names(what):
    torch.manual_seed(0)
    plain = GPT(CONFIG)
    wrapped = GPT(CONFIG)
    wrapped.load_state_dict(plain.state_dict())
    apply_activation_checkpointing(wrapped, what)
    assert sum("CheckpointWrapper" in type(m).__name__ for m in wrapped.modules()) == CONFIG.n_layer
    x = torch.randint(0, 128, (2, 16))
    losses = []
    for model in (plain, wrapped):
        loss = model(x[:, :-1], targets=x[:, 1:])
        loss.backward()
        losses.append(loss)
    assert torch.equal(losses[0], losses[1])
    for (name, p), (_, q) in zip(plain.named_parameters(), wrapped.named_parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    # checkpoints stay interchangeable with unwrapped runs
    assert list(get_model_state_dict(wrapped)) == list(plain.state_dict())


def test_materialize_applies_the_tinyllama_init_not_pytorchs_default():
    config = Config.from_name("tiny_LLaMA_120M", n_layer=4)
    with torch.device("meta"):
        model = GPT(config)
    materialize(model, torch.device("cpu"))
    std = math.sqrt(2 / (5 * config.n_embd))
    assert model.transformer.h[0].attn.qkv.weight.std().item() == pytest.approx(std, rel=0.02)
    assert model.lm_head.weight.std().item() == pytest.approx(std, rel=0.02)
    residual = 1 / math.sqrt(config.n_embd) / config.n_layer
    assert model.transformer.h[1].mlp.proj.weight.std().item() == pytest.approx(residual, rel=0.02)
    assert torch.equal(model.transformer.ln_f.weight, torch.ones(config.n_embd))
    assert model.rope_cos.shape == (config.block_size, config.head_size)


def test_meta_init_equals_direct_init_under_any_wrapper_and_weights_are_keyed_by_name():
    """Each weight comes from a generator keyed by the seed and its name (lit_gpt.model.init_weights)."""
    torch.manual_seed(3)
    direct = GPT(CONFIG)
    torch.manual_seed(3)
    with torch.device("meta"):
        wrapped = GPT(CONFIG)
    apply_activation_checkpointing(wrapped, "block")
    materialize(wrapped, torch.device("cpu"))
    names = {k.replace("_checkpoint_wrapped_module.", ""): v for k, v in wrapped.state_dict().items()}
    assert names.keys() == direct.state_dict().keys()
    for name, value in direct.state_dict().items():
        assert torch.equal(names[name], value), name
    # two layers of the same shape draw different weights; re-initialising gives the same ones again
    h = direct.transformer.h
    assert not torch.equal(h[0].attn.qkv.weight, h[1].attn.qkv.weight)
    before = h[1].mlp.proj.weight.clone()
    direct.init_weights()
    assert torch.equal(h[1].mlp.proj.weight, before)
