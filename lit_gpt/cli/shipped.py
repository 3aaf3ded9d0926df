"""What ships with the commands: the recipes (`recipes/*.yaml`) and the demo data (`demo_data/`), found
beside this file so that they work from an installed package as from a checkout. Kept free of torch."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RECIPES_DIR = HERE / "recipes"
DEMO_DATA_DIR = HERE / "demo_data"
# the runs the demo commands write and read, relative to the working directory
DEMO_PRETRAIN_RUN = Path("out/demo")
DEMO_SFT_RUN = Path("out/demo_sft")


def demo_data(name: str) -> Path:
    """A shipped demo data folder: "sample" (raw pretraining text) or "chat_sample" (conversations)."""
    folder = DEMO_DATA_DIR / name
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: the demo data is missing from the installed package (reinstall it)")
    return folder


def recipe(name: str, options: type | None = None) -> dict[str, Any]:
    """The recipe `recipes/{name}.yaml` as option -> value, over the recipe it names in `based_on`. With
    `options` (an args dataclass), every key must be one of its fields and path fields become Paths."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such recipe")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a recipe is a mapping of option: value")
    base = values.pop("based_on", None)
    values = {**(recipe(base) if base else {}), **values}
    if options is None:
        return values
    types = {f.name: str(f.type) for f in fields(options)}
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ValueError(f"{path}: {', '.join(unknown)} is not an option of {options.__name__}")
    return {k: Path(v) if v is not None and "Path" in types[k] else v for k, v in values.items()}
