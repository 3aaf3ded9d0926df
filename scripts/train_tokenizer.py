"""Train a small SentencePiece BPE tokenizer on the sample corpus (see lit_gpt/data/tokenizer_training.py).

    python scripts/train_tokenizer.py --out_dir checkpoints/sample_tokenizer
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from jsonargparse import CLI  # noqa: E402

from lit_gpt.data.tokenizer_training import train_tokenizer  # noqa: E402

if __name__ == "__main__":
    CLI(train_tokenizer, as_positional=False)
