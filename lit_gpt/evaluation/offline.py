"""Offline evaluation fails at once when a task's data is not on disk, instead of lm-eval retrying the
Hugging Face hub for about a minute and ending in a long traceback. Kept free of torch."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

# `dataset_path` values that name a file format of the `datasets` library: the data is in local files
LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas", "webdataset", "imagefolder", "audiofolder"}
LOCAL_TASK_HINT = (
    "or run it as a local task: a task YAML with `dataset_path: json` and `data_files` on disk, "
    'passed with --include_path (EVAL.md, "Offline: local tasks")'
)


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub can be used: not when HF_HUB_OFFLINE / HF_DATASETS_OFFLINE says so,
    nor when its host does not answer within `timeout` seconds."""
    if any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    ):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _cache_folders() -> list[Path]:
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    return [
        Path(os.environ.get("HF_DATASETS_CACHE", home / "datasets")).expanduser(),
        Path(os.environ.get("HF_HUB_CACHE", os.environ.get("HUGGINGFACE_HUB_CACHE", home / "hub"))).expanduser(),
    ]


def cached_on_disk(dataset: str) -> bool:
    """Whether a hub data set has a copy in the `datasets` or the hub cache (names compared without case)."""
    wanted = {dataset.replace("/", "___").lower(), "datasets--" + dataset.replace("/", "--").lower()}
    for folder in _cache_folders():
        if folder.is_dir() and any(entry.name.lower() in wanted for entry in folder.iterdir()):
            return True
    return False


def hub_datasets(manager, names: Iterable[str]) -> list[tuple[str, str]]:
    """(task, hub data set) of every task under `names` (tasks, groups, tags) that reads from the hub.
    Tasks lm-eval does not know, or defines in Python only, are left to lm-eval."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()

    def visit(spec) -> None:
        if isinstance(spec, dict):  # an inline task of a group
            if "dataset_path" in spec:
                note(str(spec.get("task", "?")), spec)
            for sub in spec.get("task", []) if isinstance(spec.get("task"), list) else []:
                visit(sub)
            return
        if spec in seen:
            return
        seen.add(spec)
        entry = manager._entry(spec)  # lm-eval's index: the config with its `include`s resolved, no data read
        if entry is None:
            return
        kind = entry.kind.name
        if kind == "TAG":
            for member in sorted(entry.tags):
                visit(member)
        elif kind == "GROUP":
            members = (entry.cfg or {}).get("task", [])
            for member in members if isinstance(members, list) else [members]:
                visit(member)
        elif kind == "TASK" and entry.cfg:
            note(spec, entry.cfg)

    def note(task: str, cfg: dict) -> None:
        path = cfg.get("dataset_path")
        if not isinstance(path, str) or path in LOCAL_BUILDERS or Path(path).expanduser().exists():
            return
        found.append((task, path))

    for name in names:
        visit(name)
    return found


def check_task_data_offline(manager, names: Iterable[str], reachable: bool | None = None) -> None:
    """Raise FileNotFoundError naming the first task whose hub data is neither reachable nor cached."""
    missing = [(task, dataset) for task, dataset in hub_datasets(manager, names) if not cached_on_disk(dataset)]
    if not missing or (hub_reachable() if reachable is None else reachable):
        return
    task, dataset = missing[0]
    more = f" (and {len(missing) - 1} more task(s))" if len(missing) > 1 else ""
    raise FileNotFoundError(
        f"task {task}{more}: its data set {dataset} is not on disk and the Hugging Face hub is not reachable "
        f'(offline); download it where the hub is reachable (python -c "import datasets; '
        f"datasets.load_dataset('{dataset}')\") and copy ~/.cache/huggingface over, {LOCAL_TASK_HINT}"
    )
