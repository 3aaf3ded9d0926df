"""Checkpoint files in and out: our own formats and the Hugging Face Llama layout.

Our formats, all read by `load_lit_checkpoint`:

- a lit checkpoint folder: `lit_model.pth` (a state dict in our names) + `model_config.yaml`
  (+ tokenizer files copied alongside);
- a single `.pth` file holding a state dict, or a dict whose "model" entry is one (other entries,
  such as an optimizer state, are ignored);
- a pretraining checkpoint folder written by torch.distributed.checkpoint (it has a `.metadata`
  file) of a state `{"model": ..., "optimizer": ..., ...}`, with `model_config.yaml` beside it.

The Hugging Face side is a `LlamaForCausalLM` folder: `config.json` and `model.safetensors`,
sharded safetensors, or `pytorch_model*.bin`. Our fused attention weight `attn.qkv.weight` holds the
rows of q_proj, k_proj and v_proj one after the other; both sides use rotate-half RoPE, so no row
permutation is needed. Conversion streams one tensor at a time, so a 7B model is never held twice.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import torch

from lit_gpt.config import Config
from lit_gpt.model import GPT
from lit_gpt.safe_load import load_dcp, load_torch_file, read_dcp_metadata
from lit_gpt.sft.templates import chat_template_text
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.training.checkpointing import find_checkpoint

LIT_WEIGHTS = "lit_model.pth"
LIT_CONFIG = "model_config.yaml"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def default_device_and_dtype(
    device: str | torch.device | None, dtype: str | torch.dtype | None
) -> tuple[torch.device, torch.dtype]:
    """`device` None/"auto": CUDA when present; `dtype` None/"auto": bfloat16 on a GPU that has it, else float32."""
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r} is not one of auto, cpu, cuda, cuda:N, ...") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: no CUDA GPU is available here (use cpu or auto)")
    if isinstance(dtype, torch.dtype):
        return device, dtype
    if dtype in (None, "auto"):
        dtype = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return device, DTYPES[dtype]


StateDict = dict[str, torch.Tensor]
PathLike = str | Path

# --- names ----------------------------------------------------------------------------------------
_HF_TOP = {
    "model.embed_tokens.weight": "transformer.wte.weight",
    "model.norm.weight": "transformer.ln_f.weight",
    "lm_head.weight": "lm_head.weight",
}
# within model.layers.{i}. (HF) and transformer.h.{i}. (ours)
_HF_LAYER = {
    "input_layernorm.weight": "norm_1.weight",
    "self_attn.o_proj.weight": "attn.proj.weight",
    "post_attention_layernorm.weight": "norm_2.weight",
    "mlp.gate_proj.weight": "mlp.fc_gate.weight",
    "mlp.up_proj.weight": "mlp.fc_up.weight",
    "mlp.down_proj.weight": "mlp.proj.weight",
}
_HF_QKV = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight")
_LIT_QKV = "attn.qkv.weight"
_LIT_TOP = {v: k for k, v in _HF_TOP.items()}
_LIT_LAYER = {v: k for k, v in _HF_LAYER.items()}
_HF_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)")
_LIT_LAYER_RE = re.compile(r"transformer\.h\.(\d+)\.(.+)")


def hf_to_lit_name(hf_name: str) -> tuple[str, int | None] | None:
    """Our name for a Hugging Face tensor name and, for q/k/v_proj, which part (0, 1, 2) of the fused
    qkv weight it is; None for a name we do not know."""
    if hf_name in _HF_TOP:
        return _HF_TOP[hf_name], None
    match = _HF_LAYER_RE.fullmatch(hf_name)
    if match:
        i, rest = match.groups()
        if rest in _HF_LAYER:
            return f"transformer.h.{i}.{_HF_LAYER[rest]}", None
        if rest in _HF_QKV:
            return f"transformer.h.{i}.{_LIT_QKV}", _HF_QKV.index(rest)
    return None


def lit_to_hf_names(lit_name: str) -> list[str]:
    """The Hugging Face name(s) of one of our tensors: three (q, k, v) for the fused qkv weight."""
    if lit_name in _LIT_TOP:
        return [_LIT_TOP[lit_name]]
    match = _LIT_LAYER_RE.fullmatch(lit_name)
    if match:
        i, rest = match.groups()
        if rest in _LIT_LAYER:
            return [f"model.layers.{i}.{_LIT_LAYER[rest]}"]
        if rest == _LIT_QKV:
            return [f"model.layers.{i}.{part}" for part in _HF_QKV]
    raise ValueError(f"no Hugging Face name for tensor {lit_name!r}")


def _qkv_rows(config: Config) -> tuple[int, int, int]:
    c = config
    return c.n_head * c.head_size, c.n_query_groups * c.head_size, c.n_query_groups * c.head_size


# --- checks ---------------------------------------------------------------------------------------
def expected_shapes(config: Config) -> dict[str, torch.Size]:
    """Every tensor of the model's state dict and its shape, read off a model built on the meta device."""
    with torch.device("meta"):
        model = GPT(replace(config, kernels="torch"))  # the shapes do not depend on the kernels
    return {name: t.shape for name, t in model.state_dict().items()}


