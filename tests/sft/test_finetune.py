"""Fine-tuning end to end on the CPU: the loss falls on the chat sample, SIGTERM then resume is exact,
the exported Hugging Face folder formats prompts as training did, and bad setups stop early."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from preemption import preempting
from training.pretrain_helpers import ENV

import lit_gpt.cli.finetune as finetune_command
from lit_gpt.cli.finetune import finetune_with_recipe as finetune
from lit_gpt.sft.data import ChatBatches
from lit_gpt.sft.templates import TEMPLATES, SegmentEncoder, template_of
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.training.checkpointing import list_checkpoints
from lit_gpt.training.metrics import read_metrics
from lit_gpt.training.schedule import LRSchedule

from .chat_helpers import ROOT, run_args

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "2 + 2 = 4."}],
    [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What does math.sqrt do?"},
        {"role": "assistant", "content": "It returns the square root."},
        {"role": "user", "content": "And times 3?"},
        {"role": "assistant", "content": "4 * 3 = 12."},
    ],
]


def losses(out_dir) -> dict:
    return dict(read_metrics(out_dir / "metrics.csv")["loss"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_checkpoint):
    out = tmp_path_factory.mktemp("sft_reference")
    finetune(run_args(tiny_checkpoint, out))
    return out


def test_loss_falls_and_the_schedule_and_validation_are_logged(reference):
    series = read_metrics(reference / "metrics.csv")
    assert [s for s, _ in series["loss"]] == list(range(1, 13))
    schedule = LRSchedule(3e-3, 3e-4, 2, 12)
    assert [lr for _, lr in series["lr"]] == pytest.approx([schedule(s - 1) for s in range(1, 13)])
    assert [s for s, _ in series["val_loss"]] == [6, 12]
    train_losses = [loss for _, loss in series["loss"]]  # on the assistant's tokens only
    assert sum(train_losses[-4:]) / 4 < sum(train_losses[:2]) / 2 - 0.6
    assert series["val_loss"][-1][1] < series["val_loss"][0][1]
    state = json.loads((list_checkpoints(reference / "checkpoints")[-1][1] / "train_state.json").read_text())
    assert state["step"] == 12 and state["config"]["template"] == "zephyr" and state["data"]["group"] == 4


def test_sigterm_then_resume_is_exact(tmp_path, monkeypatch, reference, tiny_checkpoint):
    real_iter = ChatBatches.__iter__
    # the scheduler's SIGTERM after the 9th micro batch: inside step 5
    preempted = preempting(real_iter, 9, rank_of=lambda _: 0)

    out = tmp_path / "interrupted"
    # saves at 3 and 5, then 6, 9, 12: the resumed run prunes the checkpoint it started from and goes on
    saving = dict(save_interval=3, keep_last=1)
    monkeypatch.setattr(ChatBatches, "__iter__", preempted)
    finetune(run_args(tiny_checkpoint, out, **saving))
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [5]
    assert max(losses(out)) == 5
    monkeypatch.setattr(ChatBatches, "__iter__", real_iter)
    finetune(run_args(tiny_checkpoint, out, **saving))
    assert losses(out) == losses(reference)  # bit for bit, as logged with 9 significant digits
    [(step, last)] = list_checkpoints(out / "checkpoints")
    assert step == 12 and json.loads((last / "tokenizer_config.json").read_text())["chat_template"]
    with pytest.raises(ValueError, match="template"):
        finetune(run_args(tiny_checkpoint, out, template="chatml", max_steps=14))


def test_checkpoint_and_its_exports_carry_the_chat_template(tmp_path, monkeypatch, reference, chat_tokenizer):
    """The user's path to the files they open: the checkpoint, its Hugging Face folder (also with the plain
    tokenizer as --tokenizer_dir) and its GGUF file all carry the template, and transformers formats
    prompts with it exactly as training did."""
    from transformers import AutoTokenizer

    gguf = pytest.importorskip("gguf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from lit_gpt.cli import convert_gguf
    from lit_gpt.cli import convert_lit as convert

    # the tokenizer the run started from has a tokenizer_config.json of its own, without a template
    assert "chat_template" not in json.loads((chat_tokenizer / "tokenizer_config.json").read_text())
    zephyr = TEMPLATES["zephyr"]
    checkpoint = list_checkpoints(reference / "checkpoints")[-1][1]
    assert json.loads((checkpoint / "tokenizer_config.json").read_text())["chat_template"] == zephyr.jinja
    convert.convert_lit_checkpoint(checkpoint, tmp_path / "hf")
    convert.convert_lit_checkpoint(checkpoint, tmp_path / "hf_plain_tokenizer", tokenizer_dir=chat_tokenizer)
    assert template_of(tmp_path / "hf") is zephyr  # what lit-chat, lit-ask and lit-serve look for
    assert AutoTokenizer.from_pretrained(tmp_path / "hf_plain_tokenizer").chat_template == zephyr.jinja
    theirs = AutoTokenizer.from_pretrained(tmp_path / "hf")
    encoder = SegmentEncoder(Tokenizer(checkpoint))
    for messages in CONVERSATIONS:
        for prompt in (False, True):
            conversation = messages[:-1] if prompt else messages
            ids, _ = encoder.encode_conversation(zephyr, conversation, add_generation_prompt=prompt)
            text = theirs.apply_chat_template(conversation, tokenize=False, add_generation_prompt=prompt)
            their_ids = theirs.apply_chat_template(conversation, add_generation_prompt=prompt, return_dict=False)
            assert theirs.decode(ids) == text and their_ids == ids

    for name, tokenizer_dir in (("model.gguf", None), ("plain_tokenizer.gguf", chat_tokenizer)):
        path = convert_gguf.convert_to_gguf(checkpoint, tmp_path / name, tokenizer_dir=tokenizer_dir)
        assert gguf.GGUFReader(path).fields["tokenizer.chat_template"].contents() == zephyr.jinja


def test_missing_demo_model_and_bad_options_stop_before_training(tmp_path, monkeypatch, tiny_checkpoint):
    monkeypatch.setattr(finetune_command, "DEMO_PRETRAIN_RUN", tmp_path / "no_demo")
    with pytest.raises(FileNotFoundError, match="pretrain/tinyllama.py"):
        finetune(run_args(None, tmp_path / "a"))
    with pytest.raises(ValueError, match="max_seq_length"):
        finetune(run_args(tiny_checkpoint, tmp_path / "b", max_seq_length=1000))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        finetune(run_args(tiny_checkpoint, tmp_path / "c", data=tmp_path / "nowhere"))
    assert not list(tmp_path.glob("*/checkpoints"))


def test_command_line_and_yaml(tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump({"template": "chatml", "lr": 2e-5, "epochs": 5}))
    args = finetune_command.parse_args(["--config", str(config), "--data", "chats.jsonl", "--skip_bad", "true"])
    assert (args.template, args.lr, args.epochs, str(args.data), args.skip_bad) == (
        "chatml",
        2e-5,
        5,
        "chats.jsonl",
        True,
    )
    assert args.checkpoint is None and args.out_dir is None  # the demo recipe fills them in


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
            "--max_steps",
            "6",
            "--global_batch_size",
            "8",
            "--micro_batch_size",
            "2",
            "--lr",
            "3e-3",
            "--min_lr",
            "3e-4",
            "--warmup_steps",
            "1",
            "--log_interval",
            "1",
            "--eval_interval",
            "3",
            "--save_interval",
            "0",
            "--tensorboard",
            "false",
        ]
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "sft" / "run_finetune.py"), *map(str, simulate), "--", *args],
            env=ENV,  # the base install: tests/base_install/sitecustomize.py
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        return proc

    launch(tmp_path / "reference")
    series = read_metrics(tmp_path / "reference" / "metrics.csv")
    assert [s for s, _ in series["val_loss"]] == [3, 6]
    out = tmp_path / "interrupted"
    launch(out, "--sigterm_after_batches", 5)  # 2 micro batches per rank and step: inside step 3
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [3]
    launch(out)
    assert losses(out) == losses(tmp_path / "reference")
