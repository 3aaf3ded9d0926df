import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import random_model, tiny_config

from lit_gpt.checkpoint import save_hf_checkpoint, save_lit_checkpoint

gguf = pytest.importorskip("gguf")

from lit_gpt import gguf_export  # noqa: E402  (after the skip: it needs the gguf package)

REPO = Path(__file__).resolve().parents[1]


def rope_rotate_half(x, positions, base=10000.0):
    """Hugging Face / lit_gpt RoPE: dimension i turns with i + d/2."""
    d = x.shape[-1]
    angles = positions[:, None].double() * base ** (-torch.arange(0, d, 2).double() / d)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def rope_adjacent_pairs(x, positions, base=10000.0):
    """llama.cpp's RoPE for the llama architecture: dimension 2i turns with 2i + 1."""
    d = x.shape[-1]
    angles = positions[:, None].double() * base ** (-torch.arange(0, d, 2).double() / d)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).flatten(-2)


def attention_scores(wq, wk, x, positions, n_head, n_kv, rope):
    """Per-head q.k scores (query heads grouped over key heads) of tokens x at `positions`."""
    q = rope((x @ wq.T).view(len(x), n_head, -1).transpose(0, 1), positions)
    k = rope((x @ wk.T).view(len(x), n_kv, -1).transpose(0, 1), positions)
    return q @ k.repeat_interleave(n_head // n_kv, 0).transpose(1, 2)


def test_interleaved_rows_give_llama_cpp_rope_the_same_attention_scores():
    n_head, n_kv, head_size, n_embd = 4, 2, 8, 16
    g = torch.Generator().manual_seed(0)
    wq, wk = (
        torch.randn(n_head * head_size, n_embd, generator=g).double(),
        torch.randn(n_kv * head_size, n_embd, generator=g).double(),
    )
    x, positions = torch.randn(6, n_embd, generator=g).double(), torch.tensor([0, 1, 2, 7, 30, 100])
    ours = attention_scores(wq, wk, x, positions, n_head, n_kv, rope_rotate_half)
    theirs = attention_scores(
        gguf_export.interleave_rope_rows(wq, n_head),
        gguf_export.interleave_rope_rows(wk, n_kv),
        x,
        positions,
        n_head,
        n_kv,
        rope_adjacent_pairs,
    )
    torch.testing.assert_close(theirs, ours)
    # the permutation itself: row i of a head to 2i, row i + d/2 to 2i + 1
    rows = torch.arange(n_kv * head_size, dtype=torch.float64)[:, None]
    assert gguf_export.interleave_rope_rows(rows, n_kv)[:, 0].tolist()[:head_size] == [0, 4, 1, 5, 2, 6, 3, 7]
    # without the permutation (or with its inverse) the scores differ: the check above can fail
    inverse = lambda w, n: w.view(n, head_size // 2, 2, -1).transpose(1, 2).reshape(w.shape)  # noqa: E731
    for wq2, wk2 in ((wq, wk), (inverse(wq, n_head), inverse(wk, n_kv))):
        assert not torch.allclose(attention_scores(wq2, wk2, x, positions, n_head, n_kv, rope_adjacent_pairs), ours)


@pytest.fixture(scope="module")
def lit_checkpoint(tmp_path_factory, sp_tokenizer_dir):
    """Tiny model (intermediate size 88: the MLP down projection's rows do not fill 32-value blocks)."""
    folder = tmp_path_factory.mktemp("gguf") / "lit"
    model = random_model(tiny_config(vocab_size=320), seed=0)
    save_lit_checkpoint(folder, model.state_dict(), model.config, tokenizer_dir=sp_tokenizer_dir)
    return folder


def expected_tensors(state_dict, config):
    """Our weights under llama.cpp names, q/k rows interleaved, built here independently of the converter."""
    c, out = config, {}
    out["token_embd.weight"] = state_dict["transformer.wte.weight"]
    for i in range(c.n_layer):
        q, k, v = state_dict[f"transformer.h.{i}.attn.qkv.weight"].split(
            [c.n_head * c.head_size, c.n_query_groups * c.head_size, c.n_query_groups * c.head_size]
        )
        half = c.head_size // 2
        interleave = lambda w, n: torch.stack([w.view(n, 2, half, -1)[:, 0], w.view(n, 2, half, -1)[:, 1]], 2).reshape(
            w.shape
        )  # noqa: E731
        out |= {
            f"blk.{i}.attn_q.weight": interleave(q, c.n_head),
            f"blk.{i}.attn_k.weight": interleave(k, c.n_query_groups),
            f"blk.{i}.attn_v.weight": v,
        }
        for ours, theirs in [
            ("norm_1", "attn_norm"),
            ("attn.proj", "attn_output"),
            ("norm_2", "ffn_norm"),
            ("mlp.fc_gate", "ffn_gate"),
            ("mlp.fc_up", "ffn_up"),
            ("mlp.proj", "ffn_down"),
        ]:
            out[f"blk.{i}.{theirs}.weight"] = state_dict[f"transformer.h.{i}.{ours}.weight"]
    out["output_norm.weight"] = state_dict["transformer.ln_f.weight"]
    out["output.weight"] = state_dict["lm_head.weight"]
    return out


def field(reader, key):
    return reader.fields[key].contents()


def test_f16_file_holds_every_tensor_and_the_tokenizer(lit_checkpoint, tmp_path):
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    from lit_gpt.checkpoint import load_lit_checkpoint

    path = gguf_export.write_gguf(lit_checkpoint, tmp_path / "model.gguf", "f16")
    reader = gguf.GGUFReader(path)
    state_dict, c = load_lit_checkpoint(lit_checkpoint)

    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_F16
    metadata = {
        "context_length": c.block_size,
        "embedding_length": c.n_embd,
        "block_count": c.n_layer,
        "feed_forward_length": c.intermediate_size,
        "attention.head_count": c.n_head,
        "attention.head_count_kv": c.n_query_groups,
        "rope.dimension_count": c.head_size,
        "rope.freq_base": c.rope_base,
        "vocab_size": 320,
    }
    for key, value in metadata.items():
        assert field(reader, f"llama.{key}") == value, key
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(c.norm_eps)
    assert "llama.rope.scaling.type" not in reader.fields

    proto = sentencepiece_model_pb2.ModelProto.FromString((lit_checkpoint / "tokenizer.model").read_bytes())
    processor = sentencepiece.SentencePieceProcessor(model_file=str(lit_checkpoint / "tokenizer.model"))
    assert field(reader, "tokenizer.ggml.model") == "llama"
    assert field(reader, "tokenizer.ggml.tokens") == [p.piece for p in proto.pieces]
    assert field(reader, "tokenizer.ggml.scores") == pytest.approx([p.score for p in proto.pieces])
    T = gguf.TokenType
    expected_types = [
        T.BYTE
        if processor.is_byte(i)
        else T.CONTROL
        if processor.is_control(i)
        else T.UNKNOWN
        if processor.is_unknown(i)
        else T.UNUSED
        if processor.is_unused(i)
        else T.NORMAL
        for i in range(processor.vocab_size())
    ]
    assert field(reader, "tokenizer.ggml.token_type") == expected_types
    assert expected_types.count(T.BYTE) == 256 and expected_types.count(T.CONTROL) == 2
    assert (
        field(reader, "tokenizer.ggml.bos_token_id"),
        field(reader, "tokenizer.ggml.eos_token_id"),
        field(reader, "tokenizer.ggml.unknown_token_id"),
    ) == (processor.bos_id(), processor.eos_id(), processor.unk_id())
    assert field(reader, "tokenizer.ggml.add_bos_token") is True

    expected = expected_tensors(state_dict, c)
    stored = {t.name: t for t in reader.tensors}
    assert len(reader.tensors) == len(expected) and set(stored) == set(expected)
    for name, tensor in expected.items():
        t = stored[name]
        assert tuple(t.shape) == tuple(reversed(tensor.shape)), name  # ggml lists dims innermost first
        if tensor.dim() == 1:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            np.testing.assert_array_equal(t.data, tensor.numpy())
        else:
            assert t.tensor_type == gguf.GGMLQuantizationType.F16, name
            np.testing.assert_array_equal(t.data, tensor.numpy().astype(np.float16), err_msg=name)


@pytest.mark.parametrize("outtype, qtype, step", [("q8_0", "Q8_0", 1 / 127), ("q4_0", "Q4_0", 1 / 8)])
def test_quantised_files_dequantise_close_to_our_weights(lit_checkpoint, tmp_path, outtype, qtype, step):
    """Each 32-value block keeps its values within one quantisation step (block max times `step`);
    norms stay f32 and rows that do not fill whole blocks (ffn_down, 88 long) stay f16."""
    from lit_gpt.checkpoint import load_lit_checkpoint

    if outtype == "q4_0":  # once through the command line
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run(
            [
                sys.executable,
                str(REPO / "scripts" / "convert_to_gguf.py"),
                "--checkpoint",
                str(lit_checkpoint),
                "--output",
                str(tmp_path / "model.gguf"),
                "--outtype",
                outtype,
            ],
            check=True,
            env=env,
            timeout=120,
        )
        path = tmp_path / "model.gguf"
    else:
        path = gguf_export.write_gguf(lit_checkpoint, tmp_path / "model.gguf", outtype)
    reader = gguf.GGUFReader(path)
    assert field(reader, "general.file_type") == getattr(gguf.LlamaFileType, f"MOSTLY_{qtype}")
    assert field(reader, "general.quantization_version") == gguf.GGML_QUANT_VERSION
    expected = expected_tensors(*load_lit_checkpoint(lit_checkpoint))
    for t in reader.tensors:
        ours = expected[t.name].numpy()
        if ours.ndim == 1:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
        elif t.name.endswith("ffn_down.weight"):
            assert t.tensor_type == gguf.GGMLQuantizationType.F16
        else:
            assert t.tensor_type == getattr(gguf.GGMLQuantizationType, qtype), t.name
            restored = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ours.shape)
            blocks, error = ours.reshape(-1, 32), np.abs(restored - ours).reshape(-1, 32)
            bound = np.abs(blocks).max(1, keepdims=True) * step * 1.01 + 1e-6  # 1%: the f16 block scale
            assert (error <= bound).all(), t.name
            assert error.mean() > 0  # it really is quantised


def test_llama_cpp_layout_read_back_by_transformers_gives_our_logits(lit_checkpoint, tmp_path):
    """transformers' GGUF loader undoes llama.cpp's q/k row order on its own: our f32 file must come back
    as the same model, and its tokenizer as ours."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from lit_gpt.checkpoint import load_lit_checkpoint, model_from_state_dict
    from lit_gpt.tokenizer import Tokenizer

    gguf_export.write_gguf(lit_checkpoint, tmp_path / "model.gguf", "f32")
    hf = LlamaForCausalLM.from_pretrained(tmp_path, gguf_file="model.gguf", dtype=torch.float32).eval()
    ours = model_from_state_dict(*load_lit_checkpoint(lit_checkpoint)).eval()
    ids = torch.randint(0, 320, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), rtol=1e-5, atol=1e-5)
    text = "the model learns café naïve 🙂"
    hf_tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file="model.gguf")
    assert hf_tokenizer(text).input_ids == Tokenizer(lit_checkpoint).encode(text, bos=True)


def test_a_write_that_fails_midway_leaves_nothing_at_the_output(lit_checkpoint, tmp_path, monkeypatch):
    """A failure after some tensors were written (here the encoder; a full disk, a kill) left a truncated
    file at the output path: now nothing, or the earlier file there as it was, and no temporary file."""
    real_encode, calls = gguf_export.encode, []

    def fails_on_the_fifth_tensor(*args):
        calls.append(1)
        if len(calls) == 5:
            raise OSError("simulated write error")
        return real_encode(*args)

    monkeypatch.setattr(gguf_export, "encode", fails_on_the_fifth_tensor)
    output = tmp_path / "out" / "model.gguf"
    with pytest.raises(OSError, match="simulated"):
        gguf_export.write_gguf(lit_checkpoint, output, "f16")
    assert len(calls) == 5 and list(output.parent.iterdir()) == []
    output.write_bytes(b"an earlier export")
    calls.clear()
    with pytest.raises(OSError, match="simulated"):
        gguf_export.write_gguf(lit_checkpoint, output, "f16")
    assert list(output.parent.iterdir()) == [output] and output.read_bytes() == b"an earlier export"


def test_hf_folder_padded_vocab_and_condensed_rope(tmp_path, sp_tokenizer_dir):
    """A Hugging Face folder gives the same file as the lit checkpoint; embedding rows past the
    tokenizer are dropped; a condense ratio becomes linear RoPE scaling."""
    model = random_model(tiny_config(vocab_size=330, rope_condense_ratio=4.0), seed=1)  # padded to 384 rows
    save_lit_checkpoint(tmp_path / "lit", model.state_dict(), model.config, tokenizer_dir=sp_tokenizer_dir)
    save_hf_checkpoint(tmp_path / "hf", model.state_dict(), model.config, tokenizer_dir=sp_tokenizer_dir)
    readers = [
        gguf.GGUFReader(gguf_export.write_gguf(tmp_path / src, tmp_path / f"{src}.gguf", "f16", name="m"))
        for src in ("lit", "hf")
    ]
    for reader in readers:
        assert field(reader, "llama.vocab_size") == 320
        assert field(reader, "llama.rope.scaling.type") == "linear"
        assert field(reader, "llama.rope.scaling.factor") == 4.0
    lit_tensors, hf_tensors = ({t.name: t for t in r.tensors} for r in readers)
    assert lit_tensors["token_embd.weight"].data.shape == (320, 32)
    assert lit_tensors["output.weight"].data.shape == (320, 32)
    np.testing.assert_array_equal(
        lit_tensors["output.weight"].data, model.lm_head.weight[:320].detach().numpy().astype(np.float16)
    )
    for name, t in lit_tensors.items():
        np.testing.assert_array_equal(t.data, hf_tensors[name].data, err_msg=name)

    (tmp_path / "bare").mkdir()
    save_lit_checkpoint(tmp_path / "bare", model.state_dict(), model.config)
    with pytest.raises(FileNotFoundError, match="tokenizer.model"):
        gguf_export.write_gguf(tmp_path / "bare", tmp_path / "bare.gguf")


def byte_level_bpe_dir(folder: Path, template: str) -> Path:
    """A GPT-2 style byte-level BPE tokenizer.json (bos <s> and eos </s> as special added tokens) and a
    tokenizer_config.json with a chat template."""
    import json

    from model_helpers import SAMPLE_LINES
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tokenizer = HFTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(SAMPLE_LINES, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "chat_template": template,
                "tokenizer_class": "PreTrainedTokenizerFast",
            }
        )
    )
    return folder


def test_byte_level_bpe_vocabulary_and_chat_template_read_back(tmp_path):
    import json

    from lit_gpt.sft.templates import TEMPLATES
    from lit_gpt.tokenizer import Tokenizer

    template = TEMPLATES["chatml"].jinja
    tokenizer_dir = byte_level_bpe_dir(tmp_path / "tok", template)
    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    save_lit_checkpoint(
        tmp_path / "ckpt",
        random_model(tiny_config(vocab_size=400)).state_dict(),
        tiny_config(vocab_size=400),
        tokenizer_dir=tokenizer_dir,
    )
    path = gguf_export.write_gguf(tmp_path / "ckpt", tmp_path / "bpe.gguf", "f16")
    reader = gguf.GGUFReader(path)
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.chat_template") == template
    vocab = {**spec["model"]["vocab"], **{t["content"]: t["id"] for t in spec["added_tokens"]}}
    assert field(reader, "tokenizer.ggml.tokens") == sorted(vocab, key=vocab.get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    assert field(reader, "tokenizer.ggml.merges") == merges and len(merges) > 100
    ours = Tokenizer(tokenizer_dir)
    assert (field(reader, "tokenizer.ggml.bos_token_id"), field(reader, "tokenizer.ggml.eos_token_id")) == (
        ours.bos_id,
        ours.eos_id,
    )
    types = field(reader, "tokenizer.ggml.token_type")
    assert types[ours.bos_id] == gguf.TokenType.CONTROL and types[vocab["a"]] == gguf.TokenType.NORMAL

    # transformers' GGUF loader rebuilds the tokenizer from these fields alone: it must tokenize as ours
    from transformers import AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file="bpe.gguf")
    text = "the model learns café naïve tokens 🙂"
    assert hf_tokenizer(text, add_special_tokens=False).input_ids == ours.encode(text)
    spec["model"]["type"] = "Unigram"
    (tmp_path / "unigram.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="only BPE"):
        gguf_export.add_byte_level_bpe_vocab(
            gguf.GGUFWriter(tmp_path / "bad.gguf", "llama"), tmp_path / "unigram.json", {}
        )


@pytest.mark.parametrize("outtype", ["q4_k_m", "q6_k"])
def test_k_quant_files_read_back_with_their_types_and_shapes(tmp_path, sp_tokenizer_dir, outtype):
    """Rows of 256 (n_embd) fill K-quant super-blocks; ffn_down's rows of 352 do not and fall back to
    Q8_0. In a 2-layer q4_k_m file only output and token_embd take Q6_K (no layer is in the first or
    last eighth, none is a third one). Every matrix decodes close to our weights (relative RMS error
    within the bounds measured in tests/test_gguf_quants.py for Gaussian weights)."""
    from lit_gpt.checkpoint import load_lit_checkpoint

    config = tiny_config(n_embd=256, intermediate_size=352, vocab_size=320)
    save_lit_checkpoint(
        tmp_path / "ckpt", random_model(config, seed=1).state_dict(), config, tokenizer_dir=sp_tokenizer_dir
    )
    path = gguf_export.write_gguf(tmp_path / "ckpt", tmp_path / "model.gguf", outtype)
    reader = gguf.GGUFReader(path)
    Q = gguf.GGMLQuantizationType
    assert (
        field(reader, "general.file_type")
        == {"q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M, "q6_k": gguf.LlamaFileType.MOSTLY_Q6_K}[outtype]
    )
    assert field(reader, "general.quantization_version") == gguf.GGML_QUANT_VERSION
    expected = expected_tensors(*load_lit_checkpoint(tmp_path / "ckpt"))
    assert {t.name for t in reader.tensors} == set(expected)
    bound = {Q.Q4_K: 0.080, Q.Q6_K: 0.021, Q.Q8_0: 0.006}
    seen = set()
    for t in reader.tensors:
        ours = expected[t.name].numpy()
        assert tuple(t.shape) == tuple(reversed(ours.shape)), t.name
        if ours.ndim == 1:
            want = Q.F32
        elif t.name.endswith("ffn_down.weight"):
            want = Q.Q8_0
        elif outtype == "q6_k" or t.name in ("output.weight", "token_embd.weight"):
            want = Q.Q6_K
        else:
            want = Q.Q4_K
        assert t.tensor_type == want, t.name
        seen.add(want)
        if want != Q.F32:
            restored = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ours.shape)
            error = np.linalg.norm(restored - ours) / np.linalg.norm(ours)
            assert 0 < error < bound[want], (t.name, error)
    assert seen == ({Q.F32, Q.Q4_K, Q.Q6_K, Q.Q8_0} if outtype == "q4_k_m" else {Q.F32, Q.Q6_K, Q.Q8_0})


@pytest.mark.llamacpp
@pytest.mark.parametrize("outtype", ["q6_k", "q4_k_m"])
def test_llama_cpp_runs_k_quant_files_as_their_dequantised_weights(tmp_path, sp_tokenizer_dir, outtype):
    """llama.cpp itself (llama-cpp-python, not a dependency; `pytest -m llamacpp` where it is installed) on a
    K-quant file: its logits over a prompt equal those of the file's own weights, dequantised by the
    gguf package and run by transformers, within llama.cpp's rounding of the activations to 8 bits
    (0.4-0.8% on the trained demo model, benchmarks/RESULTS.md; 2% on these random weights): llama.cpp
    reads our bytes as the gguf package does, whose decoders tests/test_gguf_quants.py checks our
    encoders against. Against our unquantised weights the difference is the quantisation's own."""
    pytest.importorskip("llama_cpp")
    from llama_cpp import Llama
    from transformers import LlamaForCausalLM

    from lit_gpt.checkpoint import load_lit_checkpoint, model_from_state_dict

    config = tiny_config(n_embd=256, intermediate_size=352, vocab_size=320)
    model = random_model(config, seed=2)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(0.25)  # logits of a usual size (std ~0.05 weights for rows of 256)
    save_lit_checkpoint(tmp_path / "ckpt", model.state_dict(), config, tokenizer_dir=sp_tokenizer_dir)
    path = gguf_export.write_gguf(tmp_path / "ckpt", tmp_path / "model.gguf", outtype)
    ids = [1] + torch.randint(3, 320, (15,), generator=torch.Generator().manual_seed(0)).tolist()

    llm = Llama(model_path=str(path), n_ctx=32, n_threads=2, logits_all=True, verbose=False)
    llm.eval(ids)
    theirs = torch.tensor(np.array(llm.scores[: len(ids)]), dtype=torch.float32)
    hf = LlamaForCausalLM.from_pretrained(tmp_path, gguf_file="model.gguf", dtype=torch.float32).eval()
    ours = model_from_state_dict(*load_lit_checkpoint(tmp_path / "ckpt")).eval()
    with torch.no_grad():
        file_weights = hf(torch.tensor([ids])).logits[0]
        unquantised = ours(torch.tensor([ids]))[0]
    relative = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    # measured: llama.cpp vs the file's weights 2.0% (both types), the file's weights vs ours 6.3% (q6_k),
    # 17.5% (q4_k_m): random weights carry the rounding through every layer more than trained ones
    assert relative(theirs, file_weights) < 0.05
    quantisation = relative(file_weights, unquantised)
    assert 0.002 < quantisation < {"q6_k": 0.12, "q4_k_m": 0.3}[outtype]
    assert relative(theirs, unquantised) < quantisation + 0.05
