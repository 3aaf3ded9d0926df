"""Multi-node launch, tested on one machine: two "nodes" of one process each on localhost with gloo,
started by torchrun (c10d rendezvous) and by `fabric run`, must train exactly like one node of two
processes; and a one-process checkpoint must resume on two processes (1 -> 2 resharding)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest

from lit_gpt.training.checkpointing import list_checkpoints
from training.pretrain_helpers import ENV, ROOT, losses, pretrain_args, run

SCRIPT = str(ROOT / "pretrain" / "tinyllama.py")
FSDP = ("--strategy", "fsdp", "--num_workers", "0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(launcher_for_node, out, data, tokenizer, config, separator=()) -> None:
    """Start node 0 and node 1 at once (each one process) and wait for both."""
    args = pretrain_args(out, data, tokenizer, config, *FSDP, "--num_nodes", "2", devices=1)
    procs = [
        subprocess.Popen(
            [*launcher_for_node(rank), SCRIPT, *separator, *args],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text[-5000:]


@pytest.fixture(scope="module")
def one_node_two_processes(fsdp2_reference):
    return losses(fsdp2_reference)


@pytest.mark.parametrize("launcher", ["torchrun", "fabric"])
def test_two_nodes_on_localhost_train_like_one_node(
    launcher, tmp_path, one_node_two_processes, prepared_sample, sample_tokenizer, model_config
):
    port = free_port()
    bin_dir = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin" / "fabric").exists() else None
    python = [sys.executable]

    def torchrun(rank):
        return [
            *python,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--nproc_per_node",
            "1",
            "--node_rank",
            str(rank),
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            f"127.0.0.1:{port}",
            "--rdzv_id",
            "test",
        ]

    def fabric(rank):
        fabric_cli = str(bin_dir / "fabric") if bin_dir else shutil.which("fabric")
        return [
            fabric_cli,
            "run",
            "--accelerator",
            "cpu",
            "--devices",
            "1",
            "--num-nodes",
            "2",
            "--node-rank",
            str(rank),
            "--main-address",
            "127.0.0.1",
            "--main-port",
            str(port),
        ]

    out = tmp_path / launcher
    # `fabric run` would take the script's own --strategy/--devices flags for itself without the "--"
    two_nodes(
        torchrun if launcher == "torchrun" else fabric,
        out,
        prepared_sample,
        sample_tokenizer,
        model_config,
        separator=("--",) if launcher == "fabric" else (),
    )
    got = losses(out)
    assert sorted(got) == sorted(one_node_two_processes)
    for step, loss in one_node_two_processes.items():  # gloo may sum across "nodes" in another order
        assert got[step] == pytest.approx(loss, rel=1e-6), step


def test_one_process_checkpoint_resumes_on_two(
    tmp_path, reference, stopped_at_step_5, prepared_sample, sample_tokenizer, model_config
):
    out = tmp_path / "single_then_two"
    shutil.copytree(stopped_at_step_5, out)
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [5]
    run(out, prepared_sample, sample_tokenizer, model_config, *FSDP, devices=2)
    expected, got = losses(reference), losses(out)
    assert sorted(got) == sorted(expected)
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=2e-5), step
