"""One training run's setup, shared by pretraining and fine-tuning: Fabric launched on a locked out_dir,
the checkpoint to resume from, the model and its optimizer, the resume itself and the configs every
checkpoint carries. The jobs keep what differs: data, loss masking, LoRA, recipes."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from lit_gpt.config import Config
from lit_gpt.training.args import RunArgs
from lit_gpt.training.checkpointing import (
    check_model_config,
    check_resumable,
    load_checkpoint,
    read_train_state,
    remove_stale_temporaries,
    resume_path,
)
from lit_gpt.training.disk import estimated_checkpoint_bytes, warn_if_short_of_space
from lit_gpt.training.parallel import unwrap
from lit_gpt.training.run_lock import hold_run_lock
from lit_gpt.training.setup import build_fabric, launch, setup_model
from lit_gpt.training.trainer import make_optimizer


@dataclass
class Run:
    """A launched run: its Fabric and strategy kind ("single", "ddp" or "fsdp"), where it writes, and the
    checkpoint it resumes from (None: a fresh start)."""

    fabric: L.Fabric
    kind: str
    out_dir: Path
    resume_from: Path | None

    @property
    def checkpoint_root(self) -> Path:
        return self.out_dir / "checkpoints"

    def setup_model(
        self,
        args: RunArgs,
        config: Config,
        initial_state: dict[str, torch.Tensor] | None = None,
        transform: Callable | None = None,
    ):
        return setup_model(
            self.fabric, config, args, sharded=self.kind == "fsdp", initial_state=initial_state, transform=transform
        )

    def setup_optimizer(self, args: RunArgs, model):
        """The optimizer `args.optimizer` names (AdamW, or Muon with AdamW) for `model`; warns when the disk is
        short of room for a checkpoint and drops the half-written ones an interrupted run left."""
        optimizer = make_optimizer(
            model, args.lr, args.weight_decay, (args.beta1, args.beta2), kind=args.optimizer or "adamw"
        )
        optimizer = self.fabric.setup_optimizers(optimizer)
        if self.fabric.global_rank == 0:
            warn_if_short_of_space(self.checkpoint_root, estimated_checkpoint_bytes(model), "at start")
        remove_stale_temporaries(self.checkpoint_root)
        return optimizer

    def resume(
        self,
        load_from: Path | None,
        config: Config,
        run_config: dict[str, Any],
        fixed: Sequence[str],
        model,
        optimizer,
        train_loader,
        **loader_options,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The loop's counters (all 0 without `load_from`) and the run config saved in `load_from`, whose weights,
        optimizer and data position are loaded once its model config and the options in `fixed` are found
        unchanged (checked first: a change is named, not met as a missing key or a shape). Another optimizer than
        the checkpoint's is refused unless `run_config["allow_optimizer_change"]`: then its state starts afresh."""
        state: dict[str, Any] = dict(
            step=0, tokens=0, skipped_steps=0, consecutive_nonfinite=0, elapsed_sec=0.0, train_sec=0.0
        )
        if load_from is None:
            return state, None
        check_model_config(load_from, config)
        saved_config = read_train_state(load_from)["config"]
        check_resumable(saved_config, run_config, fixed)
        fresh_optimizer = optimizer_changed(load_from, saved_config, run_config)
        if fresh_optimizer:
            self.fabric.print(
                f"{load_from}: trained with --optimizer {saved_config.get('optimizer') or 'adamw'}; going on with "
                f"{run_config['optimizer']} from a fresh optimizer state"
            )
        raw_optimizer = None if fresh_optimizer else getattr(optimizer, "optimizer", optimizer)
        saved = load_checkpoint(load_from, unwrap(model), raw_optimizer)
        train_loader.load_state_dict(saved["data"], **loader_options)
        # train_sec is newer than some checkpoints: theirs count from the resume
        return {k: saved.get(k, state[k]) for k in state}, saved["config"]

    def write_configs(
        self, config: Config, run_config: dict[str, Any], tokenizer=None, texts: dict[str, str] | None = None
    ) -> dict[str, Path]:
        """Rank 0 writes the model config, the run config, the tokenizer's files and `texts` (file name ->
        content) to out_dir; a text wins over a tokenizer file of the same name (fine-tuning's
        tokenizer_config.json, which adds the chat template to the tokenizer's own). Returns the files every
        checkpoint carries a copy of: those but the run config. They are copied from out_dir, not from the
        tokenizer's folder, which may be a checkpoint that `--keep_last` prunes while the run goes on."""
        texts = texts or {}
        tokenizer_files = [f for f in (tokenizer.files if tokenizer is not None else ()) if f.name not in texts]
        if self.fabric.global_rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.out_dir / "model_config.yaml")
            (self.out_dir / "run_config.yaml").write_text(yaml.safe_dump(run_config, sort_keys=False))
            for src in tokenizer_files:
                dst = self.out_dir / src.name
                if not (dst.exists() and dst.samefile(src)):
                    shutil.copyfile(src, dst)
            for name, text in texts.items():
                (self.out_dir / name).write_text(text)
        self.fabric.barrier()
        names = ("model_config.yaml", *(f.name for f in tokenizer_files), *texts)
        return {name: self.out_dir / name for name in names}


def start_run(args: RunArgs) -> Run:
    """Fabric built and launched, the out_dir locked to this run (one writer per out_dir), every rank
    seeded, and the checkpoint `--resume` names or finds."""
    fabric, kind = build_fabric(args)
    launch(fabric)
    out_dir = Path(args.out_dir)
    hold_run_lock(fabric, out_dir)
    fabric.seed_everything(args.seed)
    return Run(fabric, kind, out_dir, resume_path(args.resume, out_dir / "checkpoints"))


def optimizer_changed(load_from: Path, saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether the run goes on with another optimizer than `load_from` was written with (a checkpoint from before
    the option trained with AdamW); refused unless `current["allow_optimizer_change"]`."""
    was, now = saved.get("optimizer") or "adamw", current.get("optimizer") or "adamw"
    if was == now:
        return False
    if not current.get("allow_optimizer_change"):
        raise ValueError(
            f"cannot resume from {load_from}: it was trained with --optimizer {was}, this run asks for {now}. "
            f"Give --optimizer {was} to go on as before, or --allow_optimizer_change true to go on with {now} from a "
            f"fresh optimizer state (weights, step and data position kept)"
        )
    return True


def run_config_of(args: RunArgs) -> dict[str, Any]:
    """The options as checkpoints record them (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(args).items()}