def check_state_dict(state_dict: StateDict, config: Config, source: PathLike) -> None:
    """Raise a ValueError naming `source` and the key for an unknown, missing or mis-shaped tensor."""
    expected = expected_shapes(config)
    for key, tensor in state_dict.items():
        if key not in expected:
            raise ValueError(f"{source}: unknown tensor {key!r} (not a parameter of a {config.name or 'Llama'} model)")
        if tensor.shape != expected[key]:
            raise ValueError(
                f"{source}: tensor {key!r} has shape {tuple(tensor.shape)} but the config expects "
                f"{tuple(expected[key])}"
            )
    missing = [key for key in expected if key not in state_dict]
    if missing:
        raise ValueError(f"{source}: {len(missing)} tensor(s) missing, first {missing[:3]}")


# --- small file helpers ---------------------------------------------------------------------------
def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary name in the same folder, then rename: a reader never sees half a file.
    The temporary name keeps the suffix, which some writers use to pick a format."""
    tmp = path.with_name(f".tmp.{path.name}")
    try:
        write(tmp)
        # some writers (safetensors) create private 0600 files: give it the mode any new file gets here
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, obj: dict) -> None:
    _write_atomically(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e


def has_tokenizer(folder: PathLike) -> bool:
    folder = Path(folder)
    return (folder / "tokenizer.model").is_file() or (folder / "tokenizer.json").is_file()


def checkpoint_folder(path: PathLike) -> Path:
    """Where a checkpoint's config and tokenizer files are: the checkpoint folder, or a weights file's folder."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def is_hf_folder(path: PathLike) -> bool:
    """A Hugging Face folder has a config.json; a lit one a model_config.yaml, which wins when both are there."""
    path = Path(path)
    return (path / "config.json").is_file() and not (path / LIT_CONFIG).is_file()


def _copy_tokenizer(tokenizer_dir: PathLike, folder: Path) -> Tokenizer:
    tokenizer = Tokenizer(tokenizer_dir)
    for src in tokenizer.files:
        dst = folder / src.name
        if not dst.exists() or not dst.samefile(src):
            _write_atomically(dst, lambda tmp: shutil.copyfile(src, tmp))
    return tokenizer


# --- lit checkpoints ------------------------------------------------------------------------------
def save_lit_checkpoint(
    folder: PathLike, state_dict: StateDict, config: Config, tokenizer_dir: PathLike | None = None
) -> None:
    """Write a lit checkpoint folder: lit_model.pth, model_config.yaml and the tokenizer's files."""
    folder = Path(folder)
    check_state_dict(state_dict, config, source="the state dict to save")
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(folder / LIT_WEIGHTS, lambda tmp: torch.save(state_dict, tmp))
    _write_atomically(folder / LIT_CONFIG, config.save)
    if tokenizer_dir is not None:
        _copy_tokenizer(tokenizer_dir, folder)


def load_lit_checkpoint(path: PathLike, config: Config | None = None) -> tuple[StateDict, Config]:
    """The model state dict and config of a lit checkpoint folder, a `.pth` file, or a
    torch.distributed.checkpoint folder. Without `config`, model_config.yaml beside the weights is read."""
    path = Path(path)
    if path.is_dir():
        folder = path
        weights = path if (path / ".metadata").is_file() else path / LIT_WEIGHTS
        if not weights.exists():
            raise FileNotFoundError(
                f"{path}: no checkpoint found; looked for {LIT_WEIGHTS} and a torch.distributed.checkpoint "
                f".metadata file"
            )
    elif path.is_file():
        folder, weights = path.parent, path
    else:
        raise FileNotFoundError(f"checkpoint {path} not found")
    if config is None:
        config = Config.from_file(folder / LIT_CONFIG)
    state_dict = _load_dcp(weights, config) if weights.is_dir() else _load_pth(weights)
    check_state_dict(state_dict, config, source=weights)
    return state_dict, config


