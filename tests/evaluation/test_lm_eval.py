"""The lm-eval adapter against scores computed directly from the model, and against lm-eval's own `hf`
model on the same weights converted to Hugging Face. Everything is local: the task is a YAML file and a
JSONL file written here."""

import os

# before lm-eval / datasets / transformers read them
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import QUESTIONS, TASK

from lit_gpt.cli.evaluate import evaluate as evaluate_command

# a test extra, always there in CI; a GPU machine running `pytest -m cuda` may lack it
pytest.importorskip("lm_eval")

from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from model_helpers import random_model, tiny_config

from lit_gpt.checkpoint import save_hf_checkpoint, save_lit_checkpoint
from lit_gpt.evaluation.lm_eval_model import LitGPTLM
from lit_gpt.evaluation.periodic import flatten_results, run_lm_eval_tasks, task_manager
from lit_gpt.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[2]


def context_of(question: str) -> str:
    return f"Question: {question}?\nAnswer:"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, sp_tokenizer_dir):
    """A lit checkpoint folder (random weights, the 320-piece SentencePiece tokenizer) and its model."""
    config = tiny_config(vocab_size=320)
    assert config.padded_vocab_size == 320
    model = random_model(config, seed=3)
    folder = tmp_path_factory.mktemp("lit")
    save_lit_checkpoint(folder, model.state_dict(), config, tokenizer_dir=sp_tokenizer_dir)
    return folder, model


@torch.no_grad()
def reference_loglikelihoods(model, tokenizer: Tokenizer) -> list:
    """Per question, log p(" " + choice | BOS + context) for every choice, from one plain forward each."""
    out = []
    for question, choices, _ in QUESTIONS:
        context = [tokenizer.bos_id] + tokenizer.encode(context_of(question))
        scores = []
        for choice in choices:
            whole = [tokenizer.bos_id] + tokenizer.encode(context_of(question) + " " + choice)
            assert whole[: len(context)] == context
            logprobs = torch.log_softmax(model(torch.tensor([whole[:-1]]))[0].double(), dim=-1)
            scores.append(sum(float(logprobs[i - 1, whole[i]]) for i in range(len(context), len(whole))))
        out.append(scores)
    return out


@pytest.fixture(scope="module")
def reference(checkpoint, sp_tokenizer_dir):
    """The per-choice log-likelihoods and lm-eval's acc / acc_norm computed from them by hand
    (acc_norm divides by the choice's length in characters)."""
    lls = reference_loglikelihoods(checkpoint[1], Tokenizer(sp_tokenizer_dir))
    acc = np.mean([np.argmax(s) == answer for s, (_, _, answer) in zip(lls, QUESTIONS)])
    acc_norm = np.mean(
        [
            np.argmax(np.array(s) / [len(c) for c in choices]) == answer
            for s, (_, choices, answer) in zip(lls, QUESTIONS)
        ]
    )
    return lls, acc, acc_norm


def sample_loglikelihoods(samples: list) -> list:
    """Per document (in document order), the log-likelihood of each choice from lm-eval's logged samples."""
    by_doc = sorted(samples, key=lambda s: s["doc_id"])
    return [[float(ll) for ll, _ in s["filtered_resps"]] for s in by_doc]


