from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [
    line.strip() for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="lit_gpt",
    version="0.1.0",
    description="Pretraining, conversion and inference for small Llama-family models on Lightning Fabric",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["lit_gpt", "lit_gpt.*", "speculative_decoding"]),
    python_requires=">=3.10",
    install_requires=requirements,
    entry_points={"console_scripts": ["lit-lm-eval = lit_gpt.evaluation.lm_eval_model:lm_eval_cli"]},
    extras_require={
        "test": ["pytest>=8", "transformers>=4.45", "matplotlib>=3.7", "lm-eval>=0.4.13", "accelerate>=0.26",
                 "gguf>=0.19", "torchao>=0.14", "fastapi>=0.110", "uvicorn>=0.29", "openai>=1.30"],
        "float8": ["torchao>=0.14"],
        "gguf": ["gguf>=0.19"],
        "serve": ["fastapi>=0.110", "uvicorn>=0.29"],
        "qlora": ["bitsandbytes>=0.43"],
        "eval": ["lm-eval>=0.4.13"],
        "plot": ["matplotlib>=3.7"],
        "wandb": ["wandb>=0.17"],
        "liger": ["liger-kernel>=0.5"],
    },
)