def _load_pth(path: Path) -> StateDict:
    obj = load_torch_file(path, what="weights file")
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict or a dict with a 'model' state dict, got {type(obj).__name__}")
    # a state dict taken from a torch.compile'd module prefixes every name
    return {key.removeprefix("_orig_mod."): tensor for key, tensor in obj.items()}


def _load_dcp(folder: Path, config: Config) -> StateDict:
    """Load only the model tensors of a torch.distributed.checkpoint folder, in one process.

    The shapes come from the model built on the meta device; the dtypes from the checkpoint, so a
    bf16 checkpoint stays bf16. The model may sit under any prefix ("model." for a state
    {"model": ..., "optimizer": ...}); it is found from the metadata."""
    stored = read_dcp_metadata(folder / ".metadata").state_dict_metadata
    probe = "transformer.wte.weight"
    prefixes = [key[: -len(probe)] for key in stored if key.endswith(probe)]
    if len(prefixes) != 1:
        raise ValueError(
            f"{folder}: expected exactly one model state (a {probe!r} entry) in the checkpoint, found {len(prefixes)}"
        )
    prefix = prefixes[0]
    state_dict = {}
    for name, shape in expected_shapes(config).items():
        meta = stored.get(prefix + name)
        if meta is None or not hasattr(meta, "size"):
            raise ValueError(f"{folder}: tensor {prefix + name!r} missing from the checkpoint")
        if meta.size != shape:
            raise ValueError(
                f"{folder}: tensor {prefix + name!r} has shape {tuple(meta.size)} but the config expects {tuple(shape)}"
            )
        state_dict[name] = torch.empty(shape, dtype=meta.properties.dtype)
    # A flat dict with dotted keys addresses the same entries as the nested {"model": {...}} it was saved from.
    load_dcp({prefix + name: tensor for name, tensor in state_dict.items()}, folder)
    return state_dict


def model_from_state_dict(
    state_dict: StateDict, config: Config, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> GPT:
    """A GPT holding `state_dict`'s tensors (moved to `device`/`dtype`), without a throwaway random init."""
    with torch.device("meta"):
        model = GPT(config)
    model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state_dict.items()}, assign=True)
    model.reset_rope_cache()  # after the weights moved: float32 tables on their device
    return model


# --- Hugging Face config --------------------------------------------------------------------------
def config_from_hf(hf: dict, source: PathLike, name: str = "") -> Config:
    """Our Config for a Hugging Face Llama config.json (`source` names it in errors)."""

    def need(key: str):
        if key not in hf:
            raise ValueError(f"{source}: missing key {key!r}")
        return hf[key]

    if hf.get("model_type") != "llama":
        raise ValueError(f"{source}: model_type {hf.get('model_type')!r} is not 'llama'")
    for key, supported in (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False)):
        if hf.get(key, supported) != supported:
            raise ValueError(f"{source}: {key}={hf[key]!r} is not supported (only {supported!r})")
    n_embd, n_head = need("hidden_size"), need("num_attention_heads")
    if hf.get("head_dim") not in (None, n_embd // n_head):
        raise ValueError(f"{source}: head_dim={hf['head_dim']} differs from hidden_size / num_attention_heads")
    # transformers >= 5 writes rope_parameters (with rope_theta inside); older versions rope_scaling + rope_theta
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "linear"):
        raise ValueError(f"{source}: RoPE type {rope_type!r} is not supported (only default and linear)")
    vocab_size = need("vocab_size")
    try:
        return Config(
            name=name,
            block_size=hf.get("max_position_embeddings", 2048),
            vocab_size=vocab_size,
            # the embedding must keep exactly vocab_size rows
            padding_multiple=64 if vocab_size % 64 == 0 else 1,
            n_layer=need("num_hidden_layers"),
            n_head=n_head,
            n_query_groups=hf.get("num_key_value_heads") or n_head,
            n_embd=n_embd,
            intermediate_size=need("intermediate_size"),
            norm_eps=hf.get("rms_norm_eps", 1e-6),  # transformers' default when absent
            rope_base=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
            rope_condense_ratio=float(rope["factor"]) if rope_type == "linear" else 1.0,
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: {e}") from e


def config_to_hf(config: Config, dtype: torch.dtype, bos_id: int | None = None, eos_id: int | None = None) -> dict:
    """A Hugging Face LlamaForCausalLM config.json for our Config."""
    c = config
    rope = {"rope_type": "default", "rope_theta": c.rope_base}
    if c.rope_condense_ratio != 1:
        rope = {"rope_type": "linear", "factor": c.rope_condense_ratio, "rope_theta": c.rope_base}
    dtype_name = str(dtype).removeprefix("torch.")
    hf = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.padded_vocab_size,
        "hidden_size": c.n_embd,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_query_groups,
        "head_dim": c.head_size,
        "hidden_act": "silu",
        "max_position_embeddings": c.block_size,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_base,
        "rope_parameters": rope,  # what transformers >= 5 reads
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "use_cache": True,
        "dtype": dtype_name,
        "torch_dtype": dtype_name,  # the spelling of transformers < 5
    }
    if c.rope_condense_ratio != 1:
        hf["rope_scaling"] = {"rope_type": "linear", "type": "linear", "factor": c.rope_condense_ratio}  # < 5
    if bos_id is not None:
        hf["bos_token_id"] = bos_id
    if eos_id is not None:
        hf["eos_token_id"] = eos_id
    return hf


