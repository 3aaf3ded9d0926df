"""Writing a checkpoint as a GGUF file for llama.cpp (architecture `llama`), tokenizer included.

The checkpoint is a lit checkpoint (folder, `.pth` file or pretraining DCP folder, read by
`load_lit_checkpoint`), a run folder (its newest whole checkpoint) or a Hugging Face Llama folder. The
tokenizer is a SentencePiece `tokenizer.model` or a byte-level BPE `tokenizer.json` (GPT-2 style), from
the checkpoint's folder or `tokenizer_dir`. The chat template the checkpoint was fine-tuned with (every
fine-tuning checkpoint and LoRA merge carries it; else the `chat_template` of the tokenizer folder's
`tokenizer_config.json`) goes into `tokenizer.chat_template`, which llama.cpp's chat mode uses.

Layout. GGUF stores a matrix of PyTorch shape (out, in) as ggml dims (in, out): the same bytes, so
weights are written as they are, except the query and key rows. Our fused qkv weight is
[q heads | k heads | v heads] in the rotate-half RoPE convention of Hugging Face (dimension i turns
with i + head_size/2); llama.cpp's `llama` architecture rotates adjacent pairs (2i, 2i+1), so within
each head the rows are interleaved: row i goes to 2i and row i + head_size/2 to 2i + 1. Query and key
then rotate the same way up to one permutation of each head's dimensions, which their dot product
does not see. The embedding and head keep only the tokenizer's rows (padding rows are no tokens).

Types (`outtype`; the rule is `tensor_type` in lit_gpt/gguf_quants.py). Norm weights (1-D) stay f32
in every file, as llama.cpp expects. f32, f16, q8_0, q4_0: every matrix takes that type. K-quant
files (our encoders in lit_gpt/gguf_quants.py; the gguf package only decodes K-quants):
q4_k_m: Q4_K, with Q6_K for output and token_embd, and for attn_v and ffn_down in the first and last
eighth of the layers and every third layer between; q5_k_m: the same with Q5_K; q6_k: Q6_K throughout.
Q8_0/Q4_0 pack rows in blocks of 32 values, K-quants in super-blocks of 256: a matrix whose rows do
not fill them falls back to Q8_0 (rows a multiple of 32), else to f16.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf import MODEL_TENSOR, TENSOR_NAMES
from gguf import GGMLQuantizationType as QType

from lit_gpt.checkpoint import _write_atomically, checkpoint_folder, has_tokenizer, load_any_checkpoint
from lit_gpt.config import Config
from lit_gpt.gguf_quants import FILE_TYPES, encode, tensor_type
from lit_gpt.sft.templates import chat_template_text
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.training.checkpointing import find_checkpoint


def interleave_rope_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a query or key projection from rotate-half to adjacent-pair RoPE order, per head:
    (head, half, i) -> (head, i, half), so row i of a head lands at 2i and row i + head_size/2 at 2i + 1."""
    rows = weight.shape[0]
    head_size = rows // n_heads
    return weight.reshape(n_heads, 2, head_size // 2, -1).transpose(1, 2).reshape(rows, -1)


def gguf_name(tensor: MODEL_TENSOR, block: int | None = None) -> str:
    """llama.cpp's tensor name, from the gguf package's own table (e.g. blk.3.attn_q.weight)."""
    base = TENSOR_NAMES[tensor]
    return (base.format(bid=block) if block is not None else base) + ".weight"


def gguf_tensors(
    state_dict: dict[str, torch.Tensor], config: Config, n_vocab: int
) -> Iterator[tuple[str, torch.Tensor]]:
    """(llama.cpp name, tensor in PyTorch layout) for every weight, one at a time (nothing is held twice)."""
    c = config
    yield gguf_name(MODEL_TENSOR.TOKEN_EMBD), state_dict["transformer.wte.weight"][:n_vocab]
    q_rows, kv_rows = c.n_head * c.head_size, c.n_query_groups * c.head_size
    for i in range(c.n_layer):
        layer = f"transformer.h.{i}."
        q, k, v = state_dict[layer + "attn.qkv.weight"].split((q_rows, kv_rows, kv_rows))
        yield gguf_name(MODEL_TENSOR.ATTN_NORM, i), state_dict[layer + "norm_1.weight"]
        yield gguf_name(MODEL_TENSOR.ATTN_Q, i), interleave_rope_rows(q, c.n_head)
        yield gguf_name(MODEL_TENSOR.ATTN_K, i), interleave_rope_rows(k, c.n_query_groups)
        yield gguf_name(MODEL_TENSOR.ATTN_V, i), v
        yield gguf_name(MODEL_TENSOR.ATTN_OUT, i), state_dict[layer + "attn.proj.weight"]
        yield gguf_name(MODEL_TENSOR.FFN_NORM, i), state_dict[layer + "norm_2.weight"]
        yield gguf_name(MODEL_TENSOR.FFN_GATE, i), state_dict[layer + "mlp.fc_gate.weight"]
        yield gguf_name(MODEL_TENSOR.FFN_UP, i), state_dict[layer + "mlp.fc_up.weight"]
        yield gguf_name(MODEL_TENSOR.FFN_DOWN, i), state_dict[layer + "mlp.proj.weight"]
    yield gguf_name(MODEL_TENSOR.OUTPUT_NORM), state_dict["transformer.ln_f.weight"]
    yield gguf_name(MODEL_TENSOR.OUTPUT), state_dict["lm_head.weight"][:n_vocab]


# --- tokenizer -------------------------------------------------------------------------------------
def add_sentencepiece_vocab(writer: gguf.GGUFWriter, tokenizer_model: Path) -> int:
    """Tokens, scores, types and special ids of a SentencePiece model; returns the vocabulary size."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto.FromString(tokenizer_model.read_bytes())
    piece_type = proto.SentencePiece.Type
    types = {
        piece_type.NORMAL: gguf.TokenType.NORMAL,
        piece_type.UNKNOWN: gguf.TokenType.UNKNOWN,
        piece_type.CONTROL: gguf.TokenType.CONTROL,
        piece_type.USER_DEFINED: gguf.TokenType.USER_DEFINED,
        piece_type.UNUSED: gguf.TokenType.UNUSED,
        piece_type.BYTE: gguf.TokenType.BYTE,
    }
    writer.add_tokenizer_model("llama")  # llama.cpp's name for a SentencePiece (SPM) vocabulary
    writer.add_token_list([p.piece.encode("utf-8") for p in proto.pieces])
    writer.add_token_scores([p.score for p in proto.pieces])
    writer.add_token_types([types[p.type] for p in proto.pieces])
    trainer = proto.trainer_spec
    for token_id, add in (
        (trainer.bos_id, writer.add_bos_token_id),
        (trainer.eos_id, writer.add_eos_token_id),
        (trainer.unk_id, writer.add_unk_token_id),
        (trainer.pad_id, writer.add_pad_token_id),
    ):
        if token_id >= 0:  # -1: the model has no such token
            add(token_id)
    writer.add_add_bos_token(trainer.bos_id >= 0)  # Llama prompts start with BOS
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    return len(proto.pieces)


def add_byte_level_bpe_vocab(writer: gguf.GGUFWriter, tokenizer_json: Path, special_ids: dict[str, int | None]) -> int:
    """Tokens, merges, types and special ids of a byte-level BPE `tokenizer.json` (GPT-2 style, as
    Hugging Face `tokenizers` writes it); returns the vocabulary size."""
    spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{tokenizer_json}: model type {model.get('type')!r}; only BPE vocabularies convert")
    if "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")) + json.dumps(spec.get("decoder")):
        raise ValueError(
            f"{tokenizer_json}: not a byte-level BPE (no ByteLevel pre-tokenizer or decoder); "
            f"llama.cpp reads a SentencePiece-style BPE from tokenizer.model instead"
        )
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    for content, token in added.items():
        vocab[content] = token["id"]
    size = max(vocab.values()) + 1
    by_id: dict[int, str] = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(size):
        token = by_id.get(i)
        if token is None:  # a hole in the ids: a placeholder llama.cpp never produces
            tokens.append(f"[PAD{i}]".encode())
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(token.encode("utf-8"))
        info = added.get(token)
        types.append(
            gguf.TokenType.NORMAL
            if info is None
            else gguf.TokenType.CONTROL
            if info.get("special")
            else gguf.TokenType.USER_DEFINED
        )
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for a byte-level BPE vocabulary
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for kind, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id)):
        if special_ids.get(kind) is not None:
            add(special_ids[kind])
    writer.add_add_bos_token(special_ids.get("bos") is not None)
    writer.add_add_eos_token(False)
    return size


# --- conversion ------------------------------------------------------------------------------------
def write_gguf(
    checkpoint: str | Path,
    output: str | Path,
    outtype: str = "f16",
    tokenizer_dir: str | Path | None = None,
    name: str | None = None,
) -> Path:
    """Write `output` from `checkpoint` (a lit checkpoint, a run folder: its newest whole checkpoint, or a Hugging
    Face folder) as `outtype` (a key of FILE_TYPES), with the tokenizer of `tokenizer_dir` (default: the
    checkpoint's folder) and `name` as general.name (default: the config's name or the folder's)."""
    checkpoint, output = find_checkpoint(Path(checkpoint)), Path(output)  # a run folder: its newest
    folder = checkpoint_folder(checkpoint)
    tokenizer_folder = Path(tokenizer_dir or folder)
    tokenizer_model = tokenizer_folder / "tokenizer.model"
    if not has_tokenizer(tokenizer_folder):
        raise FileNotFoundError(
            f"{tokenizer_folder}: no tokenizer.model (SentencePiece) or tokenizer.json (byte-level "
            f"BPE): the GGUF file needs the tokenizer (pass --tokenizer_dir)"
        )
    if outtype not in FILE_TYPES:
        raise ValueError(f"outtype {outtype!r} is not one of {', '.join(FILE_TYPES)}")
    qtype, _, file_type = FILE_TYPES[outtype]
    state_dict, config = load_any_checkpoint(checkpoint)
    c = config

    writer = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])  # the file is named in write_file
    writer.add_name(name or c.name or folder.name)
    writer.add_file_type(file_type)
    if qtype not in (QType.F32, QType.F16):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if tokenizer_model.is_file():
        n_vocab = add_sentencepiece_vocab(writer, tokenizer_model)
    else:
        tokenizer = Tokenizer(tokenizer_folder)
        n_vocab = add_byte_level_bpe_vocab(
            writer, tokenizer_folder / "tokenizer.json", {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id}
        )
    # the checkpoint's own template (the one it was fine-tuned with) wins over a --tokenizer_dir's
    template = chat_template_text(folder) or chat_template_text(tokenizer_folder)
    if template is not None:
        writer.add_chat_template(template)  # tokenizer.chat_template: llama.cpp's chat mode formats with it
    if n_vocab > c.padded_vocab_size:
        raise ValueError(
            f"{tokenizer_folder} has {n_vocab} tokens but the model's embedding only {c.padded_vocab_size} rows"
        )
    writer.add_vocab_size(n_vocab)
    writer.add_context_length(c.block_size)
    writer.add_embedding_length(c.n_embd)
    writer.add_block_count(c.n_layer)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.n_head)
    writer.add_head_count_kv(c.n_query_groups)
    writer.add_rope_dimension_count(c.head_size)  # RoPE turns the whole head
    writer.add_rope_freq_base(c.rope_base)
    if c.rope_condense_ratio != 1:
        # positions divided by the ratio = linear RoPE scaling with this factor
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(c.rope_condense_ratio)
    writer.add_layer_norm_rms_eps(c.norm_eps)

    # Two passes over the weights, one tensor in memory at a time: the header needs every tensor's
    # type and size first, then the data follows in the same order.
    for tensor_name, tensor in gguf_tensors(state_dict, c, n_vocab):
        stored = tensor_type(tensor_name, tuple(tensor.shape), outtype, c.n_layer)
        block_size, block_bytes = gguf.GGML_QUANT_SIZES[stored]  # (1, 4) for f32, (1, 2) for f16
        # the logical shape; raw_dtype, not the numpy dtype, names the stored type
        writer.add_tensor_info(
            tensor_name,
            tuple(tensor.shape),
            np.dtype(np.float32),
            tensor.numel() // block_size * block_bytes,
            raw_dtype=stored,
        )

    def write_file(path: Path) -> None:
        try:
            writer.write_header_to_file(path)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for tensor_name, tensor in gguf_tensors(state_dict, c, n_vocab):
                data = tensor.detach().to(torch.float32).contiguous().numpy()
                writer.write_tensor_data(
                    encode(data, tensor_type(tensor_name, tuple(tensor.shape), outtype, c.n_layer))
                )
        finally:
            writer.close()

    output.parent.mkdir(parents=True, exist_ok=True)
    # a failure midway leaves nothing at `output` (an earlier file there stays as it was)
    _write_atomically(output, write_file)
    print(f"wrote {output} ({outtype}, {c.n_layer} layers, vocab {n_vocab}, {output.stat().st_size / 2**20:.1f} MiB)")
    return output
