import json
import os
import warnings
from dataclasses import replace

import pytest
import torch
from model_helpers import SAMPLE_LINES, random_model, randomize, tiny_config
from safetensors.torch import load_file, save_file

pytest.importorskip("transformers")  # a test extra: the exports are checked against it

from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from lit_gpt.checkpoint import (
    config_from_hf,
    hf_to_lit_name,
    lit_to_hf_names,
    load_hf_checkpoint,
    load_lit_checkpoint,
    model_from_state_dict,
    save_hf_checkpoint,
    save_lit_checkpoint,
)
from lit_gpt.tokenizer import Tokenizer

TOKENS = torch.randint(0, 128, (2, 64), generator=torch.Generator().manual_seed(0))


def hf_llama(rope_scaling=None, seed=1) -> LlamaForCausalLM:
    """A random tiny LlamaForCausalLM with grouped-query attention (4 heads, 2 key/value heads)."""
    config = LlamaConfig(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=88,
        num_hidden_layers=2,
        vocab_size=128,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        rope_scaling=rope_scaling,
    )
    return randomize(LlamaForCausalLM(config), seed).eval()


@torch.no_grad()
def lit_logits(state_dict, config):
    return model_from_state_dict(state_dict, replace(config, kernels="torch"))(TOKENS)


@torch.no_grad()
def hf_logits(model):
    return model(TOKENS).logits


def save_bin(model, folder, sharded):
    """transformers 5 writes only safetensors: write the pytorch_model*.bin layout by hand."""
    folder.mkdir()
    model.config.save_pretrained(folder)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if not sharded:
        torch.save(state, folder / "pytorch_model.bin")
        return
    names = list(state)
    halves = {
        "pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
        "pytorch_model-00002-of-00002.bin": names[len(names) // 2 :],
    }
    for file, keys in halves.items():
        torch.save({k: state[k] for k in keys}, folder / file)
    weight_map = {k: file for file, keys in halves.items() for k in keys}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))


def dcp_save(state, folder):
    """torch.distributed.checkpoint.save in this one process, as a pretraining run on one GPU writes it."""
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "assuming the intent is to save in a single process"
        dcp.save(state, checkpoint_id=str(folder))


def test_name_mapping_both_ways():
    assert hf_to_lit_name("model.layers.3.self_attn.k_proj.weight") == ("transformer.h.3.attn.qkv.weight", 1)
    assert hf_to_lit_name("model.layers.0.mlp.down_proj.weight") == ("transformer.h.0.mlp.proj.weight", None)
    assert hf_to_lit_name("model.layers.0.self_attn.q_norm.weight") is None
    for name in random_model(tiny_config()).state_dict():
        hf_names = lit_to_hf_names(name)
        assert {hf_to_lit_name(n)[0] for n in hf_names} == {name}
        assert len(hf_names) == (3 if name.endswith("qkv.weight") else 1)


@pytest.mark.parametrize("layout", ["safetensors", "sharded_safetensors", "bin", "sharded_bin"])
def test_hf_to_lit_logits_match_transformers(tmp_path, layout):
    hf = hf_llama()
    folder = tmp_path / "hf"
    if layout.endswith("bin"):
        save_bin(hf, folder, sharded=layout == "sharded_bin")
    else:
        hf.save_pretrained(folder, max_shard_size="20KB" if layout.startswith("sharded") else "5GB")
    assert (folder / "model.safetensors.index.json").is_file() == (layout == "sharded_safetensors")
    state_dict, config = load_hf_checkpoint(folder)
    assert (config.n_query_groups, config.n_head, config.padded_vocab_size) == (2, 4, 128)
    torch.testing.assert_close(lit_logits(state_dict, config), hf_logits(hf), atol=1e-5, rtol=0)


def test_lit_to_hf_logits_match_transformers(tmp_path):
    model = random_model(tiny_config())
    save_hf_checkpoint(tmp_path, model.state_dict(), model.config)
    hf = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    assert hf.config.num_key_value_heads == 2 and not hf.config.tie_word_embeddings
    with torch.no_grad():
        torch.testing.assert_close(hf_logits(hf), model(TOKENS), atol=1e-5, rtol=0)


