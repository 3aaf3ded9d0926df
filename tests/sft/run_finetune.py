"""Launch sft/finetune.py for the multi-process tests, optionally preempted.

    python tests/sft/run_finetune.py [--sigterm_after_batches K] -- <finetune args>

`--sigterm_after_batches K`: rank 0 sends itself SIGTERM after handing out its K-th training batch; the
real signal handler must then save and stop. Fabric's launcher re-runs this same command line for the
other ranks, so every rank runs the same code.
"""

import importlib.util
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lit_gpt.sft.data import ChatBatches  # noqa: E402
from lit_gpt.sft.finetune import finetune  # noqa: E402


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--")
    ours, theirs = argv[:split], argv[split + 1:]
    options = dict(zip(ours[::2], map(int, ours[1::2])))
    if "--sigterm_after_batches" in options:
        after, real_iter = options["--sigterm_after_batches"], ChatBatches.__iter__

        def preempted(self):
            for n, batch in enumerate(real_iter(self), start=1):
                yield batch
                if n == after and self.rank == 0:
                    os.kill(os.getpid(), signal.SIGTERM)

        ChatBatches.__iter__ = preempted
    spec = importlib.util.spec_from_file_location("sft_finetune_script", ROOT / "sft" / "finetune.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    finetune(script.parse_args(theirs))


if __name__ == "__main__":
    main()
