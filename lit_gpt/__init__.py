"""lit_gpt: pretraining, conversion and inference for small Llama-family models."""

from typing import Any

__all__ = ["Config", "GPT", "flops_per_token", "num_parameters"]


def __getattr__(name: str) -> Any:
    # Resolved on first use, not at import: `import lit_gpt.cli.*` (every entry point's `--help`) must not
    # wait for torch.
    if name == "Config":
        from lit_gpt.config import Config

        return Config
    if name in ("GPT", "flops_per_token", "num_parameters"):
        from lit_gpt import model

        return getattr(model, name)
    raise AttributeError(f"module 'lit_gpt' has no attribute {name!r}")