def test_round_trip_lit_hf_lit_is_bitwise(tmp_path):
    model = random_model(tiny_config(rope_base=500000.0, norm_eps=1e-6))
    save_hf_checkpoint(tmp_path / "hf", model.state_dict(), model.config, max_shard_size="30KB")
    assert len(list((tmp_path / "hf").glob("model-*.safetensors"))) > 1
    state_dict, config = load_hf_checkpoint(tmp_path / "hf")
    save_lit_checkpoint(tmp_path / "lit", state_dict, config)
    state_dict, config = load_lit_checkpoint(tmp_path / "lit")
    original = model.state_dict()
    assert state_dict.keys() == original.keys()
    assert all(torch.equal(state_dict[k], original[k]) for k in original)
    ignore = {"name", "kernels"}
    assert {k: v for k, v in config.to_dict().items() if k not in ignore} == {
        k: v for k, v in model.config.to_dict().items() if k not in ignore
    }


def test_reexport_with_fewer_shards_removes_stale_files(tmp_path):
    model = random_model(tiny_config())
    save_hf_checkpoint(tmp_path, model.state_dict(), model.config, max_shard_size="30KB")
    (tmp_path / "README.md").write_text("the user's own notes")
    save_hf_checkpoint(tmp_path, model.state_dict(), model.config)
    assert sorted(p.name for p in tmp_path.glob("model*")) == ["model.safetensors"]
    assert (tmp_path / "README.md").is_file()  # other files of the folder stay
    assert not list(tmp_path.glob(".tmp*")) and not list(tmp_path.parent.glob(f".tmp.{tmp_path.name}"))


def test_an_export_that_fails_midway_leaves_nothing_at_the_output(tmp_path, monkeypatch):
    """The second of several weight files fails (a full disk, a kill): the output folder does not exist (it
    held the first shard), or an earlier export there is as it was; no temporary folder is left."""
    import safetensors.torch

    model = random_model(tiny_config())
    real_save_file, calls = safetensors.torch.save_file, []

    def fails_on_the_second_file(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("simulated write error")
        return real_save_file(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", fails_on_the_second_file)
    output = tmp_path / "exports" / "hf"
    with pytest.raises(OSError, match="simulated"):
        save_hf_checkpoint(output, model.state_dict(), model.config, max_shard_size="30KB")
    assert list(output.parent.iterdir()) == []

    monkeypatch.setattr(safetensors.torch, "save_file", real_save_file)
    save_hf_checkpoint(output, model.state_dict(), model.config)  # an earlier export, one file
    (output / "README.md").write_text("the user's own notes")
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    monkeypatch.setattr(safetensors.torch, "save_file", fails_on_the_second_file)
    calls.clear()
    with pytest.raises(OSError, match="simulated"):
        save_hf_checkpoint(output, model.state_dict(), model.config, max_shard_size="30KB")
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    assert list(output.parent.iterdir()) == [output]


def test_export_dtype(tmp_path):
    model = random_model(tiny_config())
    save_hf_checkpoint(tmp_path, model.state_dict(), model.config, dtype=torch.bfloat16)
    tensors = load_file(tmp_path / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    q = tensors["model.layers.1.self_attn.q_proj.weight"]
    assert torch.equal(q, model.transformer.h[1].attn.qkv.weight[:32].to(torch.bfloat16))


def test_condense_ratio_matches_linear_rope_scaling(tmp_path):
    hf = hf_llama(rope_scaling={"rope_type": "linear", "factor": 4.0})
    hf.save_pretrained(tmp_path / "in")
    state_dict, config = load_hf_checkpoint(tmp_path / "in")
    assert config.rope_condense_ratio == 4.0
    torch.testing.assert_close(lit_logits(state_dict, config), hf_logits(hf), atol=1e-5, rtol=0)
    # the ratio matters at these positions: without it the logits differ
    assert (lit_logits(state_dict, replace(config, rope_condense_ratio=1.0)) - hf_logits(hf)).abs().max() > 1e-3

    model = random_model(tiny_config(rope_condense_ratio=4.0))
    save_hf_checkpoint(tmp_path / "out", model.state_dict(), model.config)
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf_logits(hf), model(TOKENS), atol=1e-5, rtol=0)


def test_old_rope_spelling_is_read():
    hf = dict(
        model_type="llama",
        hidden_size=32,
        num_attention_heads=4,
        num_hidden_layers=2,
        intermediate_size=88,
        vocab_size=100,
        rope_theta=1e6,
        rope_scaling={"type": "linear", "factor": 2.0},
    )
    config = config_from_hf(hf, source="config.json")
    assert (config.rope_base, config.rope_condense_ratio, config.n_query_groups) == (1e6, 2.0, 4)
    assert config.padded_vocab_size == 100  # the embedding keeps exactly vocab_size rows
    with pytest.raises(ValueError, match="config.json.*'dynamic'"):
        config_from_hf({**hf, "rope_scaling": {"type": "dynamic", "factor": 2.0}}, source="config.json")


def test_tied_embeddings_are_untied(tmp_path):
    hf = hf_llama()
    state = {k: v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({**hf.config.to_dict(), "tie_word_embeddings": True}))
    state_dict, _ = load_hf_checkpoint(tmp_path)
    assert torch.equal(state_dict["lm_head.weight"], state["model.embed_tokens.weight"])


def test_pth_files_plain_and_with_optimizer(tmp_path):
    model = random_model(tiny_config())
    optimizer = torch.optim.AdamW(model.parameters())
    model(TOKENS[:, :8], targets=TOKENS[:, 1:9]).backward()
    optimizer.step()
    model.config.save(tmp_path / "model_config.yaml")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 1}, tmp_path / "train.pth")
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    for name in ("train.pth", "plain.pth"):
        state_dict, config = load_lit_checkpoint(tmp_path / name)
        assert config == model.config
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in state_dict.items())
    # an explicit config wins over the file beside the weights
    (tmp_path / "model_config.yaml").unlink()
    state_dict, config = load_lit_checkpoint(tmp_path / "plain.pth", config=model.config)
    assert config is model.config


