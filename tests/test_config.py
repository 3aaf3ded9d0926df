import pytest

from lit_gpt.config import PRESETS, Config


def test_presets_and_derived_fields():
    tiny = Config.from_name("tiny_LLaMA_1b")
    assert (tiny.n_layer, tiny.n_head, tiny.n_query_groups, tiny.n_embd, tiny.intermediate_size) == (
        22,
        32,
        4,
        2048,
        5632,
    )
    assert (tiny.head_size, tiny.padded_vocab_size, tiny.block_size) == (64, 32000, 2048)
    code = Config.from_name("code_tiny_LLaMA_1b")
    assert (code.block_size, code.rope_condense_ratio, code.n_embd) == (8192, 4.0, 2048)
    llama7b = Config.from_name("Llama-2-7b")
    assert (llama7b.n_query_groups, llama7b.head_size) == (32, 128)
    small = Config.from_name("tiny_LLaMA_120M")
    assert (small.n_layer, small.n_query_groups, small.head_size) == (12, 1, 64)
    for name in PRESETS:
        assert Config.from_name(name).name == name
    assert Config(vocab_size=100, padding_multiple=64).padded_vocab_size == 128
    assert Config(vocab_size=128, padding_multiple=64).padded_vocab_size == 128


def test_overrides_apply_and_are_checked():
    config = Config.from_name("tiny_LLaMA_1b", block_size=4096, kernels="torch")
    assert (config.block_size, config.kernels, config.n_layer) == (4096, "torch", 22)
    with pytest.raises(ValueError, match="unknown config field.*n_layers"):
        Config.from_name("tiny_LLaMA_1b", n_layers=3)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(n_embd=100, n_head=32), "not divisible by n_head"),
        (dict(n_head=32, n_query_groups=3), "not divisible by n_query_groups"),
        (dict(n_embd=96, n_head=32), "head size 3 is odd"),
        (dict(rope_condense_ratio=0.5), "rope_condense_ratio"),
        (dict(norm_eps=0.0), "norm_eps"),
        (dict(kernels="cuda"), "kernels='cuda'"),
        (dict(n_layer=0), "n_layer must be a positive integer"),
        (dict(block_size=2048.0), "block_size must be a positive integer"),
    ],
)
def test_invalid_combinations_raise(fields, message):
    with pytest.raises(ValueError, match=message):
        Config(name="bad", **fields)


def test_unknown_preset_suggests_close_matches():
    with pytest.raises(ValueError, match="did you mean 'tiny_LLaMA_1b'"):
        Config.from_name("tiny_llama_1b")
    with pytest.raises(ValueError, match="unknown model preset 'gpt5'"):
        Config.from_name("gpt5")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    config = Config.from_name("code_tiny_LLaMA_1b", kernels="torch")
    path = tmp_path / f"model_config{suffix}"
    config.save(path)
    assert Config.from_file(path) == config
    assert "head_size" not in path.read_text()  # derived fields are recomputed, not stored


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        Config.from_file(tmp_path / "missing.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text("n_layer: 2\nn_heads: 4\n")
    with pytest.raises(ValueError, match="bad.yaml.*n_heads"):
        Config.from_file(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="bad.yaml: expected a mapping"):
        Config.from_file(path)
