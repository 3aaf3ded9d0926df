"""Launch the fine-tuning command (lit_gpt/cli/finetune.py) for the multi-process tests, optionally preempted.

    python tests/sft/run_finetune.py [--sigterm_after_batches K] -- <finetune args>

`--sigterm_after_batches K`: rank 0 sends itself SIGTERM after handing out its K-th training batch
(tests/preemption.py).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from preemption import preempting, split_argv  # noqa: E402

from lit_gpt.cli.finetune import finetune_with_recipe, parse_args  # noqa: E402
from lit_gpt.sft.data import ChatBatches  # noqa: E402


def main() -> None:
    options, theirs = split_argv(sys.argv[1:])
    if "--sigterm_after_batches" in options:
        ChatBatches.__iter__ = preempting(
            ChatBatches.__iter__, options["--sigterm_after_batches"], lambda batches: batches.rank
        )
    finetune_with_recipe(parse_args(theirs))


if __name__ == "__main__":
    main()
