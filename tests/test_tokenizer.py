import hashlib
import json
import pickle

import numpy as np
import pytest
import torch
from data_helpers import ROOT, SAMPLE, hard_texts

from lit_gpt.data.readers import InputLog, read_slimpajama, read_starcoder
from lit_gpt.tokenizer import Tokenizer

EDGE_CASES = [
    "",
    " ",
    "  a",
    "\t x",
    "end ",
    "    ",
    "a\u2581b",
    "x\x00y",
    "日本語 ok",
    "\U0001f600 emoji",
    "e\u0301",
    "\r\n\t\x0b",
    "1234567",
]


def test_sentencepiece_backend(sample_tokenizer):
    tok = Tokenizer(sample_tokenizer)
    assert (tok.backend, tok.vocab_size, tok.bos_id, tok.eos_id) == ("sentencepiece", 1024, 1, 2)
    code = "def f(x):\n    return  x  # два\n"
    ids = tok.encode(code, bos=True, eos=True)
    assert ids[0] == 1 and ids[-1] == 2 and tok.decode(ids[1:-1]) == code
    assert tok.decode(torch.tensor(ids[1:-1])) == code
    assert tok.encode_batch([code, "x"], eos=True) == [tok.encode(code, eos=True), tok.encode("x", eos=True)]
    ident = tok.identity()
    assert ident["sha256"] == hashlib.sha256((sample_tokenizer / "tokenizer.model").read_bytes()).hexdigest()
    assert (ident["vocab_size"], ident["backend"]) == (1024, "sentencepiece")
    assert [p.name for p in tok.files] == ["tokenizer.model", "tokenizer_config.json"]
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode(code) == tok.encode(code)


def test_fast_encoder_matches_sentencepiece_on_the_sample_corpus(sample_tokenizer):
    tok = Tokenizer(sample_tokenizer)
    assert tok.fast_encoder is not None
    log = InputLog(strict=True)
    texts = [t for f in sorted(SAMPLE.glob("slimpajama/*/*/*.zst")) for t in read_slimpajama(f, log)]
    texts += [t for f in sorted(SAMPLE.glob("starcoder/*/*.parquet")) for t in read_starcoder(f, log)]
    texts += EDGE_CASES
    flat = tok.encode_flat(texts, bos=True, eos=True, dtype=np.uint16)
    expected = np.concatenate([np.array([1, *ids, 2]) for ids in tok.processor.encode(texts)])
    np.testing.assert_array_equal(flat, expected)


def test_fast_encoder_without_dummy_prefix(tmp_path, sample_tokenizer):
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto.FromString((sample_tokenizer / "tokenizer.model").read_bytes())
    model.normalizer_spec.add_dummy_prefix = False
    (tmp_path / "tokenizer.model").write_bytes(model.SerializeToString())
    tok = Tokenizer(tmp_path)
    assert tok.fast_encoder is not None and tok.fast_encoder.dummy_prefix is False
    texts = EDGE_CASES + [(ROOT / "lit_gpt" / "tokenizer.py").read_text()]
    np.testing.assert_array_equal(
        tok.encode_flat(texts, eos=True, check_every=1), [i for t in texts for i in tok.encode(t, eos=True)]
    )


def test_fast_encoder_declines_other_normalisation(tmp_path):
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    lines = ["Ｆｕｌｌ width text", "hello  world", "print(x)  # done"] * 50
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=300,
        byte_fallback=True,
        minloglevel=2,
    )
    (tmp_path / "tokenizer.model").write_bytes(model.getvalue())
    tok = Tokenizer(tmp_path)  # NFKC normalisation and collapsed spaces: not reproduced by the fast encoder
    assert tok.fast_encoder is None
    texts = ["hello  world", "Ｆｕｌｌ width"]
    np.testing.assert_array_equal(tok.encode_flat(texts, eos=True), [i for t in texts for i in tok.encode(t, eos=True)])


