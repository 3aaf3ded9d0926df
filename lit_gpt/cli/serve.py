"""Serve a model over an OpenAI-compatible HTTP API (and a chat page at /), with FastAPI + uvicorn.

    lit-serve --checkpoint out/demo_sft                                 # newest checkpoint of a run
    lit-serve --checkpoint hf/tinyllama_chat --port 8000 --max_batch 16
    LIT_GPT_API_KEY=... lit-serve --checkpoint out/demo_sft --host 0.0.0.0   # reachable from other machines

Then any OpenAI client: `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")` (the key the
server was given, when it was given one). See SFT.md, "Serving".
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lit_gpt.exit_codes import run_cli

DEFAULT_MAX_BODY_BYTES = 1 << 20  # lit_gpt.serve's; repeated here so that `--help` does not wait for torch


def serve_model(
    checkpoint: Path,
    name: str | None = None,
    template: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    max_batch: int = 8,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    compile: Literal["auto", "on", "off"] = "auto",
    device: str = "auto",
    dtype: Literal["bfloat16", "float16", "float32"] | None = None,
    tokenizer_dir: Path | None = None,
    seed: int = 1234,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API, and a chat page at /, until interrupted (Ctrl-C).

    Routes: GET /v1/models, POST /v1/completions and /v1/chat/completions ("stream": true for server-sent
    events). A bad option stops the command before the model loads, with one line and exit code 2.

    Args:
        checkpoint: what to serve: a lit checkpoint folder or .pth file, a pretraining or fine-tuning
            checkpoint folder, a run folder (its newest whole checkpoint), or a Hugging Face folder. A LoRA
            checkpoint: merge it first (lit-merge-lora).
        name: the model id that /v1/models lists and that clients pass as "model" (default: the config's
            name).
        template: chat template (guanaco, chatml, zephyr) for /v1/chat/completions when the checkpoint does
            not record the one it was fine-tuned with; without either, only /v1/completions answers.
        host: address to listen on. 127.0.0.1 (the default) is this machine only; 0.0.0.0 is every
            interface, which prints a warning unless an API key is set.
        port: TCP port, 1 to 65535. A port in use is reported before the model loads.
        api_key: a key every request must carry as "Authorization: Bearer KEY" (what OpenAI clients send as
            their api_key); the chat page at / asks for it. Default: the LIT_GPT_API_KEY environment
            variable, which keeps the key out of the process list; unset: no key is asked for.
        max_batch: the most requests decoded together (at least 1); more wait for the next batch. Each row
            holds a KV cache of the model's whole context.
        max_body_bytes: the largest request body accepted, in bytes (at least 1024); a larger one gets 413
            before it is read. The default, 1 MiB, holds more text than any context served here.
        compile: compile the decoding step with torch.compile and replay it as a CUDA graph: on, off, or
            auto (on a GPU). The first batch then waits for the compilation (up to a minute).
        device: auto (a GPU when there is one), cpu, cuda, cuda:1, ...
        dtype: weight type (default: bfloat16 on a GPU that has it, else float32).
        tokenizer_dir: the folder with the tokenizer files (default: the checkpoint's folder).
        seed: seed of the sampling generator shared by all requests (0 to 2**64-1); requests with
            "temperature": 0 decode greedily and do not depend on it.
    """
    from lit_gpt.serve import serve  # here, not at the top: `--help` must not wait for torch

    serve(
        checkpoint,
        name=name,
        template=template,
        host=host,
        port=port,
        api_key=api_key,
        max_batch=max_batch,
        max_body_bytes=max_body_bytes,
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
