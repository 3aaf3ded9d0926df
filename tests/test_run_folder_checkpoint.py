"""Every inference command line takes `--checkpoint` (speculative decoding: `--target`/`--draft`) as a
checkpoint folder or as a run folder, whose newest whole checkpoint it then reads."""

import os
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before lm-eval / datasets read them
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch
from eval_helpers import TASK
from model_helpers import SAMPLE_LINES, random_model, tiny_config

from lit_gpt.checkpoint import save_lit_checkpoint
from lit_gpt.cli.convert_gguf import convert_to_gguf
from lit_gpt.cli.convert_lit import convert_lit_checkpoint
from lit_gpt.cli.evaluate import evaluate as evaluate_command
from lit_gpt.cli.generate import generate_text
from lit_gpt.cli.perplexity import perplexity as perplexity_command
from lit_gpt.cli.speculative import speculative_generate
from lit_gpt.training.checkpointing import save_checkpoint


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, sp_tokenizer_dir):
    """A run folder with checkpoints at steps 2 and 4 (other weights) and a damaged one at step 6."""
    run = tmp_path_factory.mktemp("run")
    for step, seed in ((2, 1), (4, 2), (6, 3)):
        model = random_model(tiny_config(vocab_size=320), seed=seed)
        staged = run / f"staged-{step}"
        save_lit_checkpoint(staged, model.state_dict(), model.config, tokenizer_dir=sp_tokenizer_dir)
        extra = {p.name: p for p in staged.iterdir() if p.name != "lit_model.pth"}
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        save_checkpoint(run / "checkpoints", step, model, optimizer, {"step": step}, extra)
    (distcp,) = (run / "checkpoints" / "step-000000006").glob("*.distcp")
    with open(distcp, "r+b") as f:
        f.truncate(distcp.stat().st_size // 2)
    return run


def step(run: Path, n: int) -> Path:
    return run / "checkpoints" / f"step-{n:09d}"


def test_perplexity_takes_the_newest_whole_checkpoint_of_a_run(run_folder, tmp_path):
    text = tmp_path / "held_out.txt"
    text.write_text("\n".join(SAMPLE_LINES[:20]))
    perplexity = perplexity_command
    with pytest.warns(UserWarning, match="skipping damaged checkpoint .*step-000000006"):
        of_run = perplexity(run_folder, text=text, device="cpu")
    assert of_run == perplexity(step(run_folder, 4), text=text, device="cpu")
    assert of_run != perplexity(step(run_folder, 2), text=text, device="cpu")


def test_generate_and_speculative_decoding_take_a_run_folder(run_folder, capsys):
    generate = generate_text
    options = dict(prompt="the cat", max_new_tokens=6, temperature=0.0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generate(checkpoint=run_folder, **options)
        of_run = capsys.readouterr().out
        generate(checkpoint=step(run_folder, 4), **options)
        assert capsys.readouterr().out == of_run
        generate(checkpoint_dir=run_folder, **options)  # the former flag name
        assert capsys.readouterr().out == of_run

        speculative = speculative_generate
        speculative(target=run_folder, draft=run_folder, k=2, **options)
        assert capsys.readouterr().out == of_run  # greedy: the target's own greedy text


def test_converters_take_a_run_folder(run_folder, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert = convert_lit_checkpoint
        convert(run_folder, tmp_path / "hf_run")
        convert(step(run_folder, 4), tmp_path / "hf_step")
        for name in ("model.safetensors", "config.json", "tokenizer.model"):
            assert (tmp_path / "hf_run" / name).read_bytes() == (tmp_path / "hf_step" / name).read_bytes()

        pytest.importorskip("gguf")
        to_gguf = convert_to_gguf
        to_gguf(run_folder, tmp_path / "run.gguf", name="m")
        to_gguf(step(run_folder, 4), tmp_path / "step.gguf", name="m")
        assert (tmp_path / "run.gguf").read_bytes() == (tmp_path / "step.gguf").read_bytes()


def test_evaluate_takes_a_run_folder(run_folder, task_dir):
    pytest.importorskip("lm_eval")
    evaluate = evaluate_command
    options = dict(tasks=TASK, include_path=task_dir, device="cpu", batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        of_run = evaluate(run_folder, **options)["results"][TASK]
        of_step = evaluate(step(run_folder, 4), **options)["results"][TASK]
    assert of_run["acc_norm,none"] == of_step["acc_norm,none"] and of_run["acc,none"] == of_step["acc,none"]
