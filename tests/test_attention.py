"""The attention choice (lit_gpt.attention): what "auto" means, the start-up refusals, the segments the
document mask hands flash-attn-4, and the model's fa4 path against SDPA, through a stand-in for
`flash_attn.cute` that keeps flash-attn-4's calling contract (the real kernels need a Hopper GPU:
tests/test_attention_cuda.py)."""

from __future__ import annotations

import sys

import pytest
import torch
from model_helpers import random_model, tiny_config

from lit_gpt import attention
from lit_gpt.config import Config

CPU = torch.device("cpu")


def test_auto_without_a_dtype_is_sdpa_and_flex_for_the_document_mask_on_cuda():
    assert attention.resolve("auto", False, CPU) == "sdpa"
    assert attention.resolve("auto", True, CPU) == "sdpa"
    assert attention.resolve("auto", True, CPU, torch.bfloat16, 64) == "sdpa"
    assert attention.resolve("auto", False, torch.device("cuda")) == "sdpa"
    assert attention.resolve("auto", True, torch.device("cuda")) == "flex"
    assert attention.resolve("fa4", True, CPU) == "fa4"
    with pytest.raises(ValueError, match="'fa3' is not one of auto, sdpa, flex, fa4"):
        attention.resolve("fa3", False, CPU)


def test_auto_takes_fa4_where_it_can_run_and_names_the_install_when_only_it_is_missing(fake_flash_attn, monkeypatch):
    cuda = torch.device("cuda")
    capability = [(9, 0)]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability[0])
    assert attention.resolve("auto", False, cuda, torch.bfloat16, 64) == "fa4"
    assert attention.resolve("auto", True, cuda, torch.bfloat16, 64) == "fa4"
    assert attention.resolve("auto", True, cuda, torch.float32, 64) == "flex"  # fa4 computes in bf16/fp16 only
    assert attention.resolve("auto", False, cuda, torch.bfloat16, 12) == "sdpa"  # a head size it has no kernel for
    with pytest.raises(ValueError, match="attention fa4: it takes head sizes from 8 to 256 in steps of 8.* is 12"):
        attention.check("fa4", False, cuda, torch.bfloat16, 12)
    assert attention.startup_line("auto", "fa4", True, cuda, torch.bfloat16, 64) == (
        "attention: fa4, kept inside each document"
    )
    monkeypatch.setitem(sys.modules, "flash_attn", None)  # not installed
    assert attention.resolve("auto", False, cuda, torch.bfloat16, 64) == "sdpa"
    hint = "attention: sdpa (flash-attn-4 is faster on this GPU: pip install 'lit_gpt[fa4]')"
    assert attention.startup_line("auto", "sdpa", False, cuda, torch.bfloat16, 64) == hint
    assert attention.startup_line("sdpa", "sdpa", False, cuda, torch.bfloat16, 64) == "attention: sdpa"
    capability[0] = (8, 0)  # an A100: nothing to install would help
    assert attention.startup_line("auto", "sdpa", False, cuda, torch.bfloat16, 64) == "attention: sdpa"
    with pytest.raises(ValueError, match=r"attention fa4: it needs a Hopper or newer GPU .* is 8\.0"):
        attention.check("fa4", False, cuda, torch.bfloat16, 64)


def test_a_choice_that_cannot_run_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="attention fa4: it runs on CUDA GPUs only, and this run is on cpu"):
        attention.check("fa4", False, CPU, torch.bfloat16)
    with pytest.raises(ValueError, match="attention flex trains on CUDA GPUs only"):
        attention.check("flex", True, CPU, torch.float32)
    assert attention.check("auto", True, CPU, torch.float32) == "sdpa"
    with pytest.raises(ValueError, match="attention='fa3' is not one of"):
        Config.from_name("micro_LLaMA", attention="fa3")


def test_segments_start_at_every_bos_and_at_every_row():
    bos = 1
    idx = torch.tensor([[1, 5, 6, 1, 7, 8], [9, 9, 1, 4, 1, 1]])
    segments = attention.document_segments(idx, bos)
    assert segments.cu_seqlens.dtype == torch.int32
    # row 0: documents at 0 and 3; row 1 begins inside one (6), then BOS at 8, 10 and 11; then the end
    assert segments.cu_seqlens.tolist() == [0, 3, 6, 8, 10, 11, 12]
    assert segments.max_seqlen == 6
    assert idx[1, 0] == 9  # the caller's batch is left as it was


