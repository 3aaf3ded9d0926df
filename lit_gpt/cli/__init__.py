"""The command layer: one module per job (`lit_gpt.cli.pretrain`, `lit_gpt.cli.generate`, ...), each with a
`main(argv=None)` behind a console command (`lit-pretrain`, `lit-generate`, ...; setup.py) and behind the thin
script the README names (`pretrain/tinyllama.py`, `scripts/generate.py`, ...). The commands parse options,
resolve recipes (`recipes/*.yaml`) and the demo data that ships here (`demo_data/`), and call the library;
the library never imports this package.

How the commands end (exit codes, user errors as one line) lives in lit_gpt.exit_codes, re-exported here.
Kept free of heavy imports: `--help` must not wait for torch.
"""

from lit_gpt.exit_codes import (  # noqa: F401  (re-exported)
    FINISHED,
    INTERRUPTED,
    STOPPED_AND_SAVED,
    USER_ERROR,
    USER_ERRORS,
    run_cli,
    run_command,
    run_training,
)
