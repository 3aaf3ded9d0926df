"""Full-parameter fine-tuning of a pretrained Llama-family model on chat data, with Lightning Fabric
(single device, DDP or FSDP2) and the pretraining loop: loss on the assistant's tokens only,
length-bucketed batches, cosine schedule, validation, checkpoints with exact resume.

With no arguments it fine-tunes the demo pretraining run's newest checkpoint (`python
pretrain/tinyllama.py` makes it in out/demo) on data/chat_sample with the Zephyr template, for a couple
of minutes on a CPU. For a real model: `python sft/finetune.py --checkpoint checkpoints/tinyllama
--data guanaco.jsonl --template guanaco`. See SFT.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lit_gpt.cli import run_training  # noqa: E402
from lit_gpt.training.args import parse_args as parse_dataclass_args  # noqa: E402
# the options alone, without torch: `--help` answers at once; the training machinery loads in main()
from lit_gpt.sft.finetune_args import RECIPES, FinetuneArgs  # noqa: E402


def parse_args(argv=None) -> FinetuneArgs:
    return parse_dataclass_args(FinetuneArgs, __doc__.split("\n\n")[0], argv,
                                recipes={"TinyLlama chat recipe": RECIPES["tinyllama"], "demo": RECIPES["demo"]})


def main(argv=None) -> None:
    """Fine-tune, then exit 0 when finished, 75 when stopped by a signal after saving, 2 on a user error
    (lit_gpt/cli.py)."""
    args = parse_args(argv)
    import torch

    from lit_gpt.sft.finetune import finetune

    torch.set_float32_matmul_precision("high")
    run_training(lambda: finetune(args))


if __name__ == "__main__":
    main()