@pytest.fixture(scope="module")
def script_results(checkpoint, task_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scores") / "scores.json"
    evaluate = evaluate_command
    results = evaluate(
        checkpoint=checkpoint[0],
        tasks=TASK,
        include_path=task_dir,
        batch_size=5,
        device="cpu",
        dtype="float32",
        output_path=out,
        log_samples=True,
    )
    return results, out


def test_scores_equal_the_models_own_loglikelihoods(script_results, reference):
    results, out = script_results
    lls, acc, acc_norm = reference
    assert acc != acc_norm  # the data set tells the two metrics apart
    metrics = results["results"][TASK]
    assert metrics["acc,none"] == pytest.approx(acc, abs=1e-9)
    assert metrics["acc_norm,none"] == pytest.approx(acc_norm, abs=1e-9)
    ours = sample_loglikelihoods(results["samples"][TASK])
    assert len(ours) == len(QUESTIONS)
    for got, want in zip(ours, lls):
        assert got == pytest.approx(want, abs=1e-4)
    saved = json.loads(out.read_text())
    assert saved["results"][TASK]["acc_norm,none"] == metrics["acc_norm,none"]


def test_hugging_face_export_scores_the_same(checkpoint, task_dir, script_results, tmp_path):
    """lm-eval's `hf` model on the converted folder: the same per-choice log-likelihoods."""
    folder, model = checkpoint
    hf_dir = tmp_path / "hf"
    save_hf_checkpoint(hf_dir, model.state_dict(), model.config, tokenizer_dir=folder)
    hf = simple_evaluate(
        model="hf",
        model_args={"pretrained": str(hf_dir), "dtype": "float32"},
        device="cpu",
        batch_size=4,
        tasks=[TASK],
        task_manager=task_manager(str(task_dir), (TASK,)),
        log_samples=True,
    )
    theirs = sample_loglikelihoods(hf["samples"][TASK])
    ours = sample_loglikelihoods(script_results[0]["samples"][TASK])
    for got, want in zip(ours, theirs):
        assert got == pytest.approx(want, abs=1e-4)
    # rolling log-likelihood over several windows, against lm-eval's own windows over the HF model
    # (without BOS in the text: lm-eval puts the prefix token in front itself)
    from lm_eval.models.huggingface import HFLM

    text = " ".join(["the model learns tokens from text and code"] * 6)
    hf_lm = HFLM(pretrained=str(hf_dir), dtype="float32", device="cpu", batch_size=2, add_bos_token=False)
    ours_lm = LitGPTLM(checkpoint=folder, device="cpu", batch_size=2)
    assert len(ours_lm.tok_encode(text, add_special_tokens=False)) > 3 * model.config.block_size
    request = [Instance("loglikelihood_rolling", {}, (text,), 0)]
    assert ours_lm.loglikelihood_rolling(request)[0] == pytest.approx(hf_lm.loglikelihood_rolling(request)[0], abs=1e-3)


@torch.no_grad()
def greedy_reference(model, prompt: list, n: int) -> list:
    """n greedy tokens by full forward passes, no KV cache."""
    tokens = list(prompt)
    for _ in range(n):
        tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    return tokens[len(prompt) :]


@torch.no_grad()
def test_loglikelihood_greedy_flag_and_batching(checkpoint):
    folder, model = checkpoint
    lm = LitGPTLM(checkpoint=folder, device="cpu", batch_size=1)
    context = lm.tok_encode("the model learns")
    greedy = greedy_reference(model, context, 4)
    wrong = greedy[:3] + [(greedy[3] + 1) % 320]
    long_context = lm.tok_encode("code and text " * 8)  # longer than the window: cut on the left
    requests = [(None, context, greedy), (None, context, wrong), (None, long_context, greedy), (None, [1], [5, 6])]
    one_by_one = lm._loglikelihood_tokens(requests)
    lm._batch_size = 3
    batched = lm._loglikelihood_tokens(requests)
    assert [g for _, g in one_by_one] == [True, False, False, False]
    for (a, ga), (b, gb) in zip(one_by_one, batched):
        assert a == pytest.approx(b, abs=1e-4) and ga == gb
    window = (long_context + greedy)[-(64 + 1) :][:-1]
    logprobs = torch.log_softmax(model(torch.tensor([window]))[0, -4:].double(), dim=-1)
    assert one_by_one[2][0] == pytest.approx(float(logprobs[torch.arange(4), greedy].sum()), abs=1e-4)


@torch.no_grad()
def test_rolling_of_a_short_text_is_one_forward(checkpoint):
    folder, model = checkpoint
    lm = LitGPTLM(checkpoint=folder, device="cpu")
    text = "the model learns"
    tokens = [lm.prefix_token_id] + lm.tok_encode(text, add_special_tokens=False)
    logprobs = torch.log_softmax(model(torch.tensor([tokens[:-1]]))[0].double(), dim=-1)
    expected = float(logprobs[torch.arange(len(tokens) - 1), tokens[1:]].sum())
    assert lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])[0] == pytest.approx(
        expected, abs=1e-4
    )