# --- Hugging Face weights -------------------------------------------------------------------------
_HF_WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)


def _hf_weight_files(folder: Path) -> list[Path]:
    for name in _HF_WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            if name.endswith(".index.json"):
                weight_map = _read_json(path).get("weight_map")
                if not isinstance(weight_map, dict) or not weight_map:
                    raise ValueError(f"{path}: no 'weight_map' entries")
                return [folder / f for f in sorted(set(weight_map.values()))]
            return [path]
    raise FileNotFoundError(f"{folder}: no weights found; looked for {', '.join(_HF_WEIGHT_FILES)}")


def _iter_hf_tensors(folder: Path) -> Iterator[tuple[Path, str, torch.Tensor]]:
    """(file, name, tensor) for every tensor of the checkpoint, one at a time."""
    from safetensors import safe_open

    for path in _hf_weight_files(folder):
        if not path.is_file():
            raise FileNotFoundError(f"{path} (listed in the weight index) not found")
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    yield path, key, f.get_tensor(key)
        else:
            # mmap: tensors are read from disk when touched, not all at once
            tensors = load_torch_file(path, what="weights file")
            if not isinstance(tensors, dict):
                raise ValueError(f"{path}: expected a dict of tensors, got {type(tensors).__name__}")
            for key in list(tensors):
                yield path, key, tensors.pop(key)


def load_hf_checkpoint(folder: PathLike, dtype: torch.dtype | None = None) -> tuple[StateDict, Config]:
    """Our state dict and Config for a Hugging Face Llama folder, optionally cast to `dtype`.

    Tensors are read one at a time; the q/k/v weights of a layer wait only until all three arrived."""
    folder = Path(folder)
    hf_config = _read_json(folder / "config.json")
    config = config_from_hf(hf_config, source=folder / "config.json", name=folder.name)
    expected = expected_shapes(config)
    qkv_rows = _qkv_rows(config)
    state_dict: StateDict = {}
    pending_qkv: dict[str, list[torch.Tensor | None]] = {}
    for path, key, tensor in _iter_hf_tensors(folder):
        if key.endswith("rotary_emb.inv_freq"):
            continue  # older checkpoints store the RoPE frequencies; we compute them
        mapped = hf_to_lit_name(key)
        if mapped is None or mapped[0] not in expected:
            raise ValueError(f"{path}: unknown tensor {key!r} (not a weight of this Llama config)")
        name, part = mapped
        shape = expected[name] if part is None else torch.Size((qkv_rows[part], config.n_embd))
        if tensor.shape != shape:
            raise ValueError(
                f"{path}: tensor {key!r} has shape {tuple(tensor.shape)} but {folder / 'config.json'} "
                f"implies {tuple(shape)}"
            )
        tensor = tensor.to(dtype) if dtype is not None else tensor
        if part is None:
            state_dict[name] = tensor
            continue
        parts = pending_qkv.setdefault(name, [None, None, None])
        parts[part] = tensor
        if all(p is not None for p in parts):
            state_dict[name] = torch.cat(parts)
            del pending_qkv[name]
    if (
        hf_config.get("tie_word_embeddings")
        and "lm_head.weight" not in state_dict
        and "transformer.wte.weight" in state_dict
    ):
        # our head is never tied: it starts as a copy of the embedding
        state_dict["lm_head.weight"] = state_dict["transformer.wte.weight"].clone()
    missing = [hf for name in expected if name not in state_dict for hf in lit_to_hf_names(name)]
    if missing:
        raise ValueError(f"{folder}: {len(missing)} tensor(s) missing from the weights, first {missing[:3]}")
    return state_dict, config


