"""The attention kernels in the model on a GPU against SDPA, loss and gradients within bf16's reach:
flash-attn-4 (Hopper or newer, where installed) plain causal and with the document mask (its variable-length
interface), eager and with compiled blocks; FlexAttention's plain causal mask. Run with
``pytest -m cuda tests/test_attention_cuda.py``."""

from __future__ import annotations

import pytest
import torch

from lit_gpt.attention import fa4_missing
from lit_gpt.config import Config
from lit_gpt.model import GPT

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
FA4_MISSING = fa4_missing(torch.device("cuda"), torch.bfloat16) if torch.cuda.is_available() else "no CUDA GPU"


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def pair(document_mask: bool, compile: bool = False, attention: str = "fa4"):
    config = Config.from_name(
        "micro_LLaMA", n_embd=512, n_head=8, n_query_groups=2, block_size=512, document_mask=document_mask
    )
    torch.manual_seed(0)
    reference = GPT(Config.from_dict({**config.to_dict(), "attention": "sdpa"})).cuda().bfloat16()
    model = GPT(Config.from_dict({**config.to_dict(), "attention": attention})).cuda().bfloat16()
    model.load_state_dict(reference.state_dict())
    if compile:
        from lit_gpt.training.parallel import apply_compile

        apply_compile(model)
    return reference, model


@pytest.mark.skipif(bool(FA4_MISSING), reason=f"flash-attn-4: {FA4_MISSING}")
@pytest.mark.parametrize("document_mask", [False, True])
@pytest.mark.parametrize("compile", [False, True])
def test_fa4_equals_sdpa_in_the_loss_and_every_gradient(document_mask, compile):
    assert_equal_training(*pair(document_mask, compile))


def test_flex_causal_equals_sdpa_in_the_loss_and_every_gradient():
    assert_equal_training(*pair(False, attention="flex"))


def assert_equal_training(reference, model):
    vocab = reference.config.vocab_size
    idx = torch.randint(2, vocab, (4, 512), device="cuda")
    idx[:, [0, 100, 101, 300]] = reference.config.bos_id  # documents of 1 token too
    targets = torch.randint(0, vocab, (4, 512), device="cuda")
    losses = []
    for m in (reference, model):
        loss = m(idx, targets)
        loss.backward()
        losses.append(loss.item())
    assert losses[1] == pytest.approx(losses[0], rel=5e-3)
    for (name, a), b in zip(reference.named_parameters(), model.parameters()):
        assert relative_error(b.grad, a.grad) < 3e-2, name
