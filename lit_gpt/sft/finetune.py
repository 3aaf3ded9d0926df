"""The fine-tuning job behind lit-finetune (lit_gpt/cli/finetune.py): resolve the options, read and tokenize
the chat data, start from a pretrained checkpoint (or resume), and train with the loop pretraining uses."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import Any

from lit_gpt.checkpoint import checkpoint_folder, load_any_checkpoint
from lit_gpt.config import Config
from lit_gpt.lora import (
    BASE_DIGEST,
    TARGETS,
    LoRASettings,
    apply_lora,
    base_weights_sha256,
    check_qlora_available,
    lora_init_state,
    quantize_base,
    trainable_parameters,
)
from lit_gpt.model import flops_per_token
from lit_gpt.sft.data import (
    ChatBatches,
    DataReport,
    PackedBatches,
    read_conversations,
    split_chat_batch,
    split_validation,
    tokenize,
    validation_batches,
)
from lit_gpt.sft.finetune_args import FinetuneArgs  # noqa: F401  (re-exported)
from lit_gpt.sft.templates import TEMPLATES, SegmentEncoder, get_template, hf_tokenizer_config
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.training.args import RunArgs, runtime_overrides  # noqa: F401  (RunArgs re-exported)
from lit_gpt.training.checkpointing import TRAIN_STATE, find_checkpoint, latest_checkpoint
from lit_gpt.training.parallel import unwrap
from lit_gpt.training.run import run_config_of, start_run
from lit_gpt.training.schedule import LRSchedule, plan_batches
from lit_gpt.training.trainer import FitJob, LoopSettings, fit

# Options that must not change across a resume: the data stream and the targets depend on them.
FIXED_ON_RESUME = (
    "data",
    "data_format",
    "val_data",
    "val_fraction",
    "template",
    "skip_bad",
    "max_seq_length",
    "overlong",
    "seed",
    "global_batch_size",
    "method",
    "lora_r",
    "lora_alpha",
    "lora_targets",
    "packed",
)


def resolve(args: FinetuneArgs, recipe: Mapping[str, Any]) -> FinetuneArgs:
    """Fill every unset option from `recipe` (option -> value; the command picks it: lit_gpt/cli/finetune.py)."""
    filled = {f.name: getattr(args, f.name) for f in fields(args)}
    for key, value in recipe.items():
        if filled[key] is None:
            filled[key] = value
    return FinetuneArgs(**filled)


def load_data(args: FinetuneArgs, tokenizer: Tokenizer, max_seq_length: int) -> tuple[list, list, DataReport]:
    """Training and validation examples, and the report of what was skipped, truncated or dropped."""
    report = DataReport()
    conversations = read_conversations(args.data, args.data_format, args.skip_bad, report)
    if args.val_data is not None:
        train, val = conversations, read_conversations(args.val_data, args.data_format, args.skip_bad, report)
    else:
        train, val = split_validation(conversations, args.val_fraction, args.seed)
    encoder, template = SegmentEncoder(tokenizer), get_template(args.template)
    train_examples = tokenize(train, encoder, template, max_seq_length, args.overlong, report)
    val_examples = tokenize(val, encoder, template, max_seq_length, args.overlong, report)
    if not train_examples:
        raise ValueError(f"{args.data}: no training examples left ({report.summary()})")
    return train_examples, val_examples, report


def lora_settings(args: FinetuneArgs) -> LoRASettings | None:
    if args.method == "full":
        return None
    return LoRASettings(
        r=args.lora_r,
        alpha=args.lora_alpha,
        dropout=args.lora_dropout,
        targets=tuple(args.lora_targets or TARGETS),
        quantize="nf4" if args.method == "qlora" else None,
    )


def base_of(checkpoint: Path) -> Path:
    """The base weights an adapter checkpoint was trained on (recorded in its train state)."""
    saved = json.loads((Path(checkpoint) / TRAIN_STATE).read_text())["config"]
    base = saved.get("initial_weights")
    if not base or not Path(base).exists():
        raise FileNotFoundError(
            f"{checkpoint}: the LoRA base weights {base!r} it was trained on are not there "
            f"(the adapter checkpoint needs them)"
        )
    return Path(base)


def finetune(
    args: FinetuneArgs, recipe: Mapping[str, Any] | None = None, default_run: Path | None = None, hint: str = ""
) -> dict[str, Any]:
    """Fine-tune. `recipe` fills the options left unset; without `checkpoint`, the newest checkpoint of the run
    folder `default_run` is the start (`hint` ends the error when there is none)."""
    args = resolve(args, recipe or {})
    if args.data is None:
        raise ValueError("no --data given: a .jsonl/.json file of conversations or a folder of them (SFT.md)")
    if args.float8 and args.method != "full":
        raise ValueError(
            f"--float8 applies to full fine-tuning; with --method {args.method} the adapted linears stay "
            f"in bf16 (drop --float8)"
        )
    if args.optimizer == "muon" and args.method != "full":
        raise ValueError(
            f"--optimizer muon orthogonalises whole weight matrices; the low-rank adapters of --method "
            f"{args.method} train with --optimizer adamw"
        )
    run = start_run(args)
    fabric, resume_from = run.fabric, run.resume_from

    lora = lora_settings(args)
    if args.method == "qlora":
        if run.kind != "single":
            raise ValueError("QLoRA runs on one device (strategy 'single'): its 4-bit weights are not sharded")
        check_qlora_available(fabric.device)
    initial_state, base_digest = None, None
    if resume_from is not None:
        # a checkpoint carries its model config and tokenizer: the starting weights are not needed again,
        # but for LoRA's frozen base, which its checkpoints leave out
        source, config = None, Config.from_file(resume_from / "model_config.yaml")
        tokenizer = Tokenizer(args.tokenizer_dir or resume_from)
        if lora is not None:
            source = base_of(resume_from)
            initial_state, _ = load_any_checkpoint(source)
            initial_state.update(lora_init_state(config, lora, args.seed))  # overwritten by the checkpoint's
    else:
        source = find_checkpoint(args.checkpoint, default_run, hint=hint)
        initial_state, config = load_any_checkpoint(source)
        tokenizer = Tokenizer(args.tokenizer_dir or checkpoint_folder(source))
        if lora is not None:
            base_digest = base_weights_sha256(initial_state)
            initial_state = {**initial_state, **lora_init_state(config, lora, args.seed)}
    if overrides := runtime_overrides(args):
        config = Config.from_dict({**config.to_dict(), **overrides})
    if args.packed:
        # the document mask starts a new conversation at each BOS: every rendered conversation begins with one
        if tokenizer.bos_id is None:
            raise ValueError(
                "packed fine-tuning needs a tokenizer with a BOS token (it marks where each "
                "conversation starts); pass --packed false"
            )
        config = Config.from_dict({**config.to_dict(), "document_mask": True, "bos_id": tokenizer.bos_id})
    if tokenizer.vocab_size > config.padded_vocab_size:
        raise ValueError(
            f"the tokenizer ({tokenizer.vocab_size} ids) does not fit the model's vocabulary "
            f"({config.padded_vocab_size}); pass the tokenizer the model was trained with"
        )
    max_seq_length = args.max_seq_length or config.block_size
    if not 1 <= max_seq_length <= config.block_size:
        raise ValueError(f"max_seq_length {max_seq_length} must be in [1, the model's block size {config.block_size}]")
    args = dataclasses.replace(args, max_seq_length=max_seq_length)

    train_examples, val_examples, report = load_data(args, tokenizer, max_seq_length)
    fabric.print(
        f"data: {report.summary()}; {len(train_examples)} training and {len(val_examples)} validation "
        f"examples, template {args.template}"
    )
    plan = plan_batches(args.micro_batch_size, fabric.world_size, max_seq_length, args.global_batch_size)
    if args.packed:
        train_loader = PackedBatches(
            train_examples,
            args.micro_batch_size,
            max_seq_length,
            seed=args.seed,
            rank=fabric.global_rank,
            world_size=fabric.world_size,
        )
        units, unit_name = train_loader.rows_in_epoch(0), "rows"
        mean_length = max(1, round(train_loader.real_tokens_per_row()))
    else:
        train_loader = ChatBatches(
            train_examples,
            args.micro_batch_size,
            max_seq_length,
            seed=args.seed,
            rank=fabric.global_rank,
            world_size=fabric.world_size,
        )
        units, unit_name = len(train_examples), "conversations"
        mean_length = max(1, round(sum(len(e) - 1 for e in train_examples) / len(train_examples)))
    # The loop counts global_batch_size x block_size tokens a step; the mean real (non-padding) tokens of a
    # row makes that count (and tokens/s, MFU) about right instead of padded to the maximum.
    plan = dataclasses.replace(plan, block_size=mean_length)
    steps_per_epoch = max(1, units // plan.global_batch_size)
    max_steps = args.max_steps or max(1, math.ceil(args.epochs * steps_per_epoch))
    warmup = (
        args.warmup_steps
        if args.warmup_steps is not None
        else min(round(args.warmup_fraction * max_steps), max_steps - 1)
    )
    schedule = LRSchedule(args.lr, args.min_lr, warmup, max_steps)
    # fewer validation conversations than ranks leave no batch for each: no validation then
    val_loader = (
        validation_batches(val_examples, args.micro_batch_size, max_seq_length, fabric.global_rank, fabric.world_size)
        or None
    )

    model = run.setup_model(args, config, initial_state, None if lora is None else partial(apply_lora, settings=lora))
    del initial_state
    if lora is not None:
        if lora.quantize:
            quantize_base(unwrap(model), fabric.device)
        trainable, total = trainable_parameters(unwrap(model))
        fabric.print(
            f"{args.method}: rank {lora.r}, alpha {lora.alpha:g} on {', '.join(lora.targets)}; "
            f"{trainable:,} trainable of {total:,} parameters (on this rank)"
        )
    optimizer = run.setup_optimizer(args, model)

    run_config = run_config_of(args)
    run_config["initial_weights"] = str(source.resolve()) if source else None
    if lora is not None:
        run_config[BASE_DIGEST] = base_digest  # the base the adapter is trained on: lit-merge-lora checks it
    # a changed LoRA rank is named here rather than failing on a shape
    state, saved_config = run.resume(resume_from, config, run_config, FIXED_ON_RESUME, model, optimizer, train_loader)
    if resume_from is not None:
        run_config["initial_weights"] = saved_config.get("initial_weights")
        if lora is not None:
            run_config[BASE_DIGEST] = saved_config.get(BASE_DIGEST)
        fabric.print(f"resumed from {resume_from} at step {state['step']}")
    else:
        fabric.print(f"starting from {source}")
    # the chat template travels in every checkpoint, so the Hugging Face export carries it
    tokenizer_config = hf_tokenizer_config(tokenizer, TEMPLATES[args.template], config.block_size)
    extra_files = run.write_configs(
        config, run_config, tokenizer, {"tokenizer_config.json": json.dumps(tokenizer_config, indent=2) + "\n"}
    )

    fpt = flops_per_token(config, mean_length)
    fabric.print(
        f"{config.name}: fine-tuning on {fabric.world_size} device(s) ({run.kind}); global batch "
        f"{plan.global_batch_size} {unit_name}, micro batch {plan.micro_batch_size}, accumulation "
        f"{plan.grad_accum_steps}; {max_steps:,} steps ({max_steps / steps_per_epoch:.2f} epochs), lr {args.lr:g}; "
        f"{mean_length} real tokens per {unit_name[:-1]} on average"
    )
    settings = LoopSettings.from_args(args, max_steps)
    state = fit(
        FitJob(
            fabric,
            model,
            optimizer,
            train_loader,
            val_loader,
            schedule,
            plan,
            settings,
            state,
            run.checkpoint_root,
            extra_files,
            fpt,
            run_config,
            split_batch=split_chat_batch,
        )
    )
    last = latest_checkpoint(run.checkpoint_root)
    if last is not None and lora is not None:
        fabric.print(
            f"the checkpoints hold the adapter alone; fold it into the base weights with: python "
            f"scripts/merge_lora.py --checkpoint {last} --output_dir {run.out_dir / 'merged'}"
        )
    elif last is not None:
        fabric.print(
            f"chat with it: python sft/chat.py --checkpoint {last}\n"
            f"Hugging Face folder (with the chat template): python scripts/convert_lit_checkpoint.py "
            f"--checkpoint {last} --output_dir {run.out_dir / 'hf'}"
        )
    return state