def test_generate_until_is_greedy_and_stops(checkpoint):
    folder, model = checkpoint
    lm = LitGPTLM(checkpoint=folder, device="cpu")
    context = "the model learns"
    tokens = greedy_reference(model, lm.tok_encode(context), 12)
    assert lm.eot_token_id not in tokens
    full = lm.tok_decode(tokens)

    def run(gen_kwargs):
        return lm.generate_until([Instance("generate_until", {}, (context, gen_kwargs), 0)])[0]

    assert run({"until": [], "max_gen_toks": 12}) == full
    assert run({"max_gen_toks": 5}) == lm.tok_decode(tokens[:5])
    stop = next(c for c in full[3:] if c != "\ufffd")  # not a stand-in for an unfinished character
    assert run({"until": ["never there", stop], "max_gen_toks": 12}) == full[: full.index(stop)]
    assert run({"until": stop, "max_gen_toks": 12}) == full[: full.index(stop)]


def test_periodic_evaluation_of_a_model_in_memory(checkpoint, sp_tokenizer_dir, task_dir, reference):
    _, model = checkpoint
    model.train()
    torch.manual_seed(7)
    random.seed(7)
    scores = run_lm_eval_tasks(
        model, Tokenizer(sp_tokenizer_dir), [TASK], limit=None, include_path=str(task_dir), batch_size=4, device="cpu"
    )
    # training goes on undisturbed: its mode and random number streams are as they were
    assert model.training
    after = (torch.rand(2), random.random())
    torch.manual_seed(7)
    random.seed(7)
    assert torch.equal(after[0], torch.rand(2)) and after[1] == random.random()
    model.eval()
    _, acc, acc_norm = reference
    assert scores == pytest.approx({f"{TASK}/acc": acc, f"{TASK}/acc_norm": acc_norm})
    assert run_lm_eval_tasks(
        model, Tokenizer(sp_tokenizer_dir), [TASK], limit=5, include_path=str(task_dir), batch_size=4
    )[f"{TASK}/acc"] == pytest.approx(np.mean([np.argmax(s) == a for s, (_, _, a) in zip(reference[0][:5], QUESTIONS)]))


def test_flatten_results():
    results = {
        "hellaswag": {
            "alias": "hellaswag",
            "sample_len": 12,
            "acc,none": 0.25,
            "acc_stderr,none": 0.01,
            "acc_norm,none": 0.5,
        },
        "gsm8k": {"exact_match,strict-match": 0.125, "exact_match_stderr,strict-match": "N/A"},
    }
    assert flatten_results(results) == {
        "hellaswag/acc": 0.25,
        "hellaswag/acc_norm": 0.5,
        "gsm8k/exact_match/strict-match": 0.125,
    }


def test_lm_eval_command_line_knows_lit_gpt(checkpoint, task_dir, reference, tmp_path):
    """`lit-lm-eval` (lm-eval's CLI with the model registered) runs `--model lit_gpt`."""
    out = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-c",
        "from lit_gpt.evaluation.lm_eval_model import lm_eval_cli; lm_eval_cli()",
        "--model",
        "lit_gpt",
        "--model_args",
        f"checkpoint={checkpoint[0]},dtype=float32",
        "--tasks",
        TASK,
        "--include_path",
        str(task_dir),
        "--device",
        "cpu",
        "--batch_size",
        "4",
        "--output_path",
        str(out),
    ]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, text=True, timeout=300)
    (result_file,) = out.rglob("results_*.json")
    metrics = json.loads(result_file.read_text())["results"][TASK]
    assert metrics["acc_norm,none"] == pytest.approx(reference[2], abs=1e-9)


def test_bad_arguments(checkpoint):
    with pytest.raises(ValueError, match="exactly one"):
        LitGPTLM()
    with pytest.raises(ValueError, match="auto"):
        LitGPTLM(checkpoint=checkpoint[0], batch_size="auto")
