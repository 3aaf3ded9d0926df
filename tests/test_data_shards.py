import struct

import numpy as np
import pytest

from lit_gpt.data.shards import (
    ShardError,
    ShardWriter,
    open_shard,
    read_header,
    token_dtype,
    unreadable_tokens,
    write_shard,
)


def test_header_layout_is_lit_gpt_compatible(tmp_path):
    path = tmp_path / "x_0000000000.bin"
    write_shard(path, np.arange(5, dtype=np.uint16))
    raw = path.read_bytes()
    assert raw[:7] == b"LITPKDS"
    assert struct.unpack_from("<Q", raw, 7)[0] == 1
    assert raw[15] == 8  # uint16
    assert struct.unpack_from("<Q", raw, 16)[0] == 5
    assert np.frombuffer(raw[24:], np.uint16).tolist() == [0, 1, 2, 3, 4]
    write_shard(path, np.arange(3, dtype=np.int32))
    assert path.read_bytes()[15] == 4


def test_token_dtype():
    assert token_dtype(32000) == np.uint16 and token_dtype(65_499) == np.uint16
    assert token_dtype(65_500) == np.int32 and token_dtype(128_256) == np.int32


def test_writer_chunks_without_padding(tmp_path):
    writer = ShardWriter(tmp_path, "train_x", chunk_size=10, dtype=np.uint16, first_counter=300_000, max_files=3)
    data = np.arange(27, dtype=np.uint16)
    for piece in np.split(data, [4, 5, 19]):  # uneven pieces, one crossing a chunk boundary
        writer.add(piece)
    written = writer.close()
    assert written == [("train_x_0000300000.bin", 10), ("train_x_0000300001.bin", 10), ("train_x_0000300002.bin", 7)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name for name, _ in written]  # no temporary files left
    infos = [read_header(tmp_path / name) for name, _ in written]
    assert [i.tokens for i in infos] == [10, 10, 7]
    np.testing.assert_array_equal(np.concatenate([open_shard(i) for i in infos]), data)
    assert (tmp_path / "train_x_0000300002.bin").stat().st_size == 24 + 7 * 2


def test_writer_keeps_back_the_tokens_after_the_last_whole_sample(tmp_path):
    writer = ShardWriter(tmp_path, "x", chunk_size=8, dtype=np.uint16)
    writer.add(np.arange(22, dtype=np.uint16))
    tail = writer.close_keeping_tail(4)
    assert writer.written == [("x_0000000000.bin", 8), ("x_0000000001.bin", 8), ("x_0000000002.bin", 4)]
    assert tail.tolist() == [20, 21] and unreadable_tokens([8, 8, 4], 4) == 0 and unreadable_tokens([8, 6], 4) == 2
    with pytest.raises(ValueError, match="chunk_size 0: a shard holds at least one token"):
        ShardWriter(tmp_path, "x", chunk_size=0, dtype=np.uint16)


def test_writer_refuses_to_leave_its_counter_range(tmp_path):
    writer = ShardWriter(tmp_path, "x", chunk_size=2, dtype=np.uint16, max_files=2)
    writer.add(np.arange(4, dtype=np.uint16))
    with pytest.raises(ValueError, match="more than 2 shards"):
        writer.add(np.arange(2, dtype=np.uint16))


@pytest.fixture
def good_shard(tmp_path):
    path = tmp_path / "data_0000000003.bin"
    write_shard(path, np.arange(1000, dtype=np.uint16))
    return path


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (
            lambda raw: raw[:1024],
            "header says 1000 tokens of uint16 (2000 bytes) but the file holds 1000 bytes after the header; the file "
            "is truncated",
        ),
        (lambda raw: raw + b"\0\0", "the file has trailing bytes"),
        (lambda raw: raw[:10], "shorter than the 24-byte header"),
        (lambda raw: b"NOTPKDS" + raw[7:], "not a packed token shard"),
        (lambda raw: raw[:7] + struct.pack("<Q", 2) + raw[15:], "format version 2"),
        (lambda raw: raw[:15] + bytes([9]) + raw[16:], "unknown dtype code 9"),
    ],
)
def test_reader_names_file_and_problem(good_shard, corrupt, message):
    good_shard.write_bytes(corrupt(good_shard.read_bytes()))
    with pytest.raises(ShardError) as err:
        read_header(good_shard)
    assert str(err.value).startswith(f"{good_shard}: ") and message in str(err.value)
    assert isinstance(err.value, ValueError)