def _hf_folder(tmp_path, specials):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE(unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", *specials], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    hf.train_from_iterator(["hello world", "print('hi')", "tokenizers are fun"] * 20, trainer)
    from tokenizers import decoders

    hf.decoder = decoders.ByteLevel()
    hf.save(str(tmp_path / "tokenizer.json"))
    return tmp_path


def test_huggingface_backend_reads_specials_from_tokenizer_config(tmp_path):
    folder = _hf_folder(tmp_path, ["<|begin|>", "<|end|>"])
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": {"content": "<|begin|>"}, "eos_token": "<|end|>"})
    )
    tok = Tokenizer(folder)
    assert (tok.backend, tok.bos_id, tok.eos_id) == ("huggingface", 1, 2)
    ids = tok.encode("hello world", bos=True, eos=True)
    assert ids[0] == 1 and ids[-1] == 2 and tok.decode(ids[1:-1]) == "hello world"
    assert tok.encode_batch(["hello", "fun"]) == [tok.encode("hello"), tok.encode("fun")]
    np.testing.assert_array_equal(
        tok.encode_flat(["hello", "fun"], bos=True), [1, *tok.encode("hello"), 1, *tok.encode("fun")]
    )
    assert tok.identity()["sha256"] == hashlib.sha256((folder / "tokenizer.json").read_bytes()).hexdigest()
    assert [p.name for p in tok.files] == ["tokenizer.json", "tokenizer_config.json"]
    assert pickle.loads(pickle.dumps(tok)).encode("fun") == tok.encode("fun")


def test_huggingface_backend_falls_back_to_config_ids_then_llama_names(tmp_path):
    folder = _hf_folder(tmp_path, ["<s>", "</s>", "<x>"])
    assert (Tokenizer(folder).bos_id, Tokenizer(folder).eos_id) == (1, 2)  # "<s>" / "</s>" in the vocabulary
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 3, "eos_token_id": [2, 3]}))
    assert (Tokenizer(folder).bos_id, Tokenizer(folder).eos_id) == (3, 2)
    (folder / "config.json").write_text(json.dumps({"bos_token_id": 2, "eos_token_id": 1}))
    assert (Tokenizer(folder).bos_id, Tokenizer(folder).eos_id) == (2, 1)


def test_sentencepiece_wins_over_tokenizer_json(tmp_path, sample_tokenizer):
    _hf_folder(tmp_path, [])
    (tmp_path / "tokenizer.model").write_bytes((sample_tokenizer / "tokenizer.model").read_bytes())
    assert Tokenizer(tmp_path).backend == "sentencepiece"


def test_missing_tokenizer_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        Tokenizer(tmp_path)
    assert (
        str(tmp_path) in str(err.value) and "tokenizer.model" in str(err.value) and "tokenizer.json" in str(err.value)
    )


def _sample_texts() -> list[str]:
    log = InputLog(strict=True)
    texts = [t for f in sorted(SAMPLE.glob("slimpajama/*/*/*.zst")) for t in read_slimpajama(f, log)]
    return texts + [t for f in sorted(SAMPLE.glob("starcoder/*/*.parquet")) for t in read_starcoder(f, log)]


def test_fast_encoder_exact_on_a_llama2_shaped_vocabulary(llama2_shaped_tokenizer):
    from sentencepiece import sentencepiece_model_pb2

    tok = Tokenizer(llama2_shaped_tokenizer)
    model = sentencepiece_model_pb2.ModelProto.FromString(tok.processor.serialized_model_proto())
    assert tok.vocab_size == 32000 and model.trainer_spec.split_digits and model.trainer_spec.byte_fallback
    assert [p.piece for p in model.pieces[3:259]] == [f"<0x{b:02X}>" for b in range(256)]
    runs = [p for p in model.pieces if set(p.piece) == {"▁"} and len(p.piece) > 1]
    assert len(runs) == 15 and {p.score for p in runs} == {-1e9} and model.pieces[259].piece == "▁▁"
    assert tok.fast_encoder is not None, tok.fast_encoder_refusal
    texts = _sample_texts()[::5] + hard_texts()  # the benchmark compares the whole corpus
    assert "<0xF0>" in tok.processor.encode("\U0001f600", out_type=str)  # byte fallback happens
    flat = tok.encode_flat(texts, bos=True, eos=True, dtype=np.uint16)
    np.testing.assert_array_equal(flat, np.concatenate([np.array([1, *ids, 2]) for ids in tok.processor.encode(texts)]))


