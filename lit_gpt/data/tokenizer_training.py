"""Training a small SentencePiece BPE tokenizer on the sample corpus (SlimPajama-style prose and
Starcoder-style code), for the demo, or on a corpus of your own, for a small run on it; real runs use
the Llama 2 tokenizer.

Settings chosen so text and code round-trip exactly: identity normalisation (no NFKC, newlines kept),
no collapsing of repeated spaces, whitespace-only pieces allowed (indentation becomes a few tokens),
byte fallback for unseen characters, digits split. Ids: 0 `<unk>`, 1 `<s>` (BOS), 2 `</s>` (EOS), no pad.
The documents are read through the same readers as the prepare scripts and fed as pieces of at most
`max_piece_chars` characters cut at line ends, interleaving prose and code up to `max_chars` in total.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path

import sentencepiece as spm

from lit_gpt.data.readers import InputLog, read_slimpajama, read_starcoder


def _pieces(texts: Iterator[str], max_piece_chars: int) -> Iterator[str]:
    """Cut documents at line ends into pieces short enough for SentencePiece's sentence length limit."""
    for text in texts:
        piece = ""
        for line in text.splitlines(keepends=True):
            if piece and len(piece) + len(line) > max_piece_chars:
                yield piece
                piece = ""
            piece += line[:max_piece_chars]
        if piece.strip():
            yield piece


def training_text(slimpajama_dir: Path, starcoder_dir: Path, max_chars: int, max_piece_chars: int) -> Iterator[str]:
    log = InputLog(strict=True)
    prose = (t for f in sorted(slimpajama_dir.glob("**/*.jsonl.zst")) for t in read_slimpajama(f, log))
    code = (t for f in sorted(starcoder_dir.glob("**/*.parquet")) for t in read_starcoder(f, log))
    used = 0
    for pair in zip_longest(_pieces(prose, max_piece_chars), _pieces(code, max_piece_chars)):
        for piece in filter(None, pair):
            if used >= max_chars:
                return
            used += len(piece)
            yield piece


SPECIAL_AND_BYTE_PIECES = 3 + 256  # <unk> <s> </s> and the byte-fallback pieces


def check_training_options(vocab_size: int, max_chars: int, max_piece_chars: int, num_threads: int) -> None:
    """Raise ValueError naming the option when a setting is out of range: checked before reading the corpus."""
    if vocab_size <= SPECIAL_AND_BYTE_PIECES:
        raise ValueError(
            f"--vocab_size {vocab_size}: must be more than the {SPECIAL_AND_BYTE_PIECES} special and byte-fallback "
            "pieces every vocabulary holds"
        )
    for option, value in (("max_chars", max_chars), ("max_piece_chars", max_piece_chars), ("num_threads", num_threads)):
        if value < 1:
            raise ValueError(f"--{option} {value}: must be at least 1")


def corpus_text(inputs: list[str | Path], text_field: str, max_chars: int, max_piece_chars: int) -> Iterator[str]:
    """Training pieces from a corpus of your own, the inputs `lit-prepare-corpus` takes (files, folders, globs
    of .jsonl, .jsonl.gz, .jsonl.zst, .parquet, .txt, .arrow): its documents in sorted file order, up to
    `max_chars`; bad rows are skipped."""
    from lit_gpt.data.corpus import corpus_files, read_any

    files, _ = corpus_files(inputs)
    log = InputLog()
    used = 0
    for piece in _pieces((t for f in files for t in read_any(f, log, text_field)), max_piece_chars):
        if used >= max_chars:
            return
        used += len(piece)
        yield piece


def train_tokenizer(
    out_dir: Path,
    slimpajama_dir: Path,
    starcoder_dir: Path,
    vocab_size: int = 4096,
    max_chars: int = 4_000_000,
    max_piece_chars: int = 2000,
    num_threads: int = os.cpu_count() or 1,
) -> None:
    """Train the tokenizer on prose and code and write `tokenizer.model` and `tokenizer_config.json` into `out_dir`.

    Args:
        out_dir: output folder (created).
        slimpajama_dir: folder searched recursively for `.jsonl.zst` files (SlimPajama layout).
        starcoder_dir: folder searched recursively for `.parquet` files (Starcoderdata layout).
        vocab_size: number of pieces, including the 3 special tokens and the 256 byte-fallback pieces.
        max_chars: cap on the characters fed to the trainer (keeps training fast).
        max_piece_chars: longest training piece; longer documents are cut at line ends.
        num_threads: trainer threads.
    """
    check_training_options(vocab_size, max_chars, max_piece_chars, num_threads)
    for option, folder in (("slimpajama_dir", slimpajama_dir), ("starcoder_dir", starcoder_dir)):
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"--{option} {folder}: no such folder")
    texts = training_text(slimpajama_dir, starcoder_dir, max_chars, max_piece_chars)
    write_tokenizer(out_dir, texts, vocab_size, max_piece_chars, num_threads)


