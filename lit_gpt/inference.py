"""One way to load a checkpoint for inference: the model on a device and dtype, and its tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lit_gpt.checkpoint import (
    PathLike,
    checkpoint_folder,
    default_device_and_dtype,
    has_tokenizer,
    load_any_checkpoint,
    model_from_state_dict,
)
from lit_gpt.config import Config
from lit_gpt.model import GPT
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.training.checkpointing import find_checkpoint


@dataclass
class LoadedModel:
    model: GPT  # in eval mode
    tokenizer: Tokenizer | None  # None only when not required and none was found
    path: Path  # the checkpoint read (a run folder's newest whole checkpoint)

    @property
    def config(self) -> Config:
        return self.model.config

    @property
    def folder(self) -> Path:
        return checkpoint_folder(self.path)

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device


def load_for_inference(
    checkpoint: PathLike,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = None,
    tokenizer_dir: PathLike | None = None,
    require_tokenizer: bool = True,
    kernels: str | None = "torch",
) -> LoadedModel:
    """A lit checkpoint (folder, .pth file, pretraining or fine-tuning DCP folder), a run folder (its newest
    whole checkpoint) or a Hugging Face folder, loaded for inference.

    `device` and `dtype` as the command lines take them (None or "auto": CUDA when present; bfloat16 on a GPU
    that has it, else float32), or a torch.device / torch.dtype. The tokenizer comes from `tokenizer_dir`, else
    the checkpoint's folder; without `require_tokenizer` a folder without one gives None. `kernels`: the ops
    backend, by default the reference torch ops (decoding is bound by weight reads, not by the fused training
    kernels, and they run anywhere); None keeps the checkpoint's."""
    path = find_checkpoint(Path(checkpoint))
    device, dtype = default_device_and_dtype(device, dtype)
    state_dict, config = load_any_checkpoint(path)
    if kernels is not None:
        config = replace(config, kernels=kernels)
    # the kernel a training run chose need not be installed where its checkpoint is used
    config = replace(config, attention="auto")
    model = model_from_state_dict(state_dict, config, device, dtype).eval()
    folder = Path(tokenizer_dir) if tokenizer_dir is not None else checkpoint_folder(path)
    tokenizer = Tokenizer(folder) if require_tokenizer or tokenizer_dir is not None or has_tokenizer(folder) else None
    return LoadedModel(model, tokenizer, path)
