"""float8 training on a GPU with float8 tensor cores (H100): a transformer block of tiny_LLaMA_1b's size
in float8 against the same block in bf16, and a float8 pretraining run (compiled, the default on CUDA)
that saves, resumes in bf16 and continues. Run with ``pytest -m cuda tests/test_float8_cuda.py``.

Tolerances (relative L2 error against bf16 autocast, the same weights and inputs): float8 e4m3 keeps 3
mantissa bits, so each matmul input is rounded by up to 6%; summed over 2048-5632 products the errors
average out. Measured with torchao's CPU emulation of the same arithmetic (B=2, T=128): block output
0.024, the residual branch alone 0.066, input gradient 0.053 (rowwise 0.037), weight gradients at most
0.093 (rowwise 0.068). The bounds below leave about 2x room."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from training.pretrain_helpers import losses, run

pytest.importorskip("torchao")  # the float8 extra: `pip install 'lit_gpt[float8]'`

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
        reason="needs a CUDA GPU with float8 tensor cores",
    ),
]

MAX_REL_ERR = {"output": 0.05, "residual_branch": 0.12, "input_grad": 0.10, "weight_grad": 0.18}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert torch.isfinite(a).all()
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise"])
def test_float8_block_matches_bf16(recipe):
    from lit_gpt.config import Config
    from lit_gpt.model import GPT
    from lit_gpt.training.float8 import convert_to_float8

    torch.manual_seed(torch.seed() % 2**31)
    T = 512
    config = Config.from_name("tiny_LLaMA_1b", n_layer=1, block_size=T)
    with torch.device("cuda"):
        reference = GPT(config)
    fp8 = copy.deepcopy(reference)
    assert convert_to_float8(fp8, recipe) == 5
    x = torch.randn(4, T, config.n_embd, device="cuda")
    weights = torch.randn(4, T, config.n_embd, device="cuda")

    def run_block(model):
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = model.transformer.h[0](xi, model.rope_cos[:T], model.rope_sin[:T])
        (y.float() * weights).sum().backward()
        return y.float(), xi.grad, {n: p.grad for n, p in model.transformer.h[0].named_parameters()}

    y_ref, dx_ref, dw_ref = run_block(reference)
    y, dx, dw = run_block(fp8)
    assert rel_err(y, y_ref) < MAX_REL_ERR["output"]
    assert rel_err(y - x, y_ref - x) < MAX_REL_ERR["residual_branch"]
    assert rel_err(dx, dx_ref) < MAX_REL_ERR["input_grad"]
    for name in dw_ref:
        assert rel_err(dw[name], dw_ref[name]) < MAX_REL_ERR["weight_grad"], name


def test_float8_run_saves_resumes_in_bf16_and_continues(tmp_path, prepared_sample, sample_tokenizer, model_config):
    common = (prepared_sample, sample_tokenizer, model_config)
    cuda = ("--accelerator", "cuda", "--num_workers", "0")
    out = tmp_path / "run"
    run(out, *common, *cuda, "--float8", "tensorwise", "--float8_min_features", "0", "--max_steps", "6")
    first = losses(out)
    assert sorted(first) == list(range(1, 7)) and all(math.isfinite(v) for v in first.values())
    # bf16, from the float8 run's checkpoint, for 6 steps more
    proc = run(out, *common, *cuda, "--max_steps", "12", "--allow_schedule_change", "true")
    assert "resumed from" in proc.stdout and "at step 6" in proc.stdout
    series = losses(out)
    assert sorted(series) == list(range(1, 13)) and series[12] < series[1]
