"""lit_gpt: pretraining, conversion and inference for small Llama-family models."""

from lit_gpt.config import Config
from lit_gpt.model import GPT, flops_per_token, num_parameters

__all__ = ["Config", "GPT", "flops_per_token", "num_parameters"]