def test_distributed_checkpoint_folder_loads_the_model_only(tmp_path):
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    model = random_model(tiny_config())
    optimizer = torch.optim.AdamW(model.parameters())
    model(TOKENS[:, :8], targets=TOKENS[:, 1:9]).backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": get_optimizer_state_dict(model, optimizer), "step": 1}
    dcp_save(state, tmp_path)
    model.config.save(tmp_path / "model_config.yaml")
    assert (tmp_path / ".metadata").is_file()

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "single process" noise from the loader
        state_dict, config = load_lit_checkpoint(tmp_path)
    assert config == model.config and state_dict.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state_dict.items())

    with pytest.raises(ValueError, match=r"model\.transformer\.h\.0\.attn\.qkv\.weight.*\(64, 32\).*\(96, 32\)"):
        load_lit_checkpoint(tmp_path, config=tiny_config(n_query_groups=4))


def test_bf16_distributed_checkpoint_stays_bf16(tmp_path):
    model = random_model(tiny_config()).to(torch.bfloat16)
    dcp_save({"model": model.state_dict()}, tmp_path)
    state_dict, _ = load_lit_checkpoint(tmp_path, config=model.config)
    assert all(v.dtype == torch.bfloat16 and torch.equal(v, model.state_dict()[k]) for k, v in state_dict.items())


# --- bad input -------------------------------------------------------------------------------------
def test_folder_without_weights(tmp_path):
    hf_llama().config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*model.safetensors.*pytorch_model.bin"):
        load_hf_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*lit_model.pth.*metadata"):
        load_lit_checkpoint(tmp_path)


def test_missing_config_json(tmp_path):
    hf_llama().save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_checkpoint(tmp_path)


