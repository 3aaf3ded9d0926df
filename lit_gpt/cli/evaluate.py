"""Score a lit checkpoint on lm-evaluation-harness tasks and print a table.

    python scripts/eval_harness.py --checkpoint out/tinyllama/checkpoints/step-00100000 --preset commonsense
    python scripts/eval_harness.py --checkpoint ckpt --tasks hellaswag,piqa --limit 200 --output_path scores.json
    python scripts/eval_harness.py --checkpoint ckpt --tasks my_task --include_path my_tasks/

The preset "commonsense" is the seven zero-shot tasks of the TinyLlama / Pythia comparison (EVAL.md).
lm-eval downloads the task data sets from the Hugging Face hub on first use; offline, a task whose data
is not on disk stops at once (exit 2) with the way to run it as a local task.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Literal

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path

# the order of the anchor table in EVAL.md
PRESETS: dict[str, list[str]] = {
    "commonsense": ["hellaswag", "openbookqa", "winogrande", "arc_challenge", "arc_easy", "boolq", "piqa"],
}


def score_table(results: dict[str, dict]) -> str:
    """A markdown table of acc and acc_norm (in %) per task, and their average taking acc_norm where
    the task reports it, else acc (how the TinyLlama and Pythia numbers are averaged)."""
    lines = ["| task | acc | acc_norm |", "|---|---|---|"]
    headline = []
    for task, metrics in results.items():
        acc, norm = metrics.get("acc,none"), metrics.get("acc_norm,none")
        if acc is None and norm is None:
            continue
        lines.append(
            f"| {task} | {'' if acc is None else f'{100 * acc:.2f}'} | {'' if norm is None else f'{100 * norm:.2f}'} |"
        )
        headline.append(norm if norm is not None else acc)
    if len(headline) > 1:
        lines.append(f"| average (acc_norm, else acc) | | {100 * sum(headline) / len(headline):.2f} |")
    return "\n".join(lines)


def evaluate(
    checkpoint: Path,
    tasks: str | None = None,
    preset: Literal["commonsense"] | None = None,
    include_path: Path | None = None,
    limit: float | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    dtype: Literal["bfloat16", "float16", "float32"] | None = None,
    tokenizer_dir: Path | None = None,
    output_path: Path | None = None,
    log_samples: bool = False,
    seed: int = 1234,
) -> dict:
    """Run lm-eval on a lit checkpoint; return lm-eval's result dict (with "samples" when `log_samples`).

    Args:
        checkpoint: a lit checkpoint folder, a .pth file, a pretraining checkpoint folder or a run folder (its
            newest whole checkpoint).
        tasks: comma-separated lm-eval task (or group) names.
        preset: a named list of tasks, added to `tasks`: commonsense (hellaswag, openbookqa, winogrande,
            arc_challenge, arc_easy, boolq, piqa).
        include_path: a folder of task YAML files to add to lm-eval's own.
        limit: at most this many documents per task; below 1, this fraction of them.
        num_fewshot: examples in the prompt (default: each task's own, 0 for the preset).
        batch_size: sequences per forward pass.
        device: cpu, cuda, cuda:1, ... or auto (cuda when available).
        dtype: weight type (default: bfloat16 on a GPU that has it, else float32).
        tokenizer_dir: where the tokenizer files are (default: the checkpoint's folder).
        output_path: write the results (and the samples, with `log_samples`) to this JSON file.
        log_samples: keep every document's requests and model responses.
        seed: seed of lm-eval's random number generators (few-shot sampling).
    """
    check_path("checkpoint", checkpoint, "checkpoint")
    check_path("include_path", include_path, "folder")
    check_path("tokenizer_dir", tokenizer_dir, "folder")
    check_path("output_path", output_path, "output file")
    from lm_eval import simple_evaluate
    from lm_eval.utils import handle_non_serializable

    from lit_gpt.evaluation.offline import check_task_data_offline
    from lit_gpt.evaluation.periodic import task_manager

    names = list(dict.fromkeys([t.strip() for t in (tasks or "").split(",") if t.strip()] + PRESETS.get(preset, [])))
    if not names:
        raise ValueError("name tasks with --tasks and/or --preset")
    manager = task_manager(str(include_path) if include_path else None, tuple(names))
    unknown = [name for name in names if manager._entry(name) is None and not Path(name).is_file()]
    if unknown:
        close = difflib.get_close_matches(unknown[0], manager.all_tasks + manager.all_groups + manager.all_tags, n=3)
        raise ValueError(
            f"--tasks: {', '.join(unknown)} is not a task lm-eval knows"
            + (f" (did you mean {', '.join(close)}?)" if close else "")
            + "; `lit-lm-eval ls tasks` lists them, --include_path adds a folder of your own"
        )
    check_task_data_offline(manager, names)  # before the model loads and lm-eval retries the hub

    from lit_gpt.evaluation.lm_eval_model import LitGPTLM
    from lit_gpt.training.checkpointing import find_checkpoint

    checkpoint = find_checkpoint(checkpoint)  # the one the record names
    lm = LitGPTLM(checkpoint=checkpoint, tokenizer_dir=tokenizer_dir, device=device, dtype=dtype, batch_size=batch_size)
    results = simple_evaluate(
        model=lm,
        tasks=names,
        num_fewshot=num_fewshot,
        limit=None if limit is None else (limit if limit < 1 else int(limit)),
        task_manager=manager,
        log_samples=log_samples,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    print(score_table(results["results"]))
    if output_path is not None:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        record = {"checkpoint": str(checkpoint), **results}
        output_path.write_text(json.dumps(record, indent=2, default=handle_non_serializable, ensure_ascii=False))
        print(f"wrote {output_path}", file=sys.stderr)
    return results


def main(argv=None) -> None:
    """`lit-evaluate` and `scripts/eval_harness.py`."""
    run_cli(evaluate, argv)


if __name__ == "__main__":
    main()