def _edited(tmp_path, folder, edit):
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto.FromString((folder / "tokenizer.model").read_bytes())
    edit(model)
    (tmp_path / "tokenizer.model").write_bytes(model.SerializeToString())
    (tmp_path / "tokenizer_config.json").write_text((folder / "tokenizer_config.json").read_text())
    return Tokenizer(tmp_path)


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda m: setattr(m.pieces[300], "score", m.pieces[301].score), "share the score"),
        (lambda m: setattr(m.pieces[259], "score", 0.0), "not all one score"),
        (
            lambda m: [setattr(p, "score", 1e9) for p in m.pieces if set(p.piece) == {"▁"}],
            "not below every other piece",
        ),
        (lambda m: setattr(m.pieces[300], "piece", "▁▁zq"), "holds a whitespace run"),
        # a piece no merge sequence reaches: tiktoken would return it for the word itself, SentencePiece not
        (lambda m: setattr(m.pieces[300], "piece", "▁ЖqЖqЖq"), "does not encode the word '▁ЖqЖqЖq' as its own piece"),
    ],
)
def test_fast_encoder_refuses_ties_it_cannot_reproduce(tmp_path, llama2_shaped_tokenizer, edit, reason):
    tok = _edited(tmp_path, llama2_shaped_tokenizer, edit)
    assert tok.fast_encoder is None and reason in tok.fast_encoder_refusal
    texts = hard_texts()
    np.testing.assert_array_equal(tok.encode_flat(texts, eos=True), [i for t in texts for i in tok.encode(t, eos=True)])


def test_preparation_says_once_why_the_fast_path_is_off(tmp_path, llama2_shaped_tokenizer):
    import warnings

    import zstandard

    from lit_gpt.data import open_shard, prepare, read_header

    (tmp_path / "tok").mkdir()
    _edited(tmp_path / "tok", llama2_shaped_tokenizer, lambda m: setattr(m.pieces[300], "score", m.pieces[301].score))
    rows = [json.dumps({"text": t, "meta": {"redpajama_set_name": "RedPajamaC4"}}) for t in hard_texts() if t]
    for i in range(2):
        (tmp_path / f"in{i}.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress("\n".join(rows).encode()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare(
            sorted(tmp_path.glob("in*.zst")),
            tmp_path,
            read_slimpajama,
            tmp_path / "tok",
            tmp_path / "out",
            "train_x",
            num_processes=1,
            check_every=1,
        )
    said = [str(w.message) for w in caught if "fast tokenization is off" in str(w.message)]
    assert len(said) == 1 and "share the score" in said[0]
    tok = Tokenizer(tmp_path / "tok")
    tokens = np.concatenate([open_shard(read_header(p)) for p in sorted((tmp_path / "out").glob("train_x_*.bin"))])
    np.testing.assert_array_equal(
        # whitespace-only documents are dropped in preparation (and counted): the rest, in order
        tokens,
        [i for _ in range(2) for t in hard_texts() if t.strip() for i in tok.encode(t, bos=True, eos=True)],
    )


def test_huggingface_byte_level_bpe_flat_encoding_matches_per_document_encoding(tmp_path):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's regex split, then bytes
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    hf.train_from_iterator(_sample_texts()[:200], trainer)
    hf.save(str(tmp_path / "tokenizer.json"))
    tok = Tokenizer(tmp_path)
    assert tok.fast_encoder is None and "natively" in tok.fast_encoder_refusal
    texts = _sample_texts()[200:260] + hard_texts()
    np.testing.assert_array_equal(
        tok.encode_flat(texts, bos=True, eos=True), [i for t in texts for i in tok.encode(t, bos=True, eos=True)]
    )
    assert tok.decode(tok.encode(texts[-5])) == texts[-5]
