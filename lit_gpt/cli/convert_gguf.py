"""Write a checkpoint as a GGUF file for llama.cpp (architecture `llama`), tokenizer included.

    python scripts/convert_to_gguf.py --checkpoint out/TinyLlama --output tinyllama-f16.gguf
    python scripts/convert_to_gguf.py --checkpoint HF_FOLDER --output model-q8_0.gguf --outtype q8_0
    python scripts/convert_to_gguf.py --checkpoint out/TinyLlama --output tinyllama-q4_k_m.gguf --outtype q4_k_m

What the file holds (tensor layout, tokenizer, which tensor takes which type): lit_gpt/gguf_export.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path

OutType = Literal[
    "f32", "f16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"
]  # the keys of lit_gpt.gguf_quants.FILE_TYPES


def convert_to_gguf(
    checkpoint: Path,
    output: Path,
    outtype: OutType = "f16",
    tokenizer_dir: Path | None = None,
    name: str | None = None,
) -> Path:
    """Write `output` (a .gguf file) for llama.cpp.

    Args:
        checkpoint: a lit checkpoint (folder, .pth or pretraining DCP folder), a run folder (its newest whole
            checkpoint) or a Hugging Face Llama folder.
        output: the GGUF file to write.
        outtype: f32, f16, q8_0, q4_0 (every matrix), or the K-quant mixes q4_k_m, q5_k_m, q6_k (see
            "Types" in lit_gpt/gguf_export.py; norm weights stay f32).
        tokenizer_dir: the folder with tokenizer.model (SentencePiece) or tokenizer.json (byte-level BPE)
            (default: the checkpoint's folder). The chat template embedded is the one the checkpoint was
            fine-tuned with, else the chat_template of this folder's tokenizer_config.json.
        name: general.name in the file (default: the config's name or the checkpoint's folder name).
    """
    from lit_gpt.gguf_export import write_gguf  # here, not at the top: `--help` must not wait for torch

    check_path("checkpoint", checkpoint, "checkpoint")
    check_path("output", output, "output file")
    check_path("tokenizer_dir", tokenizer_dir, "folder")
    return write_gguf(checkpoint, output, outtype, tokenizer_dir, name)


def main(argv=None) -> None:
    """`lit-convert-gguf` and `scripts/convert_to_gguf.py`."""
    run_cli(convert_to_gguf, argv)


if __name__ == "__main__":
    main()
