from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
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
    # the README's scripts as console commands (lit_gpt/cli); the recipes and demo data ship with them
    package_data={
        "lit_gpt.cli": [
            "recipes/*.yaml",
            "demo_data/*/README.md",
            "demo_data/chat_sample/*.json*",
            "demo_data/sample/slimpajama/*/*/*.jsonl.zst",
            "demo_data/sample/starcoder/*/*.parquet",
        ]
    },
    entry_points={
        "console_scripts": [
            "lit-pretrain = lit_gpt.cli.pretrain:main",
            "lit-finetune = lit_gpt.cli.finetune:main",
            "lit-generate = lit_gpt.cli.generate:main",
            "lit-chat = lit_gpt.cli.chat:main",
            "lit-ask = lit_gpt.cli.simple_inference:main",
            "lit-serve = lit_gpt.cli.serve:main",
            "lit-convert-hf = lit_gpt.cli.convert_hf:main",
            "lit-convert-lit = lit_gpt.cli.convert_lit:main",
            "lit-convert-gguf = lit_gpt.cli.convert_gguf:main",
            "lit-merge-lora = lit_gpt.cli.merge_lora:main",
            "lit-prepare-corpus = lit_gpt.cli.prepare_corpus:main",
            "lit-prepare-slimpajama = lit_gpt.cli.prepare_slimpajama:main",
            "lit-prepare-starcoder = lit_gpt.cli.prepare_starcoder:main",
            "lit-verify-data = lit_gpt.cli.verify_data:main",
            "lit-train-tokenizer = lit_gpt.cli.train_tokenizer:main",
            "lit-evaluate = lit_gpt.cli.evaluate:main",
            "lit-perplexity = lit_gpt.cli.perplexity:main",
            "lit-speculative = lit_gpt.cli.speculative:main",
            "lit-plot-run = lit_gpt.cli.plot_run:main",
            "lit-lm-eval = lit_gpt.evaluation.lm_eval_model:lm_eval_cli",
        ]
    },
    extras_require={
        "test": [
            "ruff==0.14.0",  # pinned: the formatter's output changes between releases
            "pytest>=8",
            "transformers>=4.45",
            "matplotlib>=3.7",
            "lm-eval>=0.4.13",
            "accelerate>=0.26",
            "gguf>=0.19",
            "torchao>=0.14",
            "fastapi>=0.110",
            "uvicorn>=0.29",
            "openai>=1.30",
        ],
        "float8": ["torchao>=0.14"],
        "gguf": ["gguf>=0.19"],
        "serve": ["fastapi>=0.110", "uvicorn>=0.29"],
        "qlora": ["bitsandbytes>=0.43"],
        "eval": ["lm-eval>=0.4.13"],
        "plot": ["matplotlib>=3.7"],
        "wandb": ["wandb>=0.17"],
        "liger": ["liger-kernel>=0.5"],
        "quack": ["quack-kernels>=0.6"],
        # flash-attn-4 (its CuTe DSL kernels; Hopper and newer): `--attention fa4`
        "fa4": ["flash-attn-4>=4.0.0b36"],
    },
)
