"""LoRA fine-tuning: a zero update equals the base, the merged weights equal base + adapter, resume is
exact (one process and FSDP2 on two), the merged model exports to Hugging Face, merging onto another base
is refused unless asked, QLoRA says what it needs."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
from checkpoint_helpers import declare_tensor_as_bytes, plant_pickled_value
from preemption import preempting
from training.pretrain_helpers import ENV

from lit_gpt.checkpoint import load_lit_checkpoint, model_from_state_dict, save_lit_checkpoint
from lit_gpt.cli.finetune import finetune_with_recipe as finetune
from lit_gpt.cli.shipped import demo_data
from lit_gpt.lora import LoRASettings, apply_lora, load_adapter, lora_init_state, merge_checkpoint, merge_lora_weights
from lit_gpt.model import GPT
from lit_gpt.safe_load import UnsafeCheckpointError
from lit_gpt.sft.data import ChatBatches
from lit_gpt.sft.templates import TEMPLATES, template_of
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


def test_merging_onto_another_base_is_refused_unless_asked(lora_reference, tiny_checkpoint, tmp_path, capsys):
    from lit_gpt.cli import convert_lit
    from lit_gpt.cli import merge_lora as command

    checkpoint = list_checkpoints(lora_reference / "checkpoints")[-1][1]
    base, config = load_lit_checkpoint(tiny_checkpoint)
    other = tmp_path / "other_base"  # the same shape, one weight nudged
    save_lit_checkpoint(
        other, {**base, "transformer.h.1.mlp.proj.weight": base["transformer.h.1.mlp.proj.weight"] + 1e-3}, config
    )
    with pytest.raises(SystemExit) as stop:
        command.main(["--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "m1"), "--base", str(other)])
    (line,) = capsys.readouterr().err.splitlines()
    assert stop.value.code == 2 and line.startswith(
        f"error: {checkpoint}: the adapter was trained on {tiny_checkpoint}"
    )
    assert f"not on {other}, which holds other weights" in line and "--allow_other_base true" in line
    assert not (tmp_path / "m1").exists()

    with pytest.warns(UserWarning, match="merging anyway"):
        command.main(
            ["--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "m2"), "--base", str(other)]
            + ["--allow_other_base", "true"]
        )
    assert (tmp_path / "m2" / "lit_model.pth").is_file()
    # the same weights in another format (a Hugging Face folder) are the same base
    convert_lit.convert_lit_checkpoint(tiny_checkpoint, tmp_path / "hf_base")
    merge_checkpoint(checkpoint, tmp_path / "m3", tmp_path / "hf_base")
    assert torch.equal(
        load_lit_checkpoint(tmp_path / "m3")[0]["transformer.h.0.attn.qkv.weight"],
        merge_lora_weights(base, load_adapter(checkpoint), LoRASettings(r=4, alpha=8.0))[
            "transformer.h.0.attn.qkv.weight"
        ],
    )


def test_merged_folder_and_its_exports_carry_the_chat_template(lora_reference, tmp_path, monkeypatch, capsys):
    """A LoRA run's path to the files a user opens: the merged folder, its Hugging Face folder and GGUF file
    carry the template; lit-ask and lit-serve find it in the merged folder without --template."""
    from transformers import AutoTokenizer

    gguf = pytest.importorskip("gguf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from lit_gpt.cli import convert_gguf, simple_inference
    from lit_gpt.cli import convert_lit as convert
    from lit_gpt.serve import load_served_model

    zephyr = TEMPLATES["zephyr"]
    merged = tmp_path / "merged"
    merge_checkpoint(list_checkpoints(lora_reference / "checkpoints")[-1][1], merged)
    assert template_of(merged) is zephyr
    convert.convert_lit_checkpoint(merged, tmp_path / "hf")
    conversation = [{"role": "user", "content": "What is 2 + 2?"}]
    text = AutoTokenizer.from_pretrained(tmp_path / "hf").apply_chat_template(
        conversation, tokenize=False, add_generation_prompt=True
    )
    assert text == "<s><|user|>\nWhat is 2 + 2?</s>\n<|assistant|>\n"
    path = convert_gguf.convert_to_gguf(merged, tmp_path / "merged.gguf")
    assert gguf.GGUFReader(path).fields["tokenizer.chat_template"].contents() == zephyr.jinja

    simple_inference.ask("What is 2 + 2?", checkpoint=merged, max_new_tokens=2, device="cpu")
    assert "template zephyr" in capsys.readouterr().err
    assert load_served_model(merged, device="cpu", dtype="float32").template is zephyr


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


@pytest.mark.parametrize("craft", [plant_pickled_value, declare_tensor_as_bytes], ids=["pickled_value", "bytes_weight"])
def test_a_crafted_adapter_checkpoint_runs_nothing_on_resume(tmp_path, lora_reference, tiny_checkpoint, craft):
    out = tmp_path / "run"
    shutil.copytree(lora_reference, out)
    checkpoint = list_checkpoints(out / "checkpoints")[-1][1]
    marker = tmp_path / "pwned"
    key = craft(checkpoint, marker)
    with pytest.raises(UnsafeCheckpointError, match=rf"{checkpoint.name}/\.metadata: .*'{key}'"):
        finetune(run_args(tiny_checkpoint, out, **{**LORA, "max_steps": 8}))
    assert not marker.exists()


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
            env=ENV,  # the base install: tests/base_install/sitecustomize.py
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
