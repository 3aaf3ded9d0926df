"""Write the full model state dict at step 0 of a run set up like pretraining's, for the tests.

python tests/training/initial_weights.py OUT_FILE STRATEGY DEVICES [SEED]
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict  # noqa: E402

from lit_gpt.config import Config  # noqa: E402
from lit_gpt.training.args import RunArgs  # noqa: E402
from lit_gpt.training.parallel import unwrap  # noqa: E402
from lit_gpt.training.setup import build_fabric, launch, setup_model  # noqa: E402


def main(out_file: str, strategy: str, devices: str, seed: str = "42") -> None:
    args = RunArgs(
        out_dir=Path(out_file).parent / f"run_{strategy}_{devices}",
        accelerator="cpu",
        devices=int(devices),
        strategy=strategy,
        tensorboard=False,
        seed=int(seed),
    )
    fabric, kind = build_fabric(args)
    launch(fabric)
    fabric.seed_everything(args.seed)
    config = Config(
        name="t",
        n_layer=2,
        n_head=4,
        n_query_groups=2,
        n_embd=64,
        intermediate_size=176,
        vocab_size=1000,
        block_size=32,
        kernels="torch",
    )  # 1000 + padding: shards of unequal size
    model = setup_model(fabric, config, args, sharded=kind == "fsdp")
    state = get_model_state_dict(unwrap(model), options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if fabric.global_rank == 0:
        torch.save({k: v.clone() for k, v in state.items()}, out_file)


if __name__ == "__main__":
    main(*sys.argv[1:])
