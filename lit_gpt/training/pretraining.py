"""The pretraining job behind lit-pretrain (lit_gpt/cli/pretrain.py): resolve the options against the recipe
the command gives, build the run, resume if asked, train."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from lit_gpt.checkpoint import load_any_checkpoint
from lit_gpt.config import Config
from lit_gpt.data import build_train_loader, build_val_loader, check_source
from lit_gpt.model import flops_per_token, num_parameters
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.training.args import RunArgs, runtime_overrides  # noqa: F401  (RunArgs re-exported)
from lit_gpt.training.checkpointing import read_train_state
from lit_gpt.training.continuation import anneal_options, check_mix_change, check_schedule_change
from lit_gpt.training.option_checks import check_pretrain_options, check_vocab_fits
from lit_gpt.training.parallel import unwrap
from lit_gpt.training.pretrain_args import PretrainArgs  # noqa: F401  (re-exported)
from lit_gpt.training.run import run_config_of, start_run
from lit_gpt.training.schedule import plan_batches, schedule_from_options
from lit_gpt.training.trainer import FitJob, LoopSettings, fit


def resolve(args: PretrainArgs, recipe: Mapping[str, Any]) -> PretrainArgs:
    """Fill every unset option from `recipe` (option -> value; the command picks it: lit_gpt/cli/pretrain.py)."""
    filled = {f.name: getattr(args, f.name) for f in fields(args)}
    for key, value in recipe.items():
        if (
            filled[key] is None
            and not (key == "global_batch_size" and args.global_batch_tokens is not None)
            and not (key == "max_steps" and args.max_tokens is not None)
            and not (key == "model_name" and (args.model_config or args.initial_checkpoint or args.anneal_from))
        ):
            filled[key] = value
    return PretrainArgs(**filled)


def model_config_for(
    args: PretrainArgs, initial_config: Config | None, tokenizer=None, vocab_from_tokenizer: bool = False
) -> Config:
    overrides: dict[str, Any] = runtime_overrides(args)
    if args.document_mask:
        if tokenizer is None or tokenizer.bos_id is None:
            raise ValueError("--document_mask finds documents by their BOS token: give a --tokenizer_dir that has one")
        overrides.update(document_mask=True, bos_id=tokenizer.bos_id)
    if initial_config is not None:
        if args.model_name or args.model_config:
            raise ValueError("--initial_checkpoint brings its own model config; drop --model_name/--model_config")
        return Config.from_dict({**initial_config.to_dict(), **overrides})
    if args.model_config is not None:
        return Config.from_dict({**Config.from_file(args.model_config).to_dict(), **overrides})
    if vocab_from_tokenizer:
        overrides["vocab_size"] = tokenizer.vocab_size  # the demo-size model takes the tokenizer's size
    return Config.from_name(args.model_name, **overrides)


def check_data(args: PretrainArgs, tokenizer, config: Config) -> None:
    """Refuse, before any training, data the model cannot read or that another tokenizer made."""
    if tokenizer is not None:
        check_vocab_fits(config, tokenizer.vocab_size, args.tokenizer_dir)
    prefixes = list(args.train_sources) + ([args.val_prefix] if args.val_prefix else [])  # "" = no validation
    for prefix in prefixes:
        unchecked = check_source(
            args.data_dir, prefix, tokenizer.identity() if tokenizer else None, config.padded_vocab_size
        )
        if unchecked:
            warnings.warn(unchecked)


def pretrain(
    args: PretrainArgs, recipe: Mapping[str, Any] | None = None, sample_dir: Path | None = None
) -> dict[str, Any]:
    """Train. `recipe` fills the options left unset; without `data_dir`, `sample_dir` (a folder of raw
    SlimPajama/Starcoder-style files, the demo's) is tokenized into `{out_dir}/data` first."""
    branch_from = None  # an annealing branch's starting checkpoint (PRETRAIN.md, Annealing)
    if args.anneal_from is not None:
        args, branch_from = anneal_options(args)
    demo = args.data_dir is None
    if demo and sample_dir is None:
        raise ValueError("no --data_dir given: point it at a folder of prepared shards (PRETRAIN.md)")
    args = resolve(args, recipe or {})
    if args.train_sources is not None and not args.train_sources:
        raise ValueError("train_sources is empty: name at least one shard prefix and its weight")
    check_pretrain_options(args)  # before any data, tokenizer or process work
    run = start_run(args)
    fabric = run.fabric
    if demo:
        from lit_gpt.data.demo import prepare_sample

        with fabric.rank_zero_first():
            data_dir, tokenizer_dir = prepare_sample(sample_dir, args.out_dir, tokenizer_dir=args.tokenizer_dir)
        args = dataclasses.replace(args, data_dir=data_dir, tokenizer_dir=tokenizer_dir)
    if not Path(args.data_dir).is_dir():
        raise FileNotFoundError(f"data_dir {args.data_dir} does not exist (prepare shards first: PRETRAIN.md)")

    tokenizer = Tokenizer(args.tokenizer_dir) if args.tokenizer_dir else None
    initial_state, initial_config = None, None
    if args.initial_checkpoint and run.resume_from is None:
        initial_state, initial_config = load_any_checkpoint(args.initial_checkpoint)
    elif args.initial_checkpoint:
        # resuming a run that started from --initial_checkpoint: its model config is saved in the checkpoint
        initial_config = Config.from_file(Path(run.resume_from) / "model_config.yaml")
    elif branch_from is not None:
        initial_config = Config.from_file(Path(branch_from) / "model_config.yaml")
    config = model_config_for(args, initial_config, tokenizer, vocab_from_tokenizer=demo or args.recipe == "small")
    if demo:
        args = dataclasses.replace(args, model_name=config.name)
    check_data(args, tokenizer, config)

    plan = plan_batches(
        args.micro_batch_size, fabric.world_size, config.block_size, args.global_batch_size, args.global_batch_tokens
    )
    max_steps = args.max_steps if args.max_tokens is None else -(-args.max_tokens // plan.tokens_per_step)
    schedule = schedule_from_options(args, max_steps)
    train_loader = build_train_loader(
        args.data_dir,
        args.train_sources,
        config.block_size,
        args.micro_batch_size,
        seed=args.seed,
        rank=fabric.global_rank,
        world_size=fabric.world_size,
        num_workers=args.num_workers,
        shuffle_buffer_files=args.shuffle_buffer_files,
        vocab_size=config.padded_vocab_size,
    )
    val_loader = None
    if args.val_prefix:
        val_loader = build_val_loader(
            args.data_dir,
            args.val_prefix,
            config.block_size,
            args.micro_batch_size,
            rank=fabric.global_rank,
            world_size=fabric.world_size,
            num_batches=args.eval_batches,
            vocab_size=config.padded_vocab_size,
        )

    model = run.setup_model(args, config, initial_state)
    optimizer = run.setup_optimizer(args, model)
    run_config = run_config_of(args)
    load_from = run.resume_from or branch_from
    schedule_change = None
    if load_from is not None:
        saved = read_train_state(load_from)
        check_mix_change(saved["config"], run_config, args.allow_mix_change)
        if run.resume_from is not None:
            schedule_change = check_schedule_change(
                saved["config"], run_config, plan.tokens_per_step, int(saved["step"]), args.allow_schedule_change
            )
    fixed = _FIXED_ON_RESUME if run.resume_from is not None else _FIXED_ON_BRANCH
    state, _ = run.resume(
        load_from, config, run_config, fixed, model, optimizer, train_loader, allow_mix_change=args.allow_mix_change
    )
    if run.resume_from is not None:
        fabric.print(f"resumed from {run.resume_from} at step {state['step']} ({state['tokens']:,} tokens)")
        if schedule_change:
            fabric.print(f"learning-rate schedule changed on resume: {schedule_change}")
    elif branch_from is not None:
        fabric.print(
            f"annealing branch from {branch_from} at step {state['step']}: lr {args.lr:.3g} "
            f"-> {args.min_lr:.3g} ({args.decay_shape}) over {args.decay_steps} steps"
        )
    extra_files = run.write_configs(config, run_config, tokenizer)

    fpt = flops_per_token(config)
    fabric.print(
        f"{config.name}: {num_parameters(config):,} parameters, {fpt / 1e9:.3g} GFLOP/token; {run.kind} on "
        f"{fabric.world_size} device(s); global batch "
        f"{plan.global_batch_size} x {config.block_size} = {plan.tokens_per_step:,} tokens, micro batch "
        f"{plan.micro_batch_size}, accumulation {plan.grad_accum_steps}; {max_steps:,} steps"
    )
    settings = LoopSettings.from_args(
        args, max_steps, extra_eval_interval=args.eval_tasks_interval if args.eval_tasks else 0
    )
    extra_eval = None
    if args.eval_tasks:
        if tokenizer is None:
            raise ValueError("--eval_tasks needs --tokenizer_dir")
        from lit_gpt.evaluation.periodic import run_lm_eval_tasks

        def extra_eval() -> dict[str, float]:
            # every rank scores the same documents: a sharded model's forward needs all of them
            return {
                f"lm_eval/{k}": v
                for k, v in run_lm_eval_tasks(
                    unwrap(model),
                    tokenizer,
                    args.eval_tasks.split(","),
                    limit=args.eval_tasks_limit,
                    include_path=args.eval_tasks_include_path,
                    batch_size=args.micro_batch_size,
                ).items()
            }

    return fit(
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
            extra_eval=extra_eval,
        )
    )


# Options that must not change across a resume: the model and the data stream depend on them
# (train_sources too, but check_mix_change allows it with --allow_mix_change).
_FIXED_ON_RESUME = (
    "model_name",
    "model_config",
    "seed",
    "global_batch_size",
    "global_batch_tokens",
    "shuffle_buffer_files",
)
# An annealing branch takes its model from the checkpoint (compared in content): the data stream's options.
_FIXED_ON_BRANCH = ("seed", "global_batch_size", "global_batch_tokens", "shuffle_buffer_files")
