"""The options of a pretraining run (the recipes that fill the unset ones are the command's:
lit_gpt/cli/recipes). Kept free of torch: `lit-pretrain --help` reads them without loading the training machinery."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lit_gpt.training.args import RunArgs


@dataclass
class PretrainArgs(RunArgs):
    """Options of a pretraining run. Options left at null take the recipe's value: the `recipe` named, else
    the TinyLlama recipe when --data_dir is given, the embedded demo otherwise.

    Args:
        recipe: The recipe for a run on prepared data (--data_dir): "tinyllama" (the default: TinyLlama
            1.1B, global batch 1024 x 2048, 1,430,512 steps) or "small" (the demo's ~5M-parameter model with
            the tokenizer's vocabulary, global batch 16 x 256, 300 steps, minutes on a CPU; give
            --train_sources and, to validate, --val_prefix).
        data_dir: Folder of packed shards (`{prefix}_*.bin` with `{prefix}.manifest.json`). Null: the
            sample corpus shipped with the package, prepared into `{out_dir}/data` on first use.
        tokenizer_dir: Tokenizer folder the shards were made with; checked against the manifests and
            copied into every checkpoint. Null in the demo: trained into `{out_dir}/tokenizer`.
        model_name: A preset of lit_gpt.config (tiny_LLaMA_1b, tiny_LLaMA_120M, ...).
        model_config: A YAML/JSON model config file instead of a preset.
        initial_checkpoint: Continued pretraining: start from these weights (a lit checkpoint or a
            Hugging Face folder) with a fresh optimizer and schedule.
        train_sources: Data mix: shard prefix -> sampling weight.
        val_prefix: Shard prefix of the validation set ("": no validation).
        global_batch_tokens: The global batch in tokens (instead of global_batch_size).
        max_tokens: Tokens to train (instead of max_steps).
        eval_batches: Micro batches per rank in the fixed validation set.
        num_workers: DataLoader worker processes per rank (null: from the CPUs per rank, see
            lit_gpt.data.default_num_workers).
        shuffle_buffer_files: Blocks are shuffled within groups of this many files.
        eval_tasks: Comma-separated lm-eval tasks to score every `eval_tasks_interval` steps (e.g. hellaswag,piqa).
        eval_tasks_interval: Steps between lm-eval runs (0: never).
        eval_tasks_limit: At most this many documents per task (null: all).
        eval_tasks_include_path: A folder of extra lm-eval task YAMLs.
        document_mask: Attention stays inside each packed document (a document starts at the
            tokenizer's BOS); FlexAttention on CUDA, a dense mask elsewhere. Saved in the model config.
        lr_schedule: "cosine" (warmup, then cosine decay to min_lr at max_steps), "wsd" (warmup, constant
            lr, then a decay to min_lr over the last decay_steps) or "constant" (warmup, then lr).
        decay_steps: wsd: length of the final decay in steps (or give decay_fraction).
        decay_fraction: wsd: length of the final decay as a fraction of max_steps.
        decay_shape: wsd: "linear", "cosine" or "1-sqrt".
        anneal_from: Annealing: branch off a checkpoint of another run (its weights, optimizer state, data
            position and step k) into a decay to min_lr over decay_steps steps, written to a new out_dir;
            options left unset are the original run's. The original run is not touched.
        allow_mix_change: Resume (or anneal) with a different train_sources mix; each source goes on from
            the samples it had delivered (PRETRAIN.md, "Changing the data mix").
        allow_schedule_change: Resume with options that change the learning rates (max_steps, max_tokens, lr,
            min_lr, warmup_steps, lr_schedule, decay_*): the new schedule applies from the resumed step on,
            as if the run had had it from the start (PRETRAIN.md, "Resuming with another schedule").
    """

    recipe: Literal["tinyllama", "small"] | None = None

    data_dir: Path | None = None
    tokenizer_dir: Path | None = None
    model_name: str | None = None
    model_config: Path | None = None
    initial_checkpoint: Path | None = None
    train_sources: dict[str, float] | None = None
    val_prefix: str | None = None
    global_batch_tokens: int | None = None
    max_tokens: int | None = None
    eval_batches: int | None = None
    num_workers: int | None = None
    shuffle_buffer_files: int = 8
    eval_tasks: str | None = None
    eval_tasks_interval: int = 0
    eval_tasks_limit: int | None = None
    eval_tasks_include_path: str | None = None
    document_mask: bool = False
    lr_schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    decay_steps: int | None = None
    decay_fraction: float | None = None
    decay_shape: Literal["linear", "cosine", "1-sqrt"] = "linear"
    anneal_from: Path | None = None
    allow_mix_change: bool = False
    allow_schedule_change: bool = False
