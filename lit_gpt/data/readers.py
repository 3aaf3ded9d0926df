"""Streaming readers for the raw corpora: SlimPajama `.jsonl.zst`, Starcoderdata `.parquet`, and for
one's own corpus `.jsonl` / `.jsonl.gz` / `.jsonl.zst`, `.parquet`, `.txt` and Arrow files (what
Hugging Face `datasets` writes with `save_to_disk`).

Both readers yield document texts one at a time and never hold a whole file in memory. Bad input is
reported to an `InputLog`, which records it (file, line or row, reason) or, in strict mode, raises
`BadInputError` naming the file and line; rows with empty or whitespace-only text are dropped and
counted. The prepare scripts and the tokenizer trainer share them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import zstandard

# TinyLlama takes its code from Starcoderdata, so SlimPajama's GitHub subset is dropped.
DROPPED_SLIMPAJAMA_SETS = frozenset({"RedPajamaGithub"})
# A row whose text is empty or only whitespace would become a document of nothing but its separators.
EMPTY = "empty or whitespace-only text"


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


def _gzip_lines(path: Path) -> Iterator[bytes]:
    import gzip

    with gzip.open(path, "rb") as fh:
        for line in fh:
            yield line.rstrip(b"\n")


def _plain_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        for line in fh:
            yield line.rstrip(b"\n")


def _json_rows(path: Path, log: InputLog, lines: Iterator[bytes], field: str) -> Iterator[tuple[dict, str]]:
    """(row, text) of each valid JSON line; bad lines go to `log`, and a stream that breaks (corrupt
    or truncated compression) ends the file at the line where it broke, the rows before it kept."""
    import gzip
    import zlib

    line_no = 0
    try:
        for line_no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:  # also covers invalid UTF-8
                log.skip(path, line_no, f"invalid JSON line ({err})")
                continue
            text = row.get(field) if isinstance(row, dict) else None
            if not isinstance(text, str):
                log.skip(path, line_no, f"row without a string {field!r} field")
            elif not _encodable(text):
                log.skip(path, line_no, "text is not valid Unicode (lone surrogates)")
            elif not text.strip():
                log.drop(EMPTY)
            else:
                yield row, text
    except (zstandard.ZstdError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        kind = "zstd" if isinstance(err, zstandard.ZstdError) else "gzip"
        log.skip(path, line_no + 1, f"corrupt {kind} stream ({err}); rest of the file skipped")
        return
    if line_no == 0:
        log.skip(path, 0, "empty file")


def read_slimpajama(path: str | Path, log: InputLog) -> Iterator[str]:
    """Yield the texts of one SlimPajama `.jsonl.zst` file, dropping `RedPajamaGithub` rows.

    An invalid JSON line or a row without a string `text` is skipped; a corrupt zstd stream ends the
    file at the line where it broke (the documents before it are kept).
    """
    for row, text in _json_rows(Path(path), log, _zstd_lines(Path(path)), "text"):
        meta = row.get("meta")
        set_name = meta.get("redpajama_set_name") if isinstance(meta, dict) else None
        if set_name in DROPPED_SLIMPAJAMA_SETS:
            log.drop(f"redpajama_set_name={set_name}")
            continue
        yield text


def read_jsonl(path: str | Path, log: InputLog, field: str = "text") -> Iterator[str]:
    """Yield the `field` texts of a `.jsonl`, `.jsonl.gz` or `.jsonl.zst` file (by its suffix)."""
    path = Path(path)
    lines = (
        _zstd_lines(path)
        if path.suffix == ".zst"
        else _gzip_lines(path)
        if path.suffix == ".gz"
        else _plain_lines(path)
    )
    for _, text in _json_rows(path, log, lines, field):
        yield text


def read_text_file(path: str | Path, log: InputLog) -> Iterator[str]:
    """A `.txt` file is one document (UTF-8); an empty or undecodable file is skipped."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        log.skip(path, raw.count(b"\n", 0, err.start) + 1, f"not valid UTF-8 ({err.reason} at byte {err.start})")
        return
    if not text.strip():
        log.skip(path, 0, "empty file")
    else:
        yield text


def read_arrow(path: str | Path, log: InputLog, column: str = "text") -> Iterator[str]:
    """Yield the `column` texts of an Arrow IPC file (stream format, as `datasets.save_to_disk`
    writes it, or file format)."""
    import pyarrow as pa

    try:
        with open(path, "rb") as fh:
            try:
                reader = pa.ipc.open_stream(fh)
            except pa.ArrowInvalid:
                fh.seek(0)
                file_reader = pa.ipc.open_file(fh)
                reader = (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
                names = file_reader.schema.names
            else:
                names = reader.schema.names
            yield from _texts_of_batches(path, log, column, names, reader)
    except (pa.ArrowException, OSError) as err:
        log.skip(path, 0, f"unreadable Arrow file ({err}); rest of the file skipped")


def _texts_of_batches(path, log: InputLog, column: str, names: list[str], batches) -> Iterator[str]:
    """Texts of `column` over record batches; the "line" of a bad row is its 1-based row number."""
    if column not in names:
        log.skip(path, 0, f"no column {column!r} (columns: {names})")
        return
    row_no = 0
    for batch in batches:
        for text in batch.column(column).to_pylist():
            row_no += 1
            if not isinstance(text, str):
                log.skip(path, row_no, f"row without a string {column!r} value")
            elif not _encodable(text):
                log.skip(path, row_no, "text is not valid Unicode (lone surrogates)")
            elif not text.strip():
                log.drop(EMPTY)
            else:
                yield text
    if row_no == 0:
        log.skip(path, 0, "empty file")


def read_parquet(path: str | Path, log: InputLog, column: str = "text", batch_rows: int = 1024) -> Iterator[str]:
    """Yield the `column` texts of one parquet file, one record batch at a time.

    The "line" reported for a bad row is its 1-based row number; an unreadable file is reported at
    row 0 (the rows read before the failure are kept).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
        names = pfile.schema_arrow.names
        batches = pfile.iter_batches(batch_size=batch_rows, columns=[column]) if column in names else ()
        yield from _texts_of_batches(path, log, column, names, batches)
    except (pa.ArrowException, OSError) as err:
        log.skip(path, 0, f"unreadable parquet file ({err}); rest of the file skipped")


def read_starcoder(path: str | Path, log: InputLog, column: str = "content", batch_rows: int = 1024) -> Iterator[str]:
    """Yield the `content` texts of one Starcoderdata parquet file."""
    return read_parquet(path, log, column, batch_rows)
