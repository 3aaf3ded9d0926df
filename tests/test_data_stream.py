import json
import subprocess
import sys
from itertools import islice

import pytest
import torch
from data_helpers import ROOT, block_ids, write_block_shards

from lit_gpt.data.stream import build_train_loader, build_val_loader

SAMPLE_LEN = 8  # block_size 7
BLOCKS_A = [5, 17, 0, 23, 9, 30, 12, 1, 8, 20, 14]  # ids 100 * file + block
BLOCKS_B = [40, 7, 25, 3, 11]  # ids 10000 + 100 * file + block
SOURCES = {"train_a": 0.693584, "train_b": 0.306416}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    write_block_shards(folder, "train_a", BLOCKS_A, SAMPLE_LEN)
    write_block_shards(folder, "train_b", BLOCKS_B, SAMPLE_LEN, base=10000)
    return folder


def all_blocks(blocks, base=0):
    return sorted(base + 100 * f + b for f, n in enumerate(blocks) for b in range(n))


def loader(data_dir, batch, rank=0, world=1, workers=0, seed=7, sources=SOURCES):
    return build_train_loader(
        data_dir,
        sources,
        block_size=SAMPLE_LEN - 1,
        micro_batch_size=batch,
        seed=seed,
        rank=rank,
        world_size=world,
        num_workers=workers,
        shuffle_buffer_files=3,
    )


