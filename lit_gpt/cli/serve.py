"""Serve a model over an OpenAI-compatible HTTP API (and a chat page at /), with FastAPI + uvicorn.

    python scripts/serve.py --checkpoint out/demo_sft                       # newest checkpoint of a run
    python scripts/serve.py --checkpoint hf/tinyllama_chat --port 8000 --max_batch 16

Then any OpenAI client: `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")`. See SFT.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def serve_model(
    checkpoint: Path,
    name: str | None = None,
    template: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 8,
    compile: Literal["auto", "on", "off"] = "auto",
    device: str = "auto",
    dtype: str | None = None,
    tokenizer_dir: Path | None = None,
    seed: int = 1234,
) -> None:
    """Serve until interrupted.

    Args:
        checkpoint: a lit checkpoint (folder, .pth, pretraining or fine-tuning checkpoint, run folder: its
            newest) or a Hugging Face folder. A LoRA checkpoint: merge it first (scripts/merge_lora.py).
        name: the model id clients pass as `model` (default: the config's name).
        template: chat template (guanaco, chatml, zephyr) when the checkpoint does not carry one.
        host: address to listen on (127.0.0.1: this machine only).
        port: TCP port.
        max_batch: most requests decoded together.
        compile: compile the decoding step (auto: on a GPU).
        device: "auto", "cpu", "cuda"...
        dtype: weight type (default: bfloat16 on GPUs with it, else float32).
        tokenizer_dir: tokenizer folder (default: the checkpoint's).
        seed: sampling seed.
    """
    from lit_gpt.serve import serve  # here, not at the top: `--help` must not wait for torch

    check_path("checkpoint", checkpoint, "checkpoint")
    check_path("tokenizer_dir", tokenizer_dir, "folder")
    serve(
        checkpoint,
        name=name,
        template=template,
        host=host,
        port=port,
        max_batch=max_batch,
        compile=compile,
        device=device,
        dtype=dtype,
        tokenizer_dir=tokenizer_dir,
        seed=seed,
    )


def main(argv=None) -> None:
    """`lit-serve` and `scripts/serve.py`."""
    run_cli(serve_model, argv)


if __name__ == "__main__":
    main()
