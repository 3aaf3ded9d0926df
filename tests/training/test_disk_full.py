"""A full disk while saving: "no space left on PATH", the partial folder removed, the earlier checkpoints kept."""

from __future__ import annotations

import errno
import os
import warnings

import pytest
from model_helpers import random_model, tiny_config
from torch.distributed.checkpoint import FileSystemWriter

import lit_gpt.training.disk as disk
from lit_gpt.training.checkpointing import list_checkpoints, save_checkpoint
from lit_gpt.training.disk import NoSpaceLeft, estimated_checkpoint_bytes
from lit_gpt.training.trainer import make_optimizer


@pytest.mark.parametrize("failure", ["enospc", "torch_enforce"])
def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch, failure):
    model = random_model(tiny_config())
    optimizer = make_optimizer(model, 1e-3, 0.1, (0.9, 0.95))
    root = tmp_path / "checkpoints"
    warnings.simplefilter("ignore", UserWarning)  # DCP: "assuming the intent is to save in a single process"
    save_checkpoint(root, 4, model, optimizer, {"step": 4}, {})
    real_write = FileSystemWriter.write_data

    def write_until_full(self, plan, planner):
        (self.path / "__0_0.distcp").write_bytes(b"half a shard")
        if failure == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        # what torch's zip writer says when the disk fills; the space left then tells what happened
        monkeypatch.setattr(disk, "free_bytes", lambda path: 0)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(FileSystemWriter, "write_data", write_until_full)
    with pytest.raises(
        NoSpaceLeft,
        match=rf"no space left on {root} while saving step 8.*kept the earlier "
        r"checkpoints \(step-000000004\)",
    ):
        save_checkpoint(root, 8, model, optimizer, {"step": 8}, {})
    assert [s for s, _ in list_checkpoints(root)] == [4]
    assert sorted(p.name for p in root.iterdir()) == ["step-000000004"]  # no partial step-000000008.tmp
    monkeypatch.setattr(FileSystemWriter, "write_data", real_write)


def test_short_space_is_warned_before_saving(tmp_path, monkeypatch):
    model = random_model(tiny_config())
    monkeypatch.setattr(disk, "free_bytes", lambda path: 1000)
    with pytest.warns(UserWarning, match=r"at start: 0.00 GB free on .*a checkpoint takes about"):
        assert disk.warn_if_short_of_space(tmp_path, estimated_checkpoint_bytes(model), "at start")
