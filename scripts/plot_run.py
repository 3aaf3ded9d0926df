"""Draw a run's loss, validation loss, learning rate, gradient norm and throughput into one PNG.

The command lives in lit_gpt/cli/plot_run.py (installed also as `lit-plot-run`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.plot_run import main

if __name__ == "__main__":
    main()
