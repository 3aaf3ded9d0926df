"""One tokenizer interface over SentencePiece (`tokenizer.model`) and Hugging Face `tokenizers` (`tokenizer.json`).

`tokenizer.model` wins when a folder holds both. BOS/EOS ids always come from the files, never from
hard-coded numbers. Instances pickle by folder path, so multiprocessing workers reload the files.

Data preparation spends nearly all its time in SentencePiece's BPE encoder (about 3 MB/s per core).
`encode_flat` therefore runs eligible SentencePiece BPE models through `TiktokenBPE`, the same merge
rule executed by tiktoken's faster merge loop, which gives identical ids (checked by the tests on the
sample corpus, and by data preparation on a sample of documents while it runs).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

# Files a checkpoint converter should copy next to the weights, whichever exist.
TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


class TiktokenBPE:
    """SentencePiece BPE encoding executed by tiktoken, for models where that is provably the same.

    SentencePiece BPE starts from the characters of the normalised text (spaces become U+2581 "▁",
    one "▁" is prepended) and repeatedly merges the adjacent pair whose concatenation is the piece
    with the highest score, leftmost first on equal scores; characters outside the vocabulary become
    byte pieces `<0xXX>`. tiktoken repeatedly merges the adjacent pair whose bytes have the lowest
    rank, leftmost first. So the ranks are: the 256 single bytes, then every UTF-8 prefix of the
    vocabulary's multi-byte characters (each character is assembled from its bytes before any real
    merge), then the multi-character pieces in descending score. Tokens that are no SentencePiece
    piece (lone bytes, prefixes of unknown characters) expand to byte pieces. tiktoken's pre-split
    into words (a run of "▁" plus what follows up to the next "▁") changes nothing because no piece
    crosses such a boundary. When a whole word is a piece tiktoken returns it without merging, so
    every piece that can be a whole word must also be what SentencePiece makes of it.

    Equal scores: "leftmost first" ranks pairs by position, which no fixed token ranking can do in
    general. Llama 2's tokenizer gives its whitespace-run pieces ("▁▁" ... 16 x "▁") one shared score
    (-1e9) below every other piece, and that case is exact: all other merges finish first (a run
    piece joins nothing else, since no other piece holds "▁▁"), leaving each word's leading run of
    single "▁"; with the run lengths 2..K all present, leftmost-first grows the leftmost block one
    "▁" at a time up to K, then starts the next, and tiktoken does the same when the longer run
    pieces rank first. Any other tie is refused. The constructor checks all of this and raises
    ValueError naming the first condition that fails.
    """

    WORD = "▁+[^▁]*|[^▁]+"

    def __init__(self, model_proto: bytes) -> None:
        import re

        import tiktoken
        from sentencepiece import sentencepiece_model_pb2

        model = sentencepiece_model_pb2.ModelProto.FromString(model_proto)
        Piece, norm, trainer = model.SentencePiece, model.normalizer_spec, model.trainer_spec
        types = {p.type for p in model.pieces}
        if trainer.model_type != trainer.BPE:
            raise ValueError("not a BPE model")
        if norm.name != "identity" or norm.normalization_rule_tsv or norm.precompiled_charsmap:
            raise ValueError(f"normalisation {norm.name!r} is not the identity")
        if norm.remove_extra_whitespaces or not norm.escape_whitespaces or trainer.treat_whitespace_as_suffix:
            raise ValueError("whitespace is collapsed, not escaped as U+2581, or treated as a suffix")
        if not trainer.byte_fallback:
            raise ValueError("no byte fallback (unknown characters would become <unk>)")
        if types & {Piece.USER_DEFINED, Piece.UNUSED}:
            raise ValueError("user-defined or unused pieces")
        self.dummy_prefix = norm.add_dummy_prefix
        normal = {p.piece: i for i, p in enumerate(model.pieces) if p.type == Piece.NORMAL}
        byte_ids = {int(p.piece[3:5], 16): i for i, p in enumerate(model.pieces) if p.type == Piece.BYTE}
        if len(byte_ids) != 256:
            raise ValueError(f"{len(byte_ids)} byte pieces instead of 256")
        multi = [p for p in model.pieces if p.type == Piece.NORMAL and len(p.piece) > 1]
        word = re.compile(self.WORD)
        if crossing := next((p.piece for p in multi if word.fullmatch(p.piece) is None), None):
            raise ValueError(f"piece {crossing!r} crosses a word boundary")
        ordered = self._merge_order(multi)

        ranks = {bytes([b]): b for b in range(256)}
        expansion = [[normal[chr(b)]] if b < 128 and chr(b) in normal else [byte_ids[b]] for b in range(256)]
        for char in sorted(c for c in normal if len(c) == 1 and ord(c) >= 128):
            raw = char.encode()
            for k in range(2, len(raw) + 1):
                if raw[:k] not in ranks:
                    ranks[raw[:k]] = len(ranks)
                    expansion.append([byte_ids[b] for b in raw[:k]])
            expansion[ranks[raw]] = [normal[char]]
        for piece in ordered:
            ranks[piece.encode()] = len(ranks)
            expansion.append([normal[piece]])
        self.encoding = tiktoken.Encoding(
            "sentencepiece-bpe", pat_str=self.WORD, mergeable_ranks=ranks, special_tokens={}
        )
        # Flat expansion table: rank r -> flat[offset[r] : offset[r] + length[r]].
        self.length = np.array([len(e) for e in expansion], np.int64)
        self.offset = np.cumsum(self.length) - self.length
        self.flat = np.array([i for e in expansion for i in e], np.int64)
        self.direct = np.where(self.length == 1, self.flat[self.offset], -1)
        self._check_whole_words(model, multi, normal)

    @staticmethod
    def _merge_order(multi) -> list[str]:
        """The multi-character pieces in merge order (see the class docstring); ValueError on a tie
        that SentencePiece's leftmost-first rule could resolve differently."""
        if len({p.score for p in multi}) == len(multi):
            return [p.piece for p in sorted(multi, key=lambda p: -p.score)]
        runs = [p for p in multi if set(p.piece) == {"▁"}]
        others = [p for p in multi if set(p.piece) != {"▁"}]
        seen: dict[float, str] = {}
        for p in others:
            if p.score in seen or p.score in {r.score for r in runs}:
                other = seen.get(p.score) or next(r.piece for r in runs if r.score == p.score)
                raise ValueError(
                    f"pieces {other!r} and {p.piece!r} share the score {p.score}: merge order is not a strict ranking"
                )
            seen[p.score] = p.piece
        if len({r.score for r in runs}) != 1:
            raise ValueError("whitespace-run pieces share scores, but not all one score")
        tie = runs[0].score
        if others and tie >= min(p.score for p in others):
            raise ValueError(f"the whitespace-run pieces' shared score {tie} is not below every other piece's")
        lengths = sorted(len(r.piece) for r in runs)
        if lengths != list(range(2, len(lengths) + 2)):
            raise ValueError(f"whitespace-run pieces of lengths {lengths}, not every length from 2 up")
        if inner := next((p.piece for p in others if "▁▁" in p.piece), None):
            raise ValueError(f"piece {inner!r} holds a whitespace run")
        return [p.piece for p in sorted(others, key=lambda p: -p.score)] + ["▁" * n for n in reversed(lengths)]

    def _check_whole_words(self, model, multi, normal) -> None:
        """tiktoken returns a word that is itself a piece as that piece; SentencePiece must agree."""
        import sentencepiece

        model.normalizer_spec.add_dummy_prefix = False
        reference = sentencepiece.SentencePieceProcessor(model_proto=model.SerializeToString())
        words = [p.piece for p in multi if self.dummy_prefix is False or p.piece.startswith("▁")]
        encoded = reference.encode([w.replace("▁", " ") for w in words])
        if bad := next((w for w, ids in zip(words, encoded) if ids != [normal[w]]), None):
            raise ValueError(f"SentencePiece does not encode the word {bad!r} as its own piece")

    def encode(self, text: str) -> np.ndarray:
        if not text:
            return np.empty(0, np.int64)
        ranks = np.array(
            self.encoding.encode_ordinary(("▁" if self.dummy_prefix else "") + text.replace(" ", "▁")), np.int64
        )
        ids = self.direct[ranks]
        if (ids >= 0).all():
            return ids
        lengths = self.length[ranks]
        ends = np.cumsum(lengths)
        return self.flat[np.repeat(self.offset[ranks] - ends + lengths, lengths) + np.arange(ends[-1])]