def test_shape_mismatch_names_key_shapes_and_file(tmp_path):
    hf_llama().save_pretrained(tmp_path)
    hf_config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**hf_config, "intermediate_size": 96}))
    with pytest.raises(
        ValueError,
        match=r"model.safetensors: tensor 'model.layers.0.mlp.\w+_proj.weight' has "
        r"shape \((88, 32|32, 88)\).*\((96, 32|32, 96)\)",
    ):
        load_hf_checkpoint(tmp_path)

    model = random_model(tiny_config())
    save_lit_checkpoint(tmp_path / "lit", model.state_dict(), model.config)
    with pytest.raises(
        ValueError,
        match=r"lit_model.pth: tensor 'transformer.h.0.mlp.fc_gate.weight' has shape "
        r"\(88, 32\) but the config expects \(96, 32\)",
    ):
        load_lit_checkpoint(tmp_path / "lit", config=tiny_config(intermediate_size=96))


def test_unknown_tensor_names_key_and_file(tmp_path):
    hf_llama().save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["model.layers.0.self_attn.q_norm.weight"] = torch.ones(8)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model.safetensors: unknown tensor 'model.layers.0.self_attn.q_norm.weight'"):
        load_hf_checkpoint(tmp_path)

    model = random_model(tiny_config())
    torch.save({**model.state_dict(), "transformer.h.5.norm_1.weight": torch.ones(32)}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"extra.pth: unknown tensor 'transformer.h.5.norm_1.weight'"):
        load_lit_checkpoint(tmp_path / "extra.pth", config=model.config)


def test_missing_tensor_and_unsupported_config(tmp_path):
    hf_llama().save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["model.layers.1.self_attn.v_proj.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing.*model.layers.1.self_attn.v_proj.weight"):
        load_hf_checkpoint(tmp_path)
    hf_config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**hf_config, "attention_bias": True}))
    with pytest.raises(ValueError, match=r"config.json: attention_bias=True is not supported"):
        load_hf_checkpoint(tmp_path)


# --- tokenizer ------------------------------------------------------------------------------------
def test_exported_sentencepiece_tokenizer_loads_in_transformers(tmp_path, sp_tokenizer_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = tiny_config(vocab_size=320)
    model = random_model(config)
    save_hf_checkpoint(tmp_path, model.state_dict(), config, tokenizer_dir=sp_tokenizer_dir)
    assert {"tokenizer.model", "tokenizer_config.json"} <= set(os.listdir(tmp_path))
    hf_config = json.loads((tmp_path / "config.json").read_text())
    assert (hf_config["bos_token_id"], hf_config["eos_token_id"], hf_config["vocab_size"]) == (1, 2, 320)

    ours = Tokenizer(sp_tokenizer_dir)
    theirs = AutoTokenizer.from_pretrained(tmp_path)
    texts = SAMPLE_LINES[:100] + ["the  model   learns ", "café naïve\tkalo\n😀 x"]
    for text in texts:
        ids = ours.encode(text, bos=True)
        assert theirs.encode(text) == ids, text
        assert theirs.decode(ids, skip_special_tokens=True) == ours.decode(ids)


def test_exported_tokenizer_json_loads_in_transformers(tmp_path, sp_tokenizer_dir, monkeypatch):
    """A tokenizer.json without tokenizer_config.json gets a config with which AutoTokenizer loads it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = random_model(tiny_config(vocab_size=320))
    save_hf_checkpoint(tmp_path / "sp", model.state_dict(), model.config, tokenizer_dir=sp_tokenizer_dir)
    source = tmp_path / "json_only"
    source.mkdir()
    AutoTokenizer.from_pretrained(tmp_path / "sp").backend_tokenizer.save(str(source / "tokenizer.json"))

    save_hf_checkpoint(tmp_path / "out", model.state_dict(), model.config, tokenizer_dir=source)
    assert json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())["eos_token"] == "</s>"
    theirs = AutoTokenizer.from_pretrained(tmp_path / "out")
    ours = Tokenizer(source)
    assert theirs.eos_token_id == ours.eos_id == 2
    for text in SAMPLE_LINES[:20]:
        assert theirs.encode(text, add_special_tokens=False) == ours.encode(text)
