"""Muon (lit_gpt.training.muon): the orthogonalisation against an SVD, the step against torch.optim.Muon and
AdamW, which parameters it trains on every preset, the sharded path on gloo processes, FSDP2 against one
process, exact resume, the refusal of an optimizer switch and of LoRA. The GPU twin (float8, compiled) is in
tests/test_muon_cuda.py."""

from __future__ import annotations

import copy
import math
import shutil

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from lit_gpt.checkpoint import load_lit_checkpoint
from lit_gpt.cli import STOPPED_AND_SAVED, USER_ERROR
from lit_gpt.config import PRESETS, Config
from lit_gpt.model import GPT
from lit_gpt.training.checkpointing import list_checkpoints
from lit_gpt.training.muon import NS_COEFFICIENTS, MuonWithAdamW, orthogonalize, parameter_groups, update_scale
from lit_gpt.training.parallel import apply_activation_checkpointing
from lit_gpt.training.trainer import make_optimizer
from training.muon_helpers import SHAPES, matrices, shard_and_orthogonalize
from training.pretrain_helpers import losses, run

# The quintic's band: five steps map every singular value of at least 1/500 of the Frobenius norm into
# [0.68, 1.21] (the scalar map below, evaluated on a fine grid)
BAND = (0.68, 1.21)


def quintic_five_times(x: np.ndarray) -> np.ndarray:
    a, b, c = NS_COEFFICIENTS
    for _ in range(5):
        x = a * x + b * x**3 + c * x**5
    return x


def test_the_band_is_the_quintics():
    x = np.logspace(np.log10(1 / 500), 0, 20001)
    y = quintic_five_times(x)
    assert BAND[0] <= y.min() < BAND[0] + 0.01 and BAND[1] - 0.01 < y.max() <= BAND[1]


@pytest.mark.parametrize("shape", [(48, 160), (160, 48), (96, 96)], ids=["wide", "tall", "square"])
def test_orthogonalize_keeps_the_singular_vectors_and_maps_the_singular_values_into_the_band(shape):
    generator = torch.Generator().manual_seed(sum(shape))
    m, n = shape
    k = min(m, n)
    u, _ = torch.linalg.qr(torch.randn(m, k, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, k, generator=generator, dtype=torch.float64))
    # singular values spread over two decades, the smallest at 1/500 of the Frobenius norm or more
    s = torch.logspace(0, -2, k, dtype=torch.float64)
    g = (u * s) @ v.T
    out = orthogonalize(g.float())
    assert out.shape == shape and out.dtype == torch.bfloat16
    got = torch.linalg.svdvals(out.double())
    assert BAND[0] - 0.02 <= got.min() and got.max() <= BAND[1] + 0.02
    # exactly: the same singular vectors, each singular value through the scalar quintic
    expected = (u * torch.from_numpy(quintic_five_times((s / g.norm()).numpy()))) @ v.T
    assert rel_err(iterate_in_float64(g), expected) < 1e-10
    # in bf16, fifteen chained matmuls of 8-bit mantissas: measured 0.021-0.033 on these shapes
    assert rel_err(out, expected) < 0.05


def iterate_in_float64(g: torch.Tensor) -> torch.Tensor:
    a, b, c = NS_COEFFICIENTS
    x = g / g.norm()
    tall = x.size(0) > x.size(1)
    x = x.T if tall else x
    for _ in range(5):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def rel_err(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.double() - expected).norm() / expected.norm()).item()


def test_update_scale_gives_an_orthogonal_update_the_rms_of_adamws():
    for shape in [(64, 256), (256, 64), (128, 128)]:
        q, _ = torch.linalg.qr(torch.randn(max(shape), min(shape)))
        q = q if shape[0] >= shape[1] else q.T
        assert (q * update_scale(shape)).pow(2).mean().sqrt().item() == pytest.approx(0.2, rel=1e-4)


def small_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(Config.from_name("micro_LLaMA", n_embd=64, intermediate_size=160, vocab_size=256, kernels="torch"))


def test_one_step_equals_torch_muon_on_the_matrices_and_adamw_on_the_rest():
    lr, wd, betas = 0.02, 0.1, (0.9, 0.95)
    model = small_model()
    ours = make_optimizer(model, lr, wd, betas, kind="muon")
    twin = copy.deepcopy(model)
    groups = parameter_groups(twin, wd)
    theirs = [
        torch.optim.Muon(groups[0]["params"], lr=lr, weight_decay=wd, adjust_lr_fn="match_rms_adamw"),
        torch.optim.AdamW(groups[1:], lr=lr, betas=betas, foreach=True),
    ]
    x = torch.randint(0, 256, (2, 17))
    for _ in range(3):
        for m, opts in ((model, [ours]), (twin, theirs)):
            m(x[:, :-1], targets=x[:, 1:]).backward()
            for opt in opts:
                opt.step()
                opt.zero_grad()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_muon_takes_the_block_matrices_of_every_preset_and_adamw_the_rest(name):
    config = Config.from_name(name)
    with torch.device("meta"):
        model = GPT(config)
    apply_activation_checkpointing(model, "block")  # wrappers rename modules: the rule must see through them
    named = {p: n.replace("_checkpoint_wrapped_module.", "") for n, p in model.named_parameters()}
    muon, decay, no_decay = ([named[p] for p in g["params"]] for g in parameter_groups(model, 0.1))
    per_block = ["attn.qkv", "attn.proj", "mlp.fc_gate", "mlp.fc_up", "mlp.proj"]
    assert sorted(muon) == sorted(f"transformer.h.{i}.{m}.weight" for i in range(config.n_layer) for m in per_block)
    assert sorted(decay) == ["lm_head.weight", "transformer.wte.weight"]
    assert len(no_decay) == 2 * config.n_layer + 1 and all("norm" in n or "ln_f" in n for n in no_decay)


