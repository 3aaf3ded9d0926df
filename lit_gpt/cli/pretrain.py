"""Pretrain a Llama-family model on packed shards with Lightning Fabric (single device, DDP or FSDP2).

With no arguments it runs the embedded demo: it trains a tokenizer on the sample corpus shipped with the
package (lit_gpt/cli/demo_data/sample), prepares shards, and trains a ~5M-parameter model for a few
minutes on whatever device is there. Pointed at prepared SlimPajama and Starcoderdata shards
(`--data_dir`), every option left unset takes the TinyLlama recipe instead (lit_gpt/cli/recipes/
tinyllama.yaml: tiny_LLaMA_1b, global batch 1024 x 2048, lr 4e-4 -> 4e-5, 2000 warmup steps, 1,430,512
steps, 7:3 mix); with `--recipe small`, the demo's model and settings on your own prepared data
(recipes/small.yaml). See PRETRAIN.md.

Launch: `lit-pretrain --devices 8` (or `python pretrain/tinyllama.py --devices 8`), `fabric run --devices 8
pretrain/tinyllama.py ...`, or `torchrun --nproc_per_node 8 pretrain/tinyllama.py ...` (multi-node: PRETRAIN.md).
"""

from __future__ import annotations

from typing import Any

from lit_gpt.cli.shipped import demo_data, recipe
from lit_gpt.exit_codes import run_training
from lit_gpt.training.args import parse_args as parse_dataclass_args

# the options alone, without torch: `--help` answers at once; the training machinery loads in main()
from lit_gpt.training.pretrain_args import PretrainArgs


def recipes() -> dict[str, dict[str, Any]]:
    return {
        "TinyLlama recipe": recipe("tinyllama", PretrainArgs),
        "demo": recipe("demo", PretrainArgs),
        "small": recipe("small", PretrainArgs),
    }


def parse_args(argv=None) -> PretrainArgs:
    return parse_dataclass_args(PretrainArgs, __doc__.split("\n\n")[0], argv, recipes=recipes())


def recipe_micro_batch(args: PretrainArgs, model_name: str) -> int | None:
    """The TinyLlama recipe's micro batch on the card in hand: 16 sequences of tiny_LLaMA_1b on GPUs of
    75 GiB or more (measured faster than 8 on an H100 80GB: benchmarks/RESULTS.md), else the recipe's 8
    (what TinyLlama ran on 40 GB A100s). None when the recipe's value applies."""
    import torch

    model = args.model_name or model_name
    if args.data_dir is None or model != "tiny_LLaMA_1b" or args.model_config or args.initial_checkpoint:
        return None
    if args.accelerator == "cpu" or not torch.cuda.is_available():
        return None
    if torch.cuda.get_device_properties(0).total_memory >= 75 * 2**30:
        return 16
    return None


def pretrain_with_recipe(args: PretrainArgs) -> dict[str, Any]:
    """The job as the command runs it: options left unset from the recipe that applies (--recipe; else the
    demo without --data_dir, TinyLlama with it), the demo on the shipped sample corpus."""
    from lit_gpt.training.pretraining import pretrain

    demo = args.data_dir is None
    if args.recipe is not None and demo and args.anneal_from is None:
        raise ValueError(
            f"--recipe {args.recipe} trains on prepared shards: give --data_dir (without it and --recipe, "
            f"lit-pretrain runs the demo on the sample corpus it ships)"
        )
    values = recipe(args.recipe or ("demo" if demo else "tinyllama"), PretrainArgs)
    if args.micro_batch_size is None and (micro := recipe_micro_batch(args, values["model_name"])):
        values["micro_batch_size"] = micro
    return pretrain(args, values, sample_dir=demo_data("sample") if demo else None)


def main(argv=None) -> None:
    """Train, then exit 0 when finished, 75 when stopped by a signal after saving, 2 on a user error
    (lit_gpt/exit_codes.py)."""
    args = parse_args(argv)
    import torch

    torch.set_float32_matmul_precision("high")
    run_training(lambda: pretrain_with_recipe(args))


if __name__ == "__main__":
    main()
