"""LoRA fine-tuning: a zero update equals the base, the merged weights equal base + adapter, resume is
exact (one process and FSDP2 on two), the merged model exports to Hugging Face, QLoRA says what it needs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from preemption import preempting

from lit_gpt.checkpoint import load_lit_checkpoint, model_from_state_dict
from lit_gpt.cli.finetune import finetune_with_recipe as finetune
from lit_gpt.cli.shipped import demo_data
from lit_gpt.lora import LoRASettings, apply_lora, load_adapter, lora_init_state, merge_checkpoint, merge_lora_weights
from lit_gpt.model import GPT
from lit_gpt.sft.data import ChatBatches
from lit_gpt.training.checkpointing import list_checkpoints
from lit_gpt.training.metrics import read_metrics

from .chat_helpers import ROOT, run_args, tiny_chat_config

LORA = dict(
    method="lora", lora_r=4, lora_alpha=8.0, lora_dropout=0.1, max_steps=6, eval_interval=3, lr=1e-2, min_lr=1e-3
)


def losses(out_dir) -> dict:
    return dict(read_metrics(out_dir / "metrics.csv")["loss"])


def lora_model(state, config, settings, adapter=None) -> GPT:
    model = apply_lora(model_from_state_dict(state, config), settings)
    model.load_state_dict({**state, **(adapter or lora_init_state(config, settings, 0))})
    return model.eval()


def test_zero_update_equals_the_base():
    torch.manual_seed(0)
    config = tiny_chat_config()
    base = GPT(config).eval()
    settings = LoRASettings(r=4, alpha=8.0, dropout=0.0)
    adapted = lora_model(base.state_dict(), config, settings)
    assert adapted.transformer.h[0].attn.qkv.lora_a.abs().sum() > 0  # A random, B zero
    idx = torch.randint(0, config.vocab_size, (2, 16))
    with torch.no_grad():
        assert torch.equal(adapted(idx), base(idx))
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable == {f"transformer.h.{i}.{t}.lora_{ab}" for i in range(2) for t in settings.targets for ab in "ab"}
    with pytest.raises(ValueError, match="lm_head"):
        LoRASettings(targets=("lm_head",))


@pytest.fixture(scope="module")
def lora_reference(tmp_path_factory, tiny_checkpoint):
    out = tmp_path_factory.mktemp("lora_reference")
    finetune(run_args(tiny_checkpoint, out, **LORA))
    return out


def test_checkpoint_holds_the_adapter_and_merges_exactly(lora_reference, tiny_checkpoint, tmp_path):
    series = losses(lora_reference)
    assert series[6] < series[1] - 0.3
    checkpoint = list_checkpoints(lora_reference / "checkpoints")[-1][1]
    adapter = load_adapter(checkpoint)
    assert adapter and all(k.endswith((".lora_a", ".lora_b")) for k in adapter)
    assert all(adapter[k].abs().max() > 0 for k in adapter if k.endswith("lora_b"))  # trained away from zero
    # the checkpoint is small: the base (here most of the bytes) is not in it
    assert (
        sum(f.stat().st_size for f in checkpoint.glob("*.distcp"))
        < (tiny_checkpoint / "lit_model.pth").stat().st_size / 2
    )

    base, config = load_lit_checkpoint(tiny_checkpoint)
    settings = LoRASettings(r=4, alpha=8.0, dropout=0.1)
    adapted = lora_model(base, config, settings, adapter)
    merge_checkpoint(checkpoint, tmp_path / "merged")
    merged_state, merged_config = load_lit_checkpoint(tmp_path / "merged")
    assert merged_state.keys() == base.keys()
    assert torch.equal(
        merged_state["transformer.h.0.mlp.fc_up.weight"],
        merge_lora_weights(base, adapter, settings)["transformer.h.0.mlp.fc_up.weight"],
    )
    merged = model_from_state_dict(merged_state, merged_config).eval()
    idx = torch.randint(0, config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs, plain = adapted(idx), merged(idx), model_from_state_dict(base, config).eval()(idx)
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)
    assert (ours - plain).abs().max() > 1e-3  # the adapter changed the model
    assert (tmp_path / "merged" / "tokenizer_config.json").is_file()  # the chat template goes along

    # the merged folder converts to Hugging Face; transformers gives the same logits
    from transformers import AutoModelForCausalLM

    from lit_gpt.cli import convert_lit as convert

    convert.convert_lit_checkpoint(tmp_path / "merged", tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", torch_dtype=torch.float32).eval()
    with torch.no_grad():
        hf_logits = hf(idx).logits
    torch.testing.assert_close(hf_logits, ours[..., : hf_logits.size(-1)], rtol=0, atol=1e-4)


def test_sigterm_then_resume_is_exact(tmp_path, monkeypatch, lora_reference, tiny_checkpoint):
    real_iter = ChatBatches.__iter__
    # SIGTERM after the 5th micro batch: inside step 3
    preempted = preempting(real_iter, 5, rank_of=lambda _: 0)

    out = tmp_path / "interrupted"
    monkeypatch.setattr(ChatBatches, "__iter__", preempted)
    finetune(run_args(tiny_checkpoint, out, **LORA))
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [3]
    monkeypatch.setattr(ChatBatches, "__iter__", real_iter)
    finetune(run_args(tiny_checkpoint, out, **LORA))
    assert losses(out) == losses(lora_reference)  # bit for bit, dropout included
    with pytest.raises(ValueError, match="lora_r"):
        finetune(run_args(tiny_checkpoint, out, **{**LORA, "lora_r": 8, "max_steps": 8}))


def test_qlora_and_bad_options_stop_with_a_message(tmp_path, tiny_checkpoint):
    with pytest.raises(ValueError, match="QLoRA .* needs a CUDA GPU"):
        finetune(run_args(tiny_checkpoint, tmp_path / "q", method="qlora"))
    with pytest.raises(ValueError, match="lora_targets"):
        finetune(run_args(tiny_checkpoint, tmp_path / "t", method="lora", lora_targets=["attn.q"]))
    full = tmp_path / "full"
    finetune(run_args(tiny_checkpoint, full, max_steps=1, warmup_steps=0, eval_interval=0))
    with pytest.raises(ValueError, match="no adapter"):
        merge_checkpoint(list_checkpoints(full / "checkpoints")[-1][1], tmp_path / "m")


def test_fsdp2_on_two_processes_resumes_exactly(tmp_path, tiny_checkpoint):
    def launch(out, *simulate):
        args = [
            "--checkpoint",
            str(tiny_checkpoint),
            "--out_dir",
            str(out),
            "--accelerator",
            "cpu",
            "--devices",
            "2",
            "--strategy",
            "fsdp",
            "--data",
            str(demo_data("chat_sample")),
            "--max_steps",
            "4",
            "--global_batch_size",
            "8",
            "--micro_batch_size",
            "2",
            "--lr",
            "1e-2",
            "--min_lr",
            "1e-3",
            "--warmup_steps",
            "1",
            "--log_interval",
            "1",
            "--eval_interval",
            "0",
            "--save_interval",
            "0",
            "--tensorboard",
            "false",
            "--method",
            "lora",
            "--lora_r",
            "4",
            "--lora_alpha",
            "8",
        ]
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "sft" / "run_finetune.py"), *map(str, simulate), "--", *args],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    launch(tmp_path / "reference")
    reference = losses(tmp_path / "reference")
    assert reference[4] < reference[1]
    out = tmp_path / "interrupted"
    launch(out, "--sigterm_after_batches", 3)  # 2 micro batches per rank and step: inside step 2
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [2]
    assert set(load_adapter(list_checkpoints(out / "checkpoints")[-1][1])) == set(
        load_adapter(list_checkpoints(tmp_path / "reference" / "checkpoints")[-1][1])
    )
    launch(out)
    assert losses(out) == reference