def global_sequence(loaders, batches):
    """Read `batches` local batches from each rank's loader and interleave them into global order."""
    per_rank = [[i for b in islice(L, batches) for i in block_ids(b)] for L in loaders]
    return [per_rank[g % len(loaders)][g // len(loaders)] for g in range(len(per_rank[0]) * len(loaders))]


def test_batches_are_int64_samples_of_block_size_plus_one(data_dir):
    batch = next(iter(loader(data_dir, batch=3)))
    assert batch.dtype == torch.int64 and batch.shape == (3, SAMPLE_LEN)


def test_two_ranks_two_workers_read_every_block_once_per_epoch(data_dir):
    ranks = [loader(data_dir, batch=4, rank=r, world=2, workers=2) for r in range(2)]
    seq = global_sequence(ranks, batches=80)
    a, b = [i for i in seq if i < 10000], [i for i in seq if i >= 10000]
    for ids, blocks, base in ((a, BLOCKS_A, 0), (b, BLOCKS_B, 10000)):
        n = sum(blocks)
        assert len(ids) >= 2 * n
        epoch1, epoch2 = ids[:n], ids[n : 2 * n]
        assert sorted(epoch1) == all_blocks(blocks, base) == sorted(epoch2)  # every block once per epoch
        assert epoch1 != epoch2  # and a new order each epoch
    assert 65535 not in seq  # file tails shorter than a sample are never read
    # The global order depends neither on the world size nor on the worker count.
    assert seq == global_sequence([loader(data_dir, batch=8)], batches=80)


def test_shuffle_goes_buffer_by_buffer(data_dir):
    L = loader(data_dir, batch=10, sources={"train_a": 1.0})
    seq = [i for b in islice(L, 14) for i in block_ids(b)][: sum(BLOCKS_A)]
    order = L.dataset.sources[0]._epoch(0)[0]  # the epoch's file order (seeded by seed and epoch only)
    assert sorted(order) == list(range(len(BLOCKS_A))) and list(order) != sorted(order)
    pos = 0
    for k in range(0, len(order), 3):  # buffers of 3 files: their blocks, shuffled together, one buffer after the other
        n = sum(BLOCKS_A[f] for f in order[k : k + 3])
        assert sorted(seq[pos : pos + n]) == sorted(100 * f + b for f in order[k : k + 3] for b in range(BLOCKS_A[f]))
        pos += n


def test_mix_ratio_matches_weights(data_dir):
    L = loader(data_dir, batch=100)
    seq = [i for b in islice(L, 100) for i in block_ids(b)]
    share = sum(i < 10000 for i in seq) / len(seq)
    assert abs(share - SOURCES["train_a"]) < 0.02
    assert L.state_dict()["source_counts"] == {
        "train_a": sum(i < 10000 for i in seq),
        "train_b": sum(i >= 10000 for i in seq),
    }


RESUME = """
import json, sys
from itertools import islice
sys.path[:0] = [{root!r}, {tests!r}]
from data_helpers import block_ids
from lit_gpt.data.stream import build_train_loader
args = json.loads(sys.argv[1])
L = build_train_loader(args["dir"], args["sources"], block_size=7, micro_batch_size=args["batch"], seed=7, rank=0,
                       world_size=1, num_workers=args["workers"], shuffle_buffer_files=3)
L.load_state_dict(json.load(open(args["state"])))
print(json.dumps([i for b in islice(L, args["batches"]) for i in block_ids(b)]))
"""


def resume_in_fresh_process(data_dir, state, tmp_path, batch, workers, samples):
    (tmp_path / "state.json").write_text(json.dumps(state))
    args = {
        "dir": str(data_dir),
        "sources": SOURCES,
        "batch": batch,
        "workers": workers,
        "state": str(tmp_path / "state.json"),
        "batches": samples // batch,
    }
    script = RESUME.format(root=str(ROOT), tests=str(ROOT / "tests"))
    out = subprocess.run([sys.executable, "-c", script, json.dumps(args)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def uninterrupted(data_dir):
    return global_sequence([loader(data_dir, batch=10, workers=2)], batches=137)


def test_resume_in_fresh_process_continues_exactly(data_dir, uninterrupted, tmp_path):
    L = loader(data_dir, batch=10, workers=2)
    first = [i for b in islice(L, 37) for i in block_ids(b)]
    assert first == uninterrupted[:370]
    state = L.state_dict()
    assert state["g"] == 370
    assert (
        resume_in_fresh_process(data_dir, state, tmp_path, batch=10, workers=2, samples=1000) == uninterrupted[370:1370]
    )


def test_resume_from_two_ranks_on_one_rank_at_equal_samples_per_micro_step(data_dir, uninterrupted, tmp_path):
    ranks = [loader(data_dir, batch=5, rank=r, world=2, workers=2) for r in range(2)]
    assert global_sequence(ranks, batches=37) == uninterrupted[:370]
    states = [L.state_dict() for L in ranks]
    assert states[0] == states[1] and states[0]["world_size"] == 2
    assert (
        resume_in_fresh_process(data_dir, states[0], tmp_path, batch=10, workers=0, samples=1000)
        == uninterrupted[370:1370]
    )


def test_a_new_iteration_starts_after_the_last_batch_handed_out(data_dir, uninterrupted):
    L = loader(data_dir, batch=10, workers=2)
    first = [i for b in islice(L, 5) for i in block_ids(b)]
    second = [i for b in islice(L, 5) for i in block_ids(b)]
    assert first + second == uninterrupted[:100]


def test_load_state_errors(data_dir, tmp_path):
    L = loader(data_dir, batch=10)
    list(islice(L, 3))
    state = L.state_dict()
    with pytest.raises(
        ValueError, match=r"not a multiple of the samples per micro step \(micro batch x world size\) 4 x 2 = 8"
    ):
        loader(data_dir, batch=4, world=2).load_state_dict(state)
    with pytest.raises(ValueError, match="seed was 7 in the checkpoint and is 8 now"):
        loader(data_dir, batch=10, seed=8).load_state_dict(state)
    write_block_shards(tmp_path, "train_a", BLOCKS_A + [4], SAMPLE_LEN)
    write_block_shards(tmp_path, "train_b", BLOCKS_B, SAMPLE_LEN, base=10000)
    with pytest.raises(ValueError, match="the sources changed") as err:
        loader(tmp_path, batch=10).load_state_dict(state)
    assert "'train_a' (11 files, 139 blocks) is now 'train_a' (12 files, 143 blocks)" in str(err.value)


def test_missing_data_errors(data_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nowhere'}: data folder not found"):
        loader(tmp_path / "nowhere", batch=2)
    with pytest.raises(FileNotFoundError, match="no shard files train_c_\\*.bin for source 'train_c'"):
        loader(data_dir, batch=2, sources={"train_a": 0.5, "train_c": 0.5})
    write_block_shards(tmp_path, "tiny", [0, 0], SAMPLE_LEN)
    with pytest.raises(
        ValueError, match="tiny_\\*.bin: 2 files, 6 tokens, but no file holds one full sample of block_size \\+ 1 = 8"
    ):
        loader(tmp_path, batch=2, sources={"tiny": 1.0})


def test_val_loader_is_fixed_sequential_and_split_across_ranks(data_dir):
    vals = [
        build_val_loader(data_dir, "train_b", block_size=7, micro_batch_size=4, rank=r, world_size=2, num_batches=5)
        for r in range(2)
    ]
    seqs = [[i for b in v for i in block_ids(b)] for v in vals]
    assert len(vals[0]) == 5 and seqs[0] == [i for b in vals[0] for i in block_ids(b)]  # the same batches every time
    interleaved = [seqs[g % 2][g // 2] for g in range(40)]
    assert interleaved == all_blocks(BLOCKS_B, 10000)[:40]  # sorted files, blocks in order, disjoint ranks
    with pytest.warns(UserWarning, match="only 86 validation samples, so 10 batches per rank instead of 50"):
        short = build_val_loader(
            data_dir, "train_b", block_size=7, micro_batch_size=4, rank=1, world_size=2, num_batches=50
        )
    assert len(short) == 10 == len(list(short))


def source_order(data_dir, prefix, n):
    """The first `n` samples of one source in its own order (which no mix changes)."""
    return [i for b in islice(loader(data_dir, batch=n, sources={prefix: 1.0}), 1) for i in block_ids(b)]


def test_a_mix_change_continues_every_source_where_it_stopped(data_dir):
    """The documented meaning of --allow_mix_change: from the change on the mixture draws with the new
    weights; each source goes on with the samples it had not delivered yet (none twice before its epoch
    ends), a source left out keeps its place for a later return, a new one starts at its beginning."""
    first = loader(data_dir, batch=10)
    before = [i for b in islice(first, 5) for i in block_ids(b)]
    with pytest.raises(ValueError, match="allow_mix_change"):
        loader(data_dir, batch=10, sources={"train_a": 0.2, "train_b": 0.8}).load_state_dict(first.state_dict())
    with pytest.raises(ValueError, match="allow_mix_change"):  # the same weights in another order are another mix
        loader(data_dir, batch=10, sources={"train_b": 0.306416, "train_a": 0.693584}).load_state_dict(
            first.state_dict()
        )

    changed = loader(data_dir, batch=10, sources={"train_a": 0.2, "train_b": 0.8})
    changed.load_state_dict(first.state_dict(), allow_mix_change=True)
    after = [i for b in islice(changed, 12) for i in block_ids(b)]  # 120 samples: past train_b's 86-block epoch
    from_b = [i for i in after if i >= 10000]
    assert len(from_b) > 86 - sum(i >= 10000 for i in before) and len(from_b) / len(after) > 0.65  # new weights
    seen = before + after
    for prefix, of_source in (("train_a", lambda i: i < 10000), ("train_b", lambda i: i >= 10000)):
        delivered = [i for i in seen if of_source(i)]
        assert delivered == source_order(data_dir, prefix, len(delivered)), prefix  # continued, in order
    b_epoch = source_order(data_dir, "train_b", 86)
    assert sorted(b_epoch) == all_blocks(BLOCKS_B, 10000)  # so nothing repeats before the epoch ends

    # train_a left out, then back: it resumes where it stopped
    only_b = loader(data_dir, batch=10, sources={"train_b": 1.0})
    only_b.load_state_dict(changed.state_dict(), allow_mix_change=True)
    a_count = changed.state_dict()["source_counts"]["train_a"]
    assert only_b.state_dict()["retired_sources"]["train_a"]["count"] == a_count
    list(islice(only_b, 2))
    back = loader(data_dir, batch=10)
    back.load_state_dict(only_b.state_dict(), allow_mix_change=True)
    later_a = [i for b in islice(back, 2) for i in block_ids(b) if i < 10000]
    assert later_a == source_order(data_dir, "train_a", a_count + len(later_a))[a_count:]