def load_any_checkpoint(path: PathLike) -> tuple[StateDict, Config]:
    """The state dict and config of a Hugging Face folder or of any lit checkpoint `load_lit_checkpoint` reads."""
    return load_hf_checkpoint(path) if is_hf_folder(path) else load_lit_checkpoint(path)


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", size, flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"max_shard_size {size!r} is not a size such as 500MB, 5GB or 2GiB")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}[unit]
    return int(number * scale)


def _hf_tensors(state_dict: StateDict, config: Config) -> Iterator[tuple[str, torch.Tensor]]:
    for name, tensor in state_dict.items():
        hf_names = lit_to_hf_names(name)
        parts = tensor.split(_qkv_rows(config)) if len(hf_names) == 3 else (tensor,)
        yield from zip(hf_names, parts)


def tokenizer_config_for_hf(tokenizer: Tokenizer, block_size: int) -> dict:
    """A tokenizer_config.json with which transformers' AutoTokenizer loads a bare tokenizer.model
    (as LlamaTokenizer) or tokenizer.json.

    transformers builds its Llama tokenizer from tokenizer.model with Metaspace pre-tokenisation: for
    text that begins with a space it adds no extra "▁", SentencePiece does, so only such text encodes
    differently; SentencePiece normalisation rules other than "identity" are not carried over either."""
    if tokenizer.backend == "sentencepiece":
        sp = tokenizer.processor
        piece = sp.id_to_piece
        out = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False}
        if sp.unk_id() >= 0:
            out["unk_token"] = piece(sp.unk_id())
    else:
        piece = tokenizer.processor.id_to_token
        out = {"tokenizer_class": "PreTrainedTokenizerFast"}
    if tokenizer.bos_id is not None:
        out["bos_token"] = piece(tokenizer.bos_id)
    if tokenizer.eos_id is not None:
        out["eos_token"] = piece(tokenizer.eos_id)
    return {**out, "model_max_length": block_size}


