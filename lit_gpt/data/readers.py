"""Streaming readers for the raw corpora: SlimPajama `.jsonl.zst` and Starcoderdata `.parquet`.

Both readers yield document texts one at a time and never hold a whole file in memory. Bad input is
reported to an `InputLog`, which records it (file, line or row, reason) or, in strict mode, raises
`BadInputError` naming the file and line. The prepare scripts and the tokenizer trainer share them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterator

import zstandard

# TinyLlama takes its code from Starcoderdata, so SlimPajama's GitHub subset is dropped.
DROPPED_SLIMPAJAMA_SETS = frozenset({"RedPajamaGithub"})


class BadInputError(ValueError):
    """A corrupt or malformed input row or file (raised in strict mode)."""


class InputLog:
    """Collects skipped rows (with file, line and reason) and intentionally dropped rows."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.skipped: list[dict] = []
        self.dropped: Counter = Counter()

    def skip(self, file: str | Path, line: int, reason: str) -> None:
        if self.strict:
            raise BadInputError(f"{file}:{line}: {reason}")
        self.skipped.append({"file": str(file), "line": line, "reason": reason})

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1


def _encodable(text: str) -> bool:
    """False for strings with lone surrogates (JSON allows "\\ud800"), which no tokenizer can encode."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _zstd_lines(path: Path, read_size: int = 1 << 20) -> Iterator[bytes]:
    """Decompress a (possibly multi-frame) zstd file chunk by chunk and yield its lines.

    `decompressobj` is used rather than `stream_reader` because it tells whether the last frame was
    complete: a truncated file must be an error, not a silently shorter document list.
    """
    tail = b""
    with open(path, "rb") as fh:
        dobj, in_frame = zstandard.ZstdDecompressor().decompressobj(), False
        while raw := fh.read(read_size):
            while raw:
                data = dobj.decompress(raw)
                in_frame = True
                if dobj.eof:
                    raw, in_frame = dobj.unused_data, False
                    dobj = zstandard.ZstdDecompressor().decompressobj()
                else:
                    raw = b""
                if data:
                    lines = (tail + data).split(b"\n")
                    tail = lines.pop()
                    yield from lines
        if in_frame:
            raise zstandard.ZstdError("unexpected end of file (truncated zstd frame)")
    if tail:
        yield tail


def read_slimpajama(path: str | Path, log: InputLog) -> Iterator[str]:
    """Yield the texts of one SlimPajama `.jsonl.zst` file, dropping `RedPajamaGithub` rows.

    An invalid JSON line or a row without a string `text` is skipped; a corrupt zstd stream ends the
    file at the line where it broke (the documents before it are kept).
    """
    line_no = 0
    try:
        for line_no, line in enumerate(_zstd_lines(Path(path)), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:  # also covers invalid UTF-8
                log.skip(path, line_no, f"invalid JSON line ({err})")
                continue
            text = row.get("text") if isinstance(row, dict) else None
            if not isinstance(text, str):
                log.skip(path, line_no, "row without a string 'text' field")
                continue
            if not _encodable(text):
                log.skip(path, line_no, "text is not valid Unicode (lone surrogates)")
                continue
            meta = row.get("meta")
            set_name = meta.get("redpajama_set_name") if isinstance(meta, dict) else None
            if set_name in DROPPED_SLIMPAJAMA_SETS:
                log.drop(f"redpajama_set_name={set_name}")
                continue
            yield text
    except zstandard.ZstdError as err:
        log.skip(path, line_no + 1, f"corrupt zstd stream ({err}); rest of the file skipped")


def read_starcoder(path: str | Path, log: InputLog, column: str = "content", batch_rows: int = 1024) -> Iterator[str]:
    """Yield the `content` texts of one Starcoderdata parquet file, one record batch at a time.

    The "line" reported for a bad row is its 1-based row number; an unreadable file is reported at
    the row where reading failed (0 when it could not be opened at all).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    row_no = 0
    try:
        pfile = pq.ParquetFile(path)
        if column not in pfile.schema_arrow.names:
            log.skip(path, 0, f"no column {column!r} (columns: {pfile.schema_arrow.names})")
            return
        for batch in pfile.iter_batches(batch_size=batch_rows, columns=[column]):
            for text in batch.column(0).to_pylist():
                row_no += 1
                if not isinstance(text, str):
                    log.skip(path, row_no, f"row without a string {column!r} value")
                elif not _encodable(text):
                    log.skip(path, row_no, "text is not valid Unicode (lone surrogates)")
                else:
                    yield text
    except (pa.ArrowException, OSError) as err:
        log.skip(path, row_no, f"unreadable parquet file ({err}); rest of the file skipped")
