"""Pretrain a Llama-family model on packed shards with Lightning Fabric (single device, DDP or FSDP2).

With no arguments it runs the embedded demo: it trains a tokenizer on the sample corpus in
data/sample, prepares shards, and trains a ~5M-parameter model for a few minutes on whatever device
is there. Pointed at prepared SlimPajama and Starcoderdata shards (`--data_dir`), every option left
unset takes the TinyLlama recipe instead (tiny_LLaMA_1b, global batch 1024 x 2048, lr 4e-4 -> 4e-5,
2000 warmup steps, 1,430,512 steps, 7:3 mix). See PRETRAIN.md.

Launch: `python pretrain/tinyllama.py --devices 8`, `fabric run --devices 8 pretrain/tinyllama.py ...`,
or `torchrun --nproc_per_node 8 pretrain/tinyllama.py ...` (multi-node: PRETRAIN.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lit_gpt.cli import run_training  # noqa: E402
from lit_gpt.training.args import parse_args as parse_dataclass_args  # noqa: E402
# the options alone, without torch: `--help` answers at once; the training machinery loads in main()
from lit_gpt.training.pretrain_args import RECIPES, PretrainArgs  # noqa: E402


def parse_args(argv=None) -> PretrainArgs:
    return parse_dataclass_args(PretrainArgs, __doc__.split("\n\n")[0], argv,
                                recipes={"TinyLlama recipe": RECIPES["tinyllama"], "demo": RECIPES["demo"]})


def main(argv=None) -> None:
    """Train, then exit 0 when finished, 75 when stopped by a signal after saving, 2 on a user error
    (lit_gpt/cli.py)."""
    args = parse_args(argv)
    import torch

    from lit_gpt.training.pretraining import pretrain

    torch.set_float32_matmul_precision("high")
    run_training(lambda: pretrain(args))


if __name__ == "__main__":
    main()
