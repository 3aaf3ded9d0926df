"""float8 training on the CPU (torchao emulates the float8 matmuls there): the start-up checks and their
messages, which linears are converted, and that checkpoints stay in the ordinary format: a float8 run
(single process and FSDP2 with float8 weight all-gather on two gloo processes) resumes without float8,
and the reverse. The GPU twins (numerics against bf16, a run on an H100) are in tests/test_float8_cuda.py."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import pytest
import torch

from lit_gpt.cli import STOPPED_AND_SAVED
from lit_gpt.config import Config
from lit_gpt.model import GPT
from lit_gpt.training.checkpointing import list_checkpoints
from lit_gpt.training.float8 import check_float8, convert_to_float8
from training.pretrain_helpers import ENV, ROOT, losses, run

pytest.importorskip("torchao")  # a test dependency (setup.py extras "test"); present in CI


def test_unknown_recipe_and_missing_torchao_are_refused_with_the_reason(monkeypatch):
    with pytest.raises(ValueError, match="'blockwise' is not one of tensorwise, rowwise"):
        check_float8("blockwise")
    monkeypatch.setitem(sys.modules, "torchao", None)
    monkeypatch.setitem(sys.modules, "torchao.float8", None)
    with pytest.raises(RuntimeError, match=r"needs torchao, which is not installed.*pip install"):
        check_float8("tensorwise")
    check_float8(None)  # no float8 asked: nothing to check


def test_a_gpu_without_float8_tensor_cores_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA A100-SXM4-80GB")
    with pytest.raises(RuntimeError, match=r"float8 tensor cores.*A100-SXM4-80GB \(compute capability 8\.0\)"):
        check_float8("tensorwise")
    check_float8("tensorwise", accelerator="cpu")  # a CPU run emulates float8
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (9, 0))
    check_float8("rowwise")


def test_the_rule_converts_the_large_block_linears_only():
    def converted(name: str, **kw) -> list:
        with torch.device("meta"):
            model = GPT(Config.from_name(name))
        convert_to_float8(model, "tensorwise", **kw)
        return sorted({n.split(".", 3)[-1] for n, m in model.named_modules() if type(m).__name__ == "Float8Linear"})

    # tiny_LLaMA_1b: every linear of every block (2048 and 5632 wide); never the output head
    with torch.device("meta"):
        big = GPT(Config.from_name("tiny_LLaMA_1b"))
    assert convert_to_float8(big, "tensorwise") == 22 * 5
    assert type(big.lm_head).__name__ == "Linear"
    # tiny_LLaMA_120M is 768 wide: below the default minimum, nothing converted unless asked
    assert converted("tiny_LLaMA_120M") == []
    assert converted("tiny_LLaMA_120M", min_features=0) == [
        "attn.proj",
        "attn.qkv",
        "mlp.fc_gate",
        "mlp.fc_up",
        "mlp.proj",
    ]


def test_converted_model_keeps_names_and_computes_close_to_the_original():
    config = Config.from_name("micro_LLaMA", n_embd=64, intermediate_size=128, kernels="torch")
    torch.manual_seed(0)
    model = GPT(config)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    idx = torch.randint(0, config.vocab_size, (2, 16))
    expected = model(idx, targets=idx)
    assert convert_to_float8(model, "tensorwise", min_features=0) == config.n_layer * 5
    assert list(model.state_dict()) == list(reference)
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    got = model(idx, targets=idx)
    got.backward()
    assert math.isfinite(got.item()) and got.item() == pytest.approx(expected.item(), rel=0.02)
    assert all(p.grad is not None for p in model.parameters())


def test_float8_run_resumes_without_float8_and_the_reverse(
    tmp_path, stopped_at_step_5, prepared_sample, sample_tokenizer, model_config
):
    common = (prepared_sample, sample_tokenizer, model_config)
    fp8 = ("--float8", "tensorwise", "--float8_min_features", "0", "--num_workers", "0")
    out = tmp_path / "fp8_then_bf16"
    run(out, *common, *fp8, "--max_steps", "12", simulate=("--sigterm_after_batches", 18), expect_rc=STOPPED_AND_SAVED)
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [5]
    # the float8 run's checkpoint holds plain tensors under the usual names: it converts like any other
    from lit_gpt.checkpoint import load_hf_checkpoint, load_lit_checkpoint, save_hf_checkpoint

    state, config = load_lit_checkpoint(out / "checkpoints" / "step-000000005")
    assert all(type(t) is torch.Tensor for t in state.values())
    assert set(state) == set(GPT(config).state_dict())
    save_hf_checkpoint(tmp_path / "hf", state, config, tokenizer_dir=sample_tokenizer)
    hf_state, _ = load_hf_checkpoint(tmp_path / "hf")
    assert all(torch.equal(hf_state[k].float(), state[k].float()) for k in state)

    run(out, *common, "--num_workers", "0")  # resumed without float8: same checkpoint format
    series = losses(out)
    assert sorted(series) == list(range(1, 13)) and all(math.isfinite(v) for v in series.values())

    back = tmp_path / "bf16_then_fp8"
    shutil.copytree(stopped_at_step_5, back)
    proc = run(back, *common, *fp8)
    assert "resumed from" in proc.stdout and sorted(losses(back)) == list(range(1, 13))


def test_fsdp2_float8_all_gather_trains_and_resumes_on_one_process(
    tmp_path, prepared_sample, sample_tokenizer, model_config
):
    """Two gloo processes with float8 weights all-gathered (scales refreshed after each optimizer step),
    stopped at step 4, then continued on one process in plain fp32."""
    common = (prepared_sample, sample_tokenizer, model_config)
    out = tmp_path / "fsdp_fp8"
    run(
        out,
        *common,
        "--strategy",
        "fsdp",
        "--float8",
        "tensorwise",
        "--float8_min_features",
        "0",
        "--num_workers",
        "0",
        devices=2,
        simulate=("--sigterm_after_batches", 7),
        expect_rc=STOPPED_AND_SAVED,
    )
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [4]
    run(out, *common, "--num_workers", "0", devices=1)
    series = losses(out)
    assert sorted(series) == list(range(1, 13)) and series[12] < series[1]


def test_lora_linears_are_left_alone():
    """Only plain nn.Linear is swapped: LoRA's subclass carries adapters the swap would drop."""
    from lit_gpt.lora import LoRASettings, apply_lora

    config = Config.from_name("micro_LLaMA", n_embd=64, intermediate_size=128, kernels="torch")
    model = GPT(config)
    apply_lora(model, LoRASettings(targets=("attn.qkv", "mlp.proj")))
    assert convert_to_float8(model, "tensorwise", min_features=0) == config.n_layer * 3
    assert all(type(block.attn.qkv).__name__ == "LoRALinear" for block in model.transformer.h)
    assert all(type(block.mlp.fc_up).__name__ == "Float8Linear" for block in model.transformer.h)