def _written_whole(write: Callable[..., None]) -> Callable[..., None]:
    """`write(folder, ...)`, a function that writes a folder, made to write a fresh temporary folder beside
    `folder` instead and move its files into `folder` only once all are written: a failure midway leaves
    nothing at `folder` (or an earlier export there as it was) and no temporary folder."""

    @functools.wraps(write)
    def whole(folder: PathLike, *args, **kwargs) -> None:
        folder = Path(folder).resolve()  # "." and ".." have no name to put beside
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder} exists and is not a folder")
        staging = folder.with_name(f".tmp.{folder.name}")
        shutil.rmtree(staging, ignore_errors=True)  # left by an earlier export that was killed
        try:
            write(staging, *args, **kwargs)
            _move_files(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    return whole


def _move_files(staging: Path, folder: Path) -> None:
    """The files of `staging` into `folder`: one rename when `folder` is new or empty, else file by file after
    removing the weight files of an earlier export there that this one does not have (a loader would mix
    them in); other files of the folder stay."""
    if not folder.is_dir() or not any(folder.iterdir()):
        os.replace(staging, folder)
        return
    for stale in folder.glob("model*.safetensors*"):
        if not (staging / stale.name).exists():
            stale.unlink()
    for path in staging.iterdir():
        os.replace(path, folder / path.name)


@_written_whole
def save_hf_checkpoint(
    folder: PathLike,
    state_dict: StateDict,
    config: Config,
    tokenizer_dir: PathLike | None = None,
    dtype: torch.dtype | None = None,
    max_shard_size: int | str = "5GB",
    chat_template: str | None = None,
) -> None:
    """Write a Hugging Face LlamaForCausalLM folder: config.json, generation_config.json, safetensors
    weights (sharded with model.safetensors.index.json above `max_shard_size`) and the tokenizer files,
    with `chat_template` (Jinja) in tokenizer_config.json when given (else the tokenizer folder's, if any).

    `dtype` defaults to the state dict's. Only one shard's worth of converted tensors is held at a time.
    A failure midway leaves nothing at `folder` (`_written_whole`)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    check_state_dict(state_dict, config, source="the state dict to save")
    dtype = dtype or state_dict["transformer.wte.weight"].dtype
    limit = _parse_size(max_shard_size)
    folder.mkdir(parents=True, exist_ok=True)

    # plan the shards first: their file names carry the count
    shards: list[list[tuple[str, torch.Tensor]]] = [[]]
    shard_bytes = 0
    for hf_name, tensor in _hf_tensors(state_dict, config):
        nbytes = tensor.numel() * dtype.itemsize
        if shards[-1] and shard_bytes + nbytes > limit:
            shards.append([])
            shard_bytes = 0
        shards[-1].append((hf_name, tensor))
        shard_bytes += nbytes
    n = len(shards)
    names = ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    for file_name, shard in zip(names, shards):
        # copy=True: q/k/v are views of one tensor and safetensors refuses tensors that share memory
        tensors = {hf_name: t.to(dtype=dtype, copy=True).contiguous() for hf_name, t in shard}
        _write_atomically(folder / file_name, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    index = folder / "model.safetensors.index.json"
    if n > 1:
        total = sum(t.numel() * dtype.itemsize for shard in shards for _, t in shard)
        weight_map = {hf_name: file_name for file_name, shard in zip(names, shards) for hf_name, _ in shard}
        _write_json(index, {"metadata": {"total_size": total}, "weight_map": weight_map})

    tokenizer = _copy_tokenizer(tokenizer_dir, folder) if tokenizer_dir is not None else None
    bos_id = tokenizer.bos_id if tokenizer else None
    eos_id = tokenizer.eos_id if tokenizer else None
    _write_json(folder / "config.json", config_to_hf(config, dtype, bos_id, eos_id))
    generation = {"bos_token_id": bos_id, "eos_token_id": eos_id}
    _write_json(folder / "generation_config.json", {k: v for k, v in generation.items() if v is not None})
    if tokenizer is not None:
        # A tokenizer_config.json copied with the tokenizer (special tokens only, or the fine-tuning's chat
        # template) keeps its entries; ours adds what transformers needs to encode as we do, BOS included.
        path = folder / "tokenizer_config.json"
        copied = _read_json(path) if path.is_file() else {}
        written = {**tokenizer_config_for_hf(tokenizer, config.block_size), **copied}
        _write_json(path, {**written, "chat_template": chat_template} if chat_template else written)


# --- conversions ----------------------------------------------------------------------------------
def convert_hf_to_lit(hf_folder: PathLike, output_dir: PathLike, dtype: torch.dtype | None = None) -> Config:
    """Write a Hugging Face Llama folder as a lit checkpoint folder (its tokenizer too, when it has one)."""
    state_dict, config = load_hf_checkpoint(hf_folder, dtype=dtype)
    save_lit_checkpoint(output_dir, state_dict, config, tokenizer_dir=hf_folder if has_tokenizer(hf_folder) else None)
    return config


def convert_lit_to_hf(
    checkpoint: PathLike,
    output_dir: PathLike,
    dtype: torch.dtype | None = None,
    tokenizer_dir: PathLike | None = None,
    config: Config | None = None,
    max_shard_size: int | str = "5GB",
) -> Path | None:
    """Write a lit checkpoint (a run folder: its newest whole checkpoint) as a Hugging Face folder, with the
    tokenizer of `tokenizer_dir`, else of the checkpoint's folder when it has one. `config` replaces the
    checkpoint's model_config.yaml. The chat template the checkpoint was fine-tuned with goes along, whichever
    tokenizer is shipped. Returns the tokenizer folder shipped, None for none."""
    checkpoint = find_checkpoint(Path(checkpoint))
    state_dict, config = load_lit_checkpoint(checkpoint, config)
    folder = checkpoint_folder(checkpoint)
    tokenizer_dir = tokenizer_dir or (folder if has_tokenizer(folder) else None)
    save_hf_checkpoint(
        output_dir,
        state_dict,
        config,
        tokenizer_dir=tokenizer_dir,
        dtype=dtype,
        max_shard_size=max_shard_size,
        chat_template=chat_template_text(folder),
    )
    return Path(tokenizer_dir) if tokenizer_dir is not None else None
