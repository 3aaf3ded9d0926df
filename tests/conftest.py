import os

# Triton kernels run on the CPU only through its interpreter, which must be chosen before any kernel
# is decorated; set it before anything imports triton.
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:
    pass

# Fixtures used by test files in several folders. Their helpers (paths, constants, functions tests call
# directly) stay in the *_helpers.py modules.
import importlib.machinery  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402
from data_helpers import SAMPLE  # noqa: E402
from eval_helpers import QUESTIONS, TASK  # noqa: E402
from model_helpers import SAMPLE_LINES, segment_attention  # noqa: E402

from lit_gpt.cli.prepare_slimpajama import prepare_slimpajama  # noqa: E402
from lit_gpt.cli.prepare_starcoder import prepare_starcoder  # noqa: E402
from lit_gpt.data.tokenizer_training import train_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def sample_tokenizer(tmp_path_factory) -> Path:
    """A small SentencePiece tokenizer trained on the sample corpus."""
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(
        out_dir=out,
        slimpajama_dir=SAMPLE / "slimpajama" / "train",
        starcoder_dir=SAMPLE / "starcoder",
        vocab_size=1024,
        max_chars=1_000_000,
    )
    return out


@pytest.fixture(scope="session")
def prepared_sample(tmp_path_factory, sample_tokenizer) -> Path:
    """The sample corpus prepared into small shards (SlimPajama train + Starcoder) of whole samples for
    block size 32, the `model_config` fixture's."""
    out = tmp_path_factory.mktemp("packed")
    for prepare_source, folder in ((prepare_slimpajama, "slimpajama"), (prepare_starcoder, "starcoder")):
        prepare_source(SAMPLE / folder, sample_tokenizer, out, chunk_size=33 * 3000, block_size=32, num_processes=1)
    return out


@pytest.fixture(scope="session")
def llama2_shaped_tokenizer(tmp_path_factory) -> Path:
    """A SentencePiece tokenizer of the Llama 2 tokenizer's shape (32,000 pieces, byte fallback at
    ids 3-258, split digits, whitespace-run pieces tied at score -1e9), trained on the sample corpus."""
    from lit_gpt.data.tokenizer_training import llama2_shaped_model, training_text

    out = tmp_path_factory.mktemp("llama2_shaped")
    texts = training_text(
        SAMPLE / "slimpajama" / "train", SAMPLE / "starcoder", max_chars=1_000_000, max_piece_chars=2000
    )
    (out / "tokenizer.model").write_bytes(llama2_shaped_model(texts))
    (out / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    return out


@pytest.fixture(scope="session")
def sp_tokenizer_dir(tmp_path_factory) -> Path:
    """A folder with a BPE SentencePiece tokenizer.model of 320 pieces (unk 0, bos 1, eos 2), trained like
    Llama's: no normalisation, whitespace kept as it is, unseen characters spelled as bytes (256 pieces)."""
    import sentencepiece

    folder = tmp_path_factory.mktemp("sp_tokenizer")
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SAMPLE_LINES),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=320,
        byte_fallback=True,
        model_type="bpe",
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    (folder / "tokenizer.vocab").unlink()
    return folder


@pytest.fixture(scope="session")
def task_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tasks")
    with open(folder / "questions.jsonl", "w", encoding="utf-8") as f:
        for question, choices, answer in QUESTIONS:
            f.write(json.dumps({"question": question, "choices": choices, "answer": answer}, ensure_ascii=False) + "\n")
    (folder / f"{TASK}.yaml").write_text(f"""\
task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {folder / "questions.jsonl"}
  cache_dir: {folder / "hf_datasets_cache"}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}?\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
""")
    return folder


@pytest.fixture(scope="session")
def model_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.yaml"
    path.write_text(
        yaml.safe_dump(
            dict(
                name="test_llama",
                n_layer=2,
                n_head=4,
                n_query_groups=2,
                n_embd=64,
                intermediate_size=176,
                vocab_size=1024,
                block_size=32,
                kernels="torch",
            )
        )
    )
    return path


@pytest.fixture
def fake_flash_attn(monkeypatch):
    """A `flash_attn.cute` whose two functions check the contract the model relies on (layouts, int32
    offsets, grouped heads not repeated, called outside any traced graph) and compute with SDPA; it records
    each call."""
    calls = []

    def flash_attn_func(q, k, v, causal=False, **_):
        assert causal and q.dim() == 4 and k.shape[:2] == q.shape[:2] and q.size(2) % k.size(2) == 0
        assert all(t.stride(-1) == 1 for t in (q, k, v))
        assert not torch.compiler.is_compiling(), "the CuTe DSL's kernels cannot be traced"
        calls.append("dense")
        B, T = q.shape[:2]
        flat = [t.reshape(B * T, *t.shape[2:]) for t in (q, k, v)]
        return segment_attention(*flat, list(range(0, B * T + 1, T))).view(q.shape), None

    def flash_attn_varlen_func(q, k, v, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None, causal=False, **kw):
        assert causal and q.dim() == 3 and cu_seqlens_q is cu_seqlens_k and cu_seqlens_q.dtype == torch.int32
        assert int(cu_seqlens_q[-1]) == q.size(0) and kw["max_seqlen_k"] == max_seqlen_q
        assert max(cu_seqlens_q.diff().tolist()) <= max_seqlen_q
        assert not torch.compiler.is_compiling(), "the CuTe DSL's kernels cannot be traced"
        calls.append("varlen")
        return segment_attention(q, k, v, cu_seqlens_q.tolist()), None

    cute = types.ModuleType("flash_attn.cute")
    cute.flash_attn_func, cute.flash_attn_varlen_func = flash_attn_func, flash_attn_varlen_func
    package = types.ModuleType("flash_attn")
    package.cute = cute
    for module in (package, cute):  # what importlib.util.find_spec reads of a module already imported
        module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None)
    monkeypatch.setitem(sys.modules, "flash_attn", package)
    monkeypatch.setitem(sys.modules, "flash_attn.cute", cute)
    return calls
