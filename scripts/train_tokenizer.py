"""Train a small SentencePiece BPE tokenizer on the sample corpus (see lit_gpt/data/tokenizer_training.py).

The command lives in lit_gpt/cli/train_tokenizer.py (installed also as `lit-train-tokenizer`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.train_tokenizer import main

if __name__ == "__main__":
    main()