@pytest.mark.parametrize("document_mask", [False, True])
def test_the_fa4_path_equals_sdpa_in_outputs_and_gradients(fake_flash_attn, document_mask):
    torch.manual_seed(0)
    config = tiny_config(document_mask=document_mask, bos_id=1)
    reference = random_model(config)
    model = random_model(Config.from_dict({**config.to_dict(), "attention": "fa4"}))
    model.load_state_dict(reference.state_dict())
    idx = torch.randint(2, config.vocab_size, (2, 16))
    idx[0, 5] = idx[0, 11] = idx[1, 9] = 1  # documents of 5, 6, 5 and 9, 7 tokens
    targets = torch.randint(0, config.vocab_size, (2, 16))
    losses = []
    for m in (reference, model):
        loss = m(idx, targets)
        loss.backward()
        losses.append(loss)
    assert fake_flash_attn == ["varlen" if document_mask else "dense"] * config.n_layer
    torch.testing.assert_close(losses[1], losses[0])
    for (name, a), b in zip(reference.named_parameters(), model.parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=name)


def test_compiled_blocks_run_fa4_outside_their_graphs(fake_flash_attn):
    """apply_compile leaves fullgraph off for fa4 blocks, whose graph breaks around the kernel call (the
    stand-in cannot be traced, like the CuTe DSL's kernels: under fullgraph this test fails), and the
    compiled blocks compute what the eager model does, the segments marked dynamic included."""
    from lit_gpt.training.parallel import apply_compile

    torch.manual_seed(0)
    config = Config.from_dict({**tiny_config(document_mask=True, bos_id=1).to_dict(), "attention": "fa4"})
    model = random_model(config)
    idx = torch.randint(2, config.vocab_size, (2, 16))
    idx[0, 5] = idx[1, 9] = 1
    expected = model(idx)
    apply_compile(model)
    torch._dynamo.reset()
    torch.testing.assert_close(model(idx), expected, rtol=1e-4, atol=1e-4)
    assert fake_flash_attn == ["varlen"] * (2 * config.n_layer)


def test_the_document_mask_changes_what_fa4_computes(fake_flash_attn):
    """Not a vacuous equality: with the mask the fa4 path's logits differ from plain causal ones."""
    config = tiny_config(bos_id=1)
    causal = random_model(Config.from_dict({**config.to_dict(), "attention": "fa4"}))
    masked = random_model(Config.from_dict({**config.to_dict(), "attention": "fa4", "document_mask": True}))
    masked.load_state_dict(causal.state_dict())
    idx = torch.randint(2, config.vocab_size, (1, 12))
    idx[0, 6] = 1
    a, b = causal(idx), masked(idx)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_the_choice_is_a_runtime_field_and_inference_goes_back_to_auto(tmp_path):
    from lit_gpt.checkpoint import save_lit_checkpoint
    from lit_gpt.config import RUNTIME_FIELDS
    from lit_gpt.inference import load_for_inference

    assert "attention" in RUNTIME_FIELDS
    config = Config.from_dict({**tiny_config().to_dict(), "attention": "fa4"})
    save_lit_checkpoint(tmp_path, random_model(config).state_dict(), config)
    loaded = load_for_inference(tmp_path, device="cpu", require_tokenizer=False)
    assert loaded.model.config.attention == "auto"


def test_the_trainer_decides_auto_once_and_builds_the_model_with_the_concrete_kernel(tmp_path, capsys):
    from lit_gpt.training.args import RunArgs
    from lit_gpt.training.parallel import unwrap
    from lit_gpt.training.setup import build_fabric, setup_model

    args = RunArgs(out_dir=tmp_path, accelerator="cpu", devices=1, tensorboard=False, compile=False)
    fabric, _ = build_fabric(args)
    config = tiny_config(document_mask=True, bos_id=1)
    assert config.attention == "auto"
    model = setup_model(fabric, config, args, sharded=False)
    assert unwrap(model).config.attention == "sdpa"
    assert config.attention == "auto"  # the run's config (saved with every checkpoint) keeps the choice
    assert "attention: sdpa, kept inside each document\n" in capsys.readouterr().out
