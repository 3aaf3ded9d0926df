"""Chat with a fine-tuned model in the terminal: multi-turn, streamed, with an optional system prompt.

    python sft/chat.py                                   # the demo fine-tune (out/demo_sft)
    python sft/chat.py --checkpoint out/sft --system "You are a concise assistant."

Type a message and press Enter; `/reset` starts a new conversation, `/exit` or Ctrl-D quits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from lit_gpt.cli.shipped import DEMO_SFT_RUN
from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def open_chat_session(checkpoint: Path | None, *options, tokenizer_dir: Path | None):
    """`open_session(checkpoint, *options, tokenizer_dir)` with the demo fine-tune (out/demo_sft) as the default
    checkpoint: how the chat commands (`lit-chat`, `lit-ask`) start."""
    from lit_gpt.sft.inference import open_session  # here, not at the top: `--help` must not wait for torch

    check_path("checkpoint", checkpoint, "checkpoint")
    check_path("tokenizer_dir", tokenizer_dir, "folder")
    return open_session(
        checkpoint,
        *options,
        tokenizer_dir,
        default_run=DEMO_SFT_RUN,
        hint=" (run `lit-finetune` or `python sft/finetune.py` first, or pass --checkpoint)",
    )


def chat(
    checkpoint: Path | None = None,
    template: Literal["guanaco", "chatml", "zephyr"] | None = None,
    system: str | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.7,
    top_k: int | None = 50,
    top_p: float | None = None,
    seed: int = 1234,
    device: str = "auto",
    dtype: Literal["bfloat16", "float16", "float32"] | None = None,
    tokenizer_dir: Path | None = None,
) -> None:
    """Interactive chat.

    Args:
        checkpoint: a fine-tuning run folder (its newest checkpoint), a checkpoint folder, a lit
            checkpoint or a Hugging Face folder (default: the demo fine-tune in out/demo_sft).
        template: chat template (default: the one the checkpoint was fine-tuned with).
        system: system prompt.
        max_new_tokens: the longest answer in tokens.
        temperature: 0 for greedy decoding.
        top_k: sample among the k most likely tokens only.
        top_p: sample within the nucleus of this probability mass only.
        seed: seed of the sampling generator.
        device: cpu, cuda, cuda:1, ... or auto (cuda when available).
        dtype: weight type (default: bfloat16 on a GPU that has it, else float32).
        tokenizer_dir: where the tokenizer files are (default: the checkpoint's folder).
    """
    session = open_chat_session(
        checkpoint,
        template,
        system,
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        seed,
        device,
        dtype,
        tokenizer_dir=tokenizer_dir,
    )
    interactive = sys.stdin.isatty()
    print("/reset starts over, /exit or Ctrl-D quits", file=sys.stderr)
    while True:
        try:
            text = input(">> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if text.strip() in ("/exit", "/quit"):
            return
        if text.strip() == "/reset":
            session.reset()
            print("(new conversation)", file=sys.stderr)
            continue
        if not text.strip():
            continue
        dropped = session.dropped_turns
        try:
            for piece in session.reply(text):
                print(piece, end="", flush=True)
        except KeyboardInterrupt:  # Ctrl-C stops the answer, not the chat
            pass
        print(flush=True)
        if session.dropped_turns > dropped:
            print(
                f"(the oldest {session.dropped_turns - dropped} turn(s) no longer fit the context and were left out)",
                file=sys.stderr,
            )


def main(argv=None) -> None:
    """`lit-chat` and `sft/chat.py`."""
    run_cli(chat, argv)


if __name__ == "__main__":
    main()
