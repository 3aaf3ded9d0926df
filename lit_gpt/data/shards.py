"""Packed token shards in the lit-gpt binary format (byte compatible, so existing shards load).

Layout: offset 0 the 7 bytes `LITPKDS`; 7: uint64 LE version (1); 15: uint8 dtype code; 16: uint64 LE
number of tokens in the file; 24: the tokens. lit-gpt wrote the file's capacity there and padded the
last file; here a final, shorter file states its real token count instead, so that
`file size == 24 + tokens * itemsize` holds for every file and is what the reader checks.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"LITPKDS"
VERSION = 1
HEADER = struct.Struct("<7sQBQ")  # magic, version, dtype code, token count: 24 bytes
DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float32, 7: np.float64, 8: np.uint16}
CODES = {np.dtype(t): code for code, t in DTYPES.items()}


class ShardError(ValueError):
    """A shard file that is not a valid packed shard; the message names the file and the problem."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (with lit-gpt's margin), else int32."""
    return np.dtype(np.uint16 if vocab_size < 65_500 else np.int32)


def shard_name(prefix: str, counter: int) -> str:
    return f"{prefix}_{counter:010d}.bin"


_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_prefix(prefix: str, option: str = "--prefix") -> None:
    """Raise ValueError unless `prefix` is a plain name that shard files can start with: no path separator
    (it would write outside the destination folder) and no `_<digits>` ending (TinyLlama's names
    `{prefix}_{process}_{counter}.bin` would make one source's files look like another's)."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix) or re.search(r"_\d+$", prefix):
        raise ValueError(
            f"{option} {prefix!r}: use letters, digits, '.', '-', '_' (a name, no path separators), starting with "
            "a letter or digit and not ending in _<digits> (shard names end so)"
        )


def unreadable_tokens(shard_tokens: Iterable[int], sample_len: int) -> int:
    """The tokens a loader that cuts whole samples of `sample_len` tokens from each shard can never read: the
    remainder of every shard."""
    return sum(int(tokens) % sample_len for tokens in shard_tokens)


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    dtype: np.dtype
    tokens: int


def read_header(path: str | Path) -> ShardInfo:
    """Read and validate a shard's header against the file size; raises ShardError."""
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read(HEADER.size)
        size = os.fstat(fh.fileno()).st_size
    if len(raw) < HEADER.size:
        raise ShardError(f"{path}: {len(raw)} bytes, shorter than the {HEADER.size}-byte header; the file is truncated")
    magic, version, code, tokens = HEADER.unpack(raw)
    if magic != MAGIC:
        raise ShardError(f"{path}: starts with {magic!r}, not {MAGIC!r}; not a packed token shard")
    if version != VERSION:
        raise ShardError(f"{path}: format version {version}, only version {VERSION} is supported")
    if code not in DTYPES:
        raise ShardError(f"{path}: unknown dtype code {code} (known: {sorted(DTYPES)})")
    dtype = np.dtype(DTYPES[code])
    expected = tokens * dtype.itemsize
    if size - HEADER.size != expected:
        problem = "the file is truncated" if size - HEADER.size < expected else "the file has trailing bytes"
        raise ShardError(
            f"{path}: header says {tokens} tokens of {dtype.name} ({expected} bytes) but the file holds "
            f"{size - HEADER.size} bytes after the header; {problem}"
        )
    return ShardInfo(path, dtype, tokens)


def open_shard(info: ShardInfo) -> np.ndarray:
    """Memory-map a shard's tokens (read-only)."""
    if info.tokens == 0:
        return np.empty(0, info.dtype)
    return np.memmap(info.path, dtype=info.dtype, mode="r", offset=HEADER.size, shape=(info.tokens,))


def write_shard(path: str | Path, tokens: np.ndarray) -> str:
    """Write one shard atomically: a temporary file renamed into place, so no half-written shard exists.
    Returns the SHA-256 of the file's bytes (taken from memory: no second read), for the manifest."""
    path = Path(path)
    tokens = np.ascontiguousarray(tokens)
    tmp = path.with_name(f".{path.name}.tmp")
    header, body = HEADER.pack(MAGIC, VERSION, CODES[tokens.dtype], len(tokens)), tokens.tobytes()
    with open(tmp, "wb") as fh:
        fh.write(header)
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    digest = hashlib.sha256(header)
    digest.update(body)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 8 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while piece := fh.read(8 << 20):
            digest.update(piece)
    return digest.hexdigest()


class ShardWriter:
    """Accumulates token arrays and writes `{prefix}_{counter:010d}.bin` shards of `chunk_size` tokens.

    `close()` writes what is left as a shorter file; `close_keeping_tail(n)` writes only the whole
    multiples of n of it and returns the rest. Nothing is ever padded. Counters run from `first_counter`;
    `max_files` guards the counter range reserved for this writer.
    """

    def __init__(
        self,
        out_dir: str | Path,
        prefix: str,
        chunk_size: int,
        dtype,
        first_counter: int = 0,
        max_files: int | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size {chunk_size!r}: a shard holds at least one token")
        self.out_dir, self.prefix, self.chunk_size = Path(out_dir), prefix, chunk_size
        self.dtype = np.dtype(dtype)
        self.counter, self.max_files = first_counter, max_files
        self.buffer = np.empty(chunk_size, self.dtype)
        self.filled = 0
        self.written: list[tuple[str, int]] = []  # (file name, tokens)
        self.checksums: dict[str, str] = {}  # file name -> SHA-256 of the file

    def add(self, tokens: np.ndarray) -> None:
        pos = 0
        while pos < len(tokens):
            take = min(self.chunk_size - self.filled, len(tokens) - pos)
            self.buffer[self.filled : self.filled + take] = tokens[pos : pos + take]
            self.filled += take
            pos += take
            if self.filled == self.chunk_size:
                self._flush()

    def _flush(self) -> None:
        if self.max_files is not None and len(self.written) >= self.max_files:
            raise ValueError(f"{self.prefix}: more than {self.max_files} shards from one writer; raise chunk_size")
        name = shard_name(self.prefix, self.counter)
        self.checksums[name] = write_shard(self.out_dir / name, self.buffer[: self.filled])
        self.written.append((name, self.filled))
        self.counter += 1
        self.filled = 0

    def close(self) -> list[tuple[str, int]]:
        if self.filled:
            self._flush()
        return self.written

    def close_keeping_tail(self, sample_len: int) -> np.ndarray:
        """Write the whole samples of `sample_len` tokens that are left and return the rest (fewer than
        `sample_len` tokens) unwritten, for a later writer to continue with."""
        keep = self.filled % sample_len
        tail = self.buffer[self.filled - keep : self.filled].copy()
        self.filled -= keep
        self.close()
        return tail