def test_lora_fine_tuning_with_muon_is_refused_at_start(tmp_path):
    from lit_gpt.cli.finetune import finetune_with_recipe as finetune
    from lit_gpt.sft.finetune_args import FinetuneArgs

    with pytest.raises(ValueError, match="adapters of --method lora train with --optimizer adamw"):
        finetune(FinetuneArgs(out_dir=tmp_path, method="lora", optimizer="muon", accelerator="cpu"))
    assert not any(tmp_path.iterdir())
    model = small_model()
    model.transformer.wte.weight.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        make_optimizer(model, 1e-3, 0.0, (0.9, 0.95), kind="muon")


@pytest.mark.parametrize("world", [3])
def test_sharded_matrices_are_orthogonalized_whole(tmp_path, world):
    out = tmp_path / "result.pt"
    mp.spawn(shard_and_orthogonalize, args=(world, str(tmp_path / "init"), str(out)), nprocs=world, join=True)
    got = torch.load(out, weights_only=True)
    for shape, matrix, result in zip(SHAPES, matrices(), got):
        assert torch.equal(result, orthogonalize(matrix).float()), shape


def test_muon_with_weight_decay_keeps_the_group_settings_in_its_state_dict():
    model = small_model()
    opt = make_optimizer(model, 1e-3, 0.1, (0.9, 0.95), kind="muon")
    assert isinstance(opt, MuonWithAdamW)
    groups = opt.state_dict()["param_groups"]
    assert [g["muon"] for g in groups] == [True, False, False]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.1, 0.0]
    assert groups[0]["momentum"] == 0.95 and groups[0]["ns_steps"] == 5 and groups[0]["nesterov"]


MUON = ("--optimizer", "muon", "--num_workers", "0")


@pytest.fixture(scope="module")
def muon_reference(tmp_path_factory, prepared_sample, sample_tokenizer, model_config):
    out = tmp_path_factory.mktemp("muon_reference")
    run(out, prepared_sample, sample_tokenizer, model_config, *MUON)
    return out


def test_muon_learns_resumes_bit_exactly_and_refuses_another_optimizer_unless_asked(
    tmp_path, muon_reference, prepared_sample, sample_tokenizer, model_config
):
    common = (prepared_sample, sample_tokenizer, model_config)
    series = losses(muon_reference)
    assert sorted(series) == list(range(1, 13)) and series[12] < series[1] - 0.1
    out = tmp_path / "interrupted"
    run(out, *common, *MUON, simulate=("--sigterm_after_batches", 18), expect_rc=STOPPED_AND_SAVED)
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [5]
    refused = run(out, *common, "--optimizer", "adamw", "--num_workers", "0", expect_rc=USER_ERROR)
    assert "trained with --optimizer muon, this run asks for adamw" in refused.stderr
    assert "Traceback" not in refused.stderr and max(losses(out)) == 5
    switched = tmp_path / "muon_then_adamw"
    shutil.copytree(out, switched)
    run(out, *common, *MUON)
    assert losses(out) == losses(muon_reference)  # bit for bit, as printed with 9 significant digits
    # asked for explicitly, the switch goes on from the checkpoint with a fresh optimizer state
    proc = run(switched, *common, "--optimizer", "adamw", "--num_workers", "0", "--allow_optimizer_change", "true")
    assert "trained with --optimizer muon; going on with adamw from a fresh optimizer state" in proc.stdout
    switched_losses = losses(switched)
    assert sorted(switched_losses) == list(range(1, 13)) and switched_losses[12] != losses(muon_reference)[12]


def test_fsdp2_on_two_processes_ends_with_the_parameters_of_one_process(
    tmp_path, muon_reference, prepared_sample, sample_tokenizer, model_config
):
    out = tmp_path / "fsdp"
    run(out, prepared_sample, sample_tokenizer, model_config, *MUON, "--strategy", "fsdp", devices=2)
    final = "checkpoints/step-000000012"
    sharded, _ = load_lit_checkpoint(out / final)
    single, _ = load_lit_checkpoint(muon_reference / final)
    assert sharded.keys() == single.keys()
    for name, value in single.items():
        # the same bf16 iteration on gradients summed in another order: measured at most 4.7e-4 (the weights
        # moved by about 10% in these steps; a matrix orthogonalised by shards would differ by tens of percent)
        assert ((sharded[name] - value).norm() / value.norm()).item() < 2e-3, name
    expected, got = losses(muon_reference), losses(out)
    for step in expected:
        assert math.isclose(got[step], expected[step], rel_tol=1e-4), step


def test_fsdp2_with_float8_weights_all_gathered_trains(tmp_path, prepared_sample, sample_tokenizer, model_config):
    """The float8 weights under FSDP2 are DTensors of torchao's subclass: Muon's all-to-alls and updates reach them."""
    pytest.importorskip("torchao")
    out = tmp_path / "fsdp_fp8"
    fp8 = ("--float8", "tensorwise", "--float8_min_features", "0")
    run(out, prepared_sample, sample_tokenizer, model_config, *MUON, *fp8, "--strategy", "fsdp", devices=2)
    series = losses(out)
    assert sorted(series) == list(range(1, 13)) and all(math.isfinite(v) for v in series.values())
    assert series[12] < series[1] - 0.1
