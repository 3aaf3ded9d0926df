"""Fine-tune a pretrained Llama-family model on chat data (full, LoRA or QLoRA), with Lightning Fabric
(single device, DDP or FSDP2) and the pretraining loop: loss on the assistant's tokens only,
length-bucketed or packed batches, cosine schedule, validation, checkpoints with exact resume.

With no arguments it fine-tunes the demo pretraining run's newest checkpoint (`lit-pretrain` makes it in
out/demo) on the chat sample shipped with the package (lit_gpt/cli/demo_data/chat_sample) with the Zephyr
template, for a couple of minutes on a CPU. For a real model: `lit-finetune --checkpoint checkpoints/tinyllama
--data guanaco.jsonl --template guanaco`; options left unset take the TinyLlama chat recipe
(lit_gpt/cli/recipes/sft_tinyllama.yaml; sft_lora.yaml for LoRA and QLoRA; sft_demo_lora.yaml for LoRA on
the demo). See SFT.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lit_gpt.cli.shipped import DEMO_PRETRAIN_RUN, demo_data, recipe
from lit_gpt.exit_codes import run_training

# the options alone, without torch: `--help` answers at once; the training machinery loads in main()
from lit_gpt.sft.finetune_args import FinetuneArgs, check_finetune_options
from lit_gpt.training.args import parse_args as parse_dataclass_args


def recipes() -> dict[str, dict[str, Any]]:
    return {
        "TinyLlama chat recipe": recipe("sft_tinyllama", FinetuneArgs),
        "demo": recipe("sft_demo", FinetuneArgs),
        "demo LoRA": recipe("sft_demo_lora", FinetuneArgs),
    }


def parse_args(argv=None) -> FinetuneArgs:
    return parse_dataclass_args(FinetuneArgs, __doc__.split("\n\n")[0], argv, recipes=recipes())


def recipe_name(args: FinetuneArgs) -> str:
    if args.checkpoint is None:
        return "sft_demo" if args.method == "full" else "sft_demo_lora"
    return "sft_tinyllama" if args.method == "full" else "sft_lora"


def finetune_with_recipe(args: FinetuneArgs) -> dict[str, Any]:
    """The job as the command runs it: options left unset from the recipe that applies, the shipped chat
    sample without --data, the demo pretraining run's newest checkpoint without --checkpoint."""
    from lit_gpt.sft.finetune import finetune

    check_finetune_options(args)  # before Fabric starts and the checkpoint loads
    if args.data is None:
        args = dataclasses.replace(args, data=demo_data("chat_sample"))
    return finetune(
        args,
        recipe(recipe_name(args), FinetuneArgs),
        default_run=DEMO_PRETRAIN_RUN,
        hint=": no pretrained demo model. Run `lit-pretrain` (or `python pretrain/tinyllama.py`) first "
        "(the demo pretraining), or pass --checkpoint",
    )


def main(argv=None) -> None:
    """Fine-tune, then exit 0 when finished, 75 when stopped by a signal after saving, 2 on a user error
    (lit_gpt/exit_codes.py)."""
    args = parse_args(argv)
    import torch

    torch.set_float32_matmul_precision("high")
    run_training(lambda: finetune_with_recipe(args))


if __name__ == "__main__":
    main()