@lru_cache(maxsize=2)
def _fast_encoder_for(model_proto: bytes) -> tuple[TiktokenBPE | None, str | None]:
    """One TiktokenBPE per model and process (building one takes a fraction of a second); or why not."""
    try:
        return TiktokenBPE(model_proto), None
    except ImportError as err:
        return None, f"tiktoken is not installed ({err})"
    except ValueError as err:
        return None, f"the model is not eligible: {err}"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class Tokenizer:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        sp_file, hf_file = self.folder / "tokenizer.model", self.folder / "tokenizer.json"
        if sp_file.is_file():
            import sentencepiece

            self.backend, self.path = "sentencepiece", sp_file
            self.processor = sentencepiece.SentencePieceProcessor(model_file=str(sp_file))
            self.vocab_size = self.processor.vocab_size()
            self.bos_id = self._valid(self.processor.bos_id())
            self.eos_id = self._valid(self.processor.eos_id())
        elif hf_file.is_file():
            from tokenizers import Tokenizer as HFTokenizer

            self.backend, self.path = "huggingface", hf_file
            self.processor = HFTokenizer.from_file(str(hf_file))
            self.vocab_size = self.processor.get_vocab_size(with_added_tokens=True)
            self.bos_id, self.eos_id = self._hf_special_id("bos"), self._hf_special_id("eos")
        else:
            raise FileNotFoundError(
                f"{self.folder}: no tokenizer found, expected tokenizer.model (SentencePiece) or tokenizer.json "
                "(Hugging Face tokenizers)"
            )

    @cached_property
    def fast_encoder(self) -> TiktokenBPE | None:
        """The tiktoken encoder for an eligible SentencePiece model, else None (built on first use;
        `fast_encoder_refusal` then says why)."""
        if self.backend != "sentencepiece":
            self.fast_encoder_refusal = "Hugging Face tokenizers encodes natively (no tiktoken path)"
            return None
        encoder, self.fast_encoder_refusal = _fast_encoder_for(self.processor.serialized_model_proto())
        return encoder

    fast_encoder_refusal: str | None = None

    @staticmethod
    def _valid(token_id: int) -> int | None:
        return token_id if token_id >= 0 else None  # SentencePiece reports a disabled token as -1

    def _hf_special_id(self, kind: str) -> int | None:
        """`{kind}_token` from tokenizer_config.json, else `{kind}_token_id` from config.json /
        generation_config.json, else the Llama convention `<s>`/`</s>` when it is in the vocabulary."""
        token = _read_json(self.folder / "tokenizer_config.json").get(f"{kind}_token")
        if isinstance(token, dict):  # the AddedToken form {"content": "<s>", ...}
            token = token.get("content")
        if isinstance(token, str) and (token_id := self.processor.token_to_id(token)) is not None:
            return token_id
        for name in ("config.json", "generation_config.json"):
            token_id = _read_json(self.folder / name).get(f"{kind}_token_id")
            if isinstance(token_id, list):  # some configs list several EOS ids; the first is canonical
                token_id = token_id[0] if token_id else None
            if isinstance(token_id, int):
                return token_id
        return self.processor.token_to_id("<s>" if kind == "bos" else "</s>")

    def __reduce__(self):
        return (type(self), (self.folder,))

    def _wrap(self, ids: list[int], bos: bool, eos: bool) -> list[int]:
        if bos:
            ids = [self._require(self.bos_id, "BOS")] + ids
        if eos:
            ids = ids + [self._require(self.eos_id, "EOS")]
        return ids

    def _require(self, token_id: int | None, name: str) -> int:
        if token_id is None:
            raise ValueError(f"{self.path} defines no {name} token")
        return token_id

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        if self.backend == "sentencepiece":
            ids = self.processor.encode(text)
        else:
            ids = self.processor.encode(text, add_special_tokens=False).ids
        return self._wrap(ids, bos, eos)

    def encode_batch(self, texts: list[str], bos: bool = False, eos: bool = False) -> list[list[int]]:
        if self.backend == "sentencepiece":
            ids = self.processor.encode(list(texts), num_threads=1)
        else:
            ids = [e.ids for e in self.processor.encode_batch(list(texts), add_special_tokens=False)]
        return [self._wrap(x, bos, eos) for x in ids]

    def encode_flat(
        self, texts: list[str], bos: bool = False, eos: bool = False, dtype=np.int64, check_every: int = 0
    ) -> np.ndarray:
        """Encode documents and concatenate them (each wrapped in BOS/EOS as asked) into one array.

        The fast path of data preparation (single-threaded, no Python lists of ints): `TiktokenBPE`
        when the model allows it. With `check_every=n`, every n-th document is also encoded by the
        reference encoder and a difference raises RuntimeError.
        """
        if not texts:
            return np.empty(0, dtype)
        if self.fast_encoder is not None:
            arrays = [self.fast_encoder.encode(t) for t in texts]
            for text, ids in zip(texts[::check_every], arrays[::check_every]) if check_every else ():
                if self.processor.encode(text) != ids.tolist():
                    raise RuntimeError(f"{self.path}: the tiktoken encoder differs from SentencePiece on {text[:80]!r}")
        elif self.backend == "sentencepiece":
            arrays = self.processor.encode(list(texts), num_threads=1, return_type="numpy")
        else:  # the offset-free batch call: faster than encode per document, which encode_batch is not
            batch = getattr(self.processor, "encode_batch_fast", self.processor.encode_batch)
            arrays = [np.asarray(e.ids, dtype) for e in batch(list(texts), add_special_tokens=False)]
        if not (bos or eos):
            return np.concatenate(arrays).astype(dtype, copy=False)
        lengths = np.fromiter((len(a) for a in arrays), np.int64, len(arrays)) + bos + eos
        ends = np.cumsum(lengths)
        out = np.empty(int(ends[-1]), dtype)
        starts, body = ends - lengths, np.ones(len(out), bool)
        if bos:
            out[starts], body[starts] = self._require(self.bos_id, "BOS"), False
        if eos:
            out[ends - 1], body[ends - 1] = self._require(self.eos_id, "EOS"), False
        out[body] = np.concatenate(arrays)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return self.processor.decode(ids)

    def identity(self) -> dict:
        return {
            "vocab_size": self.vocab_size,
            "backend": self.backend,
            "sha256": hashlib.sha256(self.path.read_bytes()).hexdigest(),
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
        }

    @property
    def files(self) -> list[Path]:
        return [self.folder / name for name in TOKENIZER_FILES if (self.folder / name).is_file()]