def write_tokenizer(
    out_dir: Path,
    texts: Iterator[str],
    vocab_size: int = 4096,
    max_piece_chars: int = 2000,
    num_threads: int = os.cpu_count() or 1,
) -> None:
    """Train the tokenizer on `texts` (pieces of at most `max_piece_chars`) and write `tokenizer.model` and
    `tokenizer_config.json` into `out_dir`. Settings SentencePiece cannot train with (too small a vocabulary
    for the characters of the text, no text at all) raise ValueError with its reason."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=texts,
            model_writer=model,
            model_type="bpe",
            vocab_size=vocab_size,
            character_coverage=0.9995,
            byte_fallback=True,
            split_digits=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True,
            max_sentence_length=4 * max_piece_chars + 16,  # bytes, and UTF-8 takes up to 4 per character
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            num_threads=num_threads,
            minloglevel=2,
        )
    except RuntimeError as e:  # SentencePiece's checks: "INTERNAL: file(line) [condition] reason"
        reason = str(e).split("] ", 1)[-1].strip() if "] " in str(e) else str(e).strip()
        if "sentences_.empty()" in str(e):
            reason = "no text to train on"
        raise ValueError(f"cannot train a tokenizer of {vocab_size} pieces: {reason}") from None
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {out_dir / 'tokenizer.model'} (vocab {vocab_size})")


def llama2_shaped_model(
    texts: Iterator[str], trained_pieces: int = 4000, vocab_size: int = 32_000, max_run: int = 16
) -> bytes:
    """A SentencePiece BPE model proto with the Llama 2 tokenizer's shape, for tests and benchmarks
    that must not download it: ids 0-2 `<unk>` `<s>` `</s>`, byte-fallback pieces `<0x00>`..`<0xFF>`
    at ids 3-258, split digits, identity normalisation with a dummy prefix, the whitespace runs of 2 to
    `max_run` "▁" as NORMAL pieces sharing the score -1e9 ("▁▁" at id 259, the others spread over the
    vocabulary), and `vocab_size` pieces in all: `trained_pieces` trained on `texts`, the rest filled
    with single CJK ideographs, then Hangul syllables (so both multi-byte characters in the vocabulary and byte
    fallback for
    those outside it occur).
    """
    from sentencepiece import sentencepiece_model_pb2

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=texts,
        model_writer=out,
        model_type="bpe",
        vocab_size=trained_pieces,
        character_coverage=0.9995,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    model = sentencepiece_model_pb2.ModelProto.FromString(out.getvalue())
    Piece = model.SentencePiece
    trained = [p for p in model.pieces if not (p.type == Piece.NORMAL and "▁▁" in p.piece)]
    head, body = trained[:259], trained[259:]  # specials and bytes, then the trained pieces
    present = {p.piece for p in trained}
    fill = [chr(c) for c in [*range(0x4E00, 0xA000), *range(0xAC00, 0xD7A4)] if chr(c) not in present][
        : vocab_size - len(trained) - (max_run - 1)
    ]
    low = min(p.score for p in body)
    body += [Piece(piece=c, score=low - 1 - i, type=Piece.NORMAL) for i, c in enumerate(fill)]
    runs = [Piece(piece="▁" * n, score=-1e9, type=Piece.NORMAL) for n in range(2, max_run + 1)]
    for k, run in enumerate(runs):  # "▁▁" first, the others at spread-out ids as in Llama 2
        body.insert(0 if k == 0 else k * len(body) // len(runs), run)
    del model.pieces[:]
    model.pieces.extend(head + body)
    if len(model.pieces) != vocab_size:
        raise ValueError(
            f"built {len(model.pieces)} pieces, not {vocab_size}: raise trained_pieces or lower vocab_size"
        )
    model.trainer_spec.vocab_size = vocab_size
    return model.SerializeToString()
