"""Ask a fine-tuned model one question and print the answer as it streams.

python sft/simple_inference.py --prompt "How do I reverse a list in Python?"
python sft/simple_inference.py --checkpoint out/sft --system "Answer briefly." --prompt "What is 12 * 7?"
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lit_gpt.cli.chat import open_chat_session
from lit_gpt.exit_codes import run_cli


def ask(
    prompt: str,
    checkpoint: Path | None = None,
    template: Literal["guanaco", "chatml", "zephyr"] | None = None,
    system: str | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 1234,
    device: str = "auto",
    dtype: Literal["bfloat16", "float16", "float32"] | None = None,
    tokenizer_dir: Path | None = None,
) -> None:
    """One question, one answer.

    Args:
        prompt: the user's message.
        checkpoint: a fine-tuning run folder (its newest checkpoint), a checkpoint folder, a lit
            checkpoint or a Hugging Face folder (default: the demo fine-tune in out/demo_sft).
        template: chat template (default: the one the checkpoint was fine-tuned with).
        system: system prompt.
        max_new_tokens: the longest answer in tokens.
        temperature: 0 (the default) for greedy decoding.
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
    for piece in session.reply(prompt):
        print(piece, end="", flush=True)
    print(flush=True)


def main(argv=None) -> None:
    """`lit-ask` and `sft/simple_inference.py`."""
    run_cli(ask, argv)


if __name__ == "__main__":
    main()