def test_float8_with_lora_fine_tuning_is_refused_at_start(tmp_path):
    from lit_gpt.cli.finetune import finetune_with_recipe as finetune
    from lit_gpt.sft.finetune_args import FinetuneArgs

    with pytest.raises(ValueError, match="--float8 applies to full fine-tuning"):
        finetune(FinetuneArgs(out_dir=tmp_path, method="lora", float8="tensorwise", accelerator="cpu"))
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_compiling_a_float8_model_turns_on_kernel_tuning_and_a_bf16_one_does_not(monkeypatch):
    import torch._inductor.config as inductor_config

    from lit_gpt.training.parallel import apply_compile

    monkeypatch.setattr(inductor_config, "coordinate_descent_tuning", False)
    config = Config.from_name("micro_LLaMA", n_embd=64, intermediate_size=128)
    model = GPT(config)
    apply_compile(model)  # compiles lazily: nothing runs here
    assert inductor_config.coordinate_descent_tuning is False
    convert_to_float8(model, "tensorwise", min_features=64)
    apply_compile(model)
    assert inductor_config.coordinate_descent_tuning is True


def test_fast_accumulation_in_the_backward_is_asked_for_explicitly():
    """torchao's tensorwise recipe accumulates the gradient matmuls precisely; `fast_accum_backward` (a
    benchmark probe: benchmarks/throughput.py `+fp8fast`) switches all three matmuls to fast accumulation."""

    def gemm_configs(**kw) -> set:
        with torch.device("meta"):
            model = GPT(Config.from_name("tiny_LLaMA_1b", n_layer=1))
        convert_to_float8(model, "tensorwise", **kw)
        c = model.transformer.h[0].mlp.proj.config
        return {
            (gemm, getattr(c, f"gemm_config_{gemm}").use_fast_accum) for gemm in ("output", "grad_input", "grad_weight")
        }

    assert gemm_configs() == {("output", True), ("grad_input", False), ("grad_weight", False)}
    assert gemm_configs(fast_accum_backward=True) == {("output", True), ("grad_input", True), ("grad_weight", True)}


QUIET_SCRIPT = """
import logging, sys
from pathlib import Path
import torch
from lit_gpt.checkpoint import load_lit_checkpoint
from lit_gpt.config import Config
from lit_gpt.model import GPT
from lit_gpt.training.checkpointing import load_checkpoint, save_checkpoint
from lit_gpt.training.float8 import check_float8, convert_to_float8

check_float8("tensorwise", accelerator="cpu")  # the first import of torchao in this process
config = Config(n_layer=1, n_head=2, n_query_groups=2, n_embd=32, intermediate_size=64, vocab_size=64, block_size=16)
model = GPT(config)
assert convert_to_float8(model, "tensorwise", min_features=0) == 5
optimizer = torch.optim.AdamW(model.parameters())
path = save_checkpoint(Path(sys.argv[1]), 1, model, optimizer, {"step": 1}, {})
load_checkpoint(path, model, optimizer)
config.save(path / "model_config.yaml")
load_lit_checkpoint(path)  # the converters' load
assert not logging.getLogger("torchao").filters  # the log is quiet only while torchao is imported
print("done")
"""


def test_float8_import_and_a_checkpoint_round_trip_print_no_noise(tmp_path):
    # every UserWarning shown each time it is raised: only our narrow filters may hide DCP's
    proc = subprocess.run(
        [sys.executable, "-W", "always::UserWarning", "-c", QUIET_SCRIPT, str(tmp_path / "checkpoints")],
        env={**ENV, "PYTHONPATH": str(ROOT)},  # with every test extra importable, as a user may have them
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr[-3000:]
    for noise in ("Failed to load", "_pytree", "is an Enum subclass", "torch.distributed is disabled"):
        assert noise not in proc.stderr, proc.stderr[-3000:]
