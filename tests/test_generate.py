import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_helpers import random_model, tiny_config

from lit_gpt.checkpoint import load_lit_checkpoint, model_from_state_dict, save_lit_checkpoint
from lit_gpt.generate import MAX_COMPILED_TOKENS, generate, sample
from lit_gpt.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]


def draws(logits, n=4000, seed=0, **kwargs):
    """The set of token ids drawn in n samples."""
    generator = torch.Generator().manual_seed(seed)
    return set(sample(logits.expand(n, -1), generator=generator, **kwargs).tolist())


def test_greedy_is_argmax():
    logits = torch.randn(3, 5, 50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample(logits, temperature=0), logits.argmax(-1))
    assert torch.equal(sample(logits, temperature=0, top_k=3, top_p=0.1), logits.argmax(-1))


def test_top_k_keeps_the_k_most_likely():
    logits = torch.tensor([0.0, 2.0, 0.5, 1.9, 1.8, 0.2, 1.7])
    assert draws(logits) == set(range(7))
    assert draws(logits, top_k=3) == {1, 3, 4}
    assert draws(logits, top_k=1) == {1}
    assert draws(logits, top_k=100) == set(range(7))


def test_top_p_keeps_the_nucleus():
    probs = torch.tensor([0.05, 0.3, 0.15, 0.5])
    logits = probs.log()
    assert draws(logits, top_p=0.4) == {3}  # 0.5 alone reaches 0.4
    assert draws(logits, top_p=0.7) == {3, 1}  # 0.5 + 0.3
    assert draws(logits, top_p=0.9) == {3, 1, 2}
    assert draws(logits, top_p=1.0) == {0, 1, 2, 3}
    # top-k first, then top-p over what is left (renormalised): {3, 1} -> 0.625 + 0.375
    assert draws(logits, top_k=2, top_p=0.6) == {3}


def test_temperature_sharpens():
    logits = torch.tensor([1.0, 0.0])
    generator = torch.Generator().manual_seed(0)
    hot = sample(logits.expand(4000, -1), temperature=10.0, generator=generator).float().mean()
    cold = sample(logits.expand(4000, -1), temperature=0.1, generator=generator).float().mean()
    assert cold < 0.01 and 0.4 < hot < 0.55  # share of the less likely token


def test_invalid_sampling_arguments_raise_at_the_call():
    model = random_model(tiny_config())
    prompt = torch.tensor([1, 2, 3])
    for kwargs, message in [
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
    ]:
        with pytest.raises(ValueError, match=message):
            generate(model, prompt, 5, **kwargs)
    with pytest.raises(ValueError, match=r"= 65 exceeds model.max_seq_length \(64\)"):
        generate(model, prompt, 62)
    with pytest.raises(ValueError, match="1-D"):
        generate(model, prompt[None], 5)


def test_seeded_generation_is_deterministic():
    model = random_model(tiny_config())
    prompt = torch.tensor([5, 6, 7])

    def run(seed):
        return list(
            generate(model, prompt, 30, temperature=1.0, top_k=50, generator=torch.Generator().manual_seed(seed))
        )

    first = run(1)
    assert len(first) == 30 and first == run(1)
    assert first != run(2)


def test_stops_at_eos():
    model = random_model(tiny_config())
    prompt = torch.tensor([5, 6, 7])
    greedy = list(generate(model, prompt, 10, temperature=0))
    eos = greedy[3]
    assert list(generate(model, prompt, 10, temperature=0, eos_id=eos)) == greedy[: greedy.index(eos) + 1]
    assert list(generate(model, prompt, 0)) == []


def test_generate_script_end_to_end(tmp_path, sp_tokenizer_dir):
    """Lit checkpoint -> HF folder -> lit checkpoint through the two converters, then the generation
    script; its greedy output equals generating in this process."""
    model = random_model(tiny_config(vocab_size=320))
    save_lit_checkpoint(tmp_path / "lit", model.state_dict(), model.config, tokenizer_dir=sp_tokenizer_dir)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(script, *args):
        result = subprocess.run(
            [sys.executable, str(REPO / "scripts" / script), *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result

    run("convert_lit_checkpoint.py", "--checkpoint", tmp_path / "lit", "--output_dir", tmp_path / "hf")
    run("convert_hf_checkpoint.py", "--checkpoint_dir", tmp_path / "hf", "--output_dir", tmp_path / "back")
    assert (tmp_path / "back" / "tokenizer.model").is_file()
    prompt = "the model learns"
    result = run(
        "generate.py",
        "--checkpoint",
        tmp_path / "back",
        "--prompt",
        prompt,
        "--max_new_tokens",
        20,
        "--temperature",
        0,
        "--device",
        "cpu",
    )

    tokenizer = Tokenizer(tmp_path / "back")
    state_dict, config = load_lit_checkpoint(tmp_path / "back")
    prompt_ids = tokenizer.encode(prompt, bos=True)
    model = model_from_state_dict(state_dict, config)
    model.max_seq_length = len(prompt_ids) + 20
    new_ids = list(generate(model, torch.tensor(prompt_ids), 20, temperature=0, eos_id=tokenizer.eos_id))
    assert result.stdout == tokenizer.decode(prompt_ids + new_ids) + "\n"
    assert result.stdout.startswith(prompt)
    assert f"{len(new_ids)} tokens in" in result.stderr and "tokens/s" in result.stderr


def test_compiled_decoding_equals_eager_and_keeps_its_cache():
    """compile=True (torch.compile, static shapes over the whole cache) decodes the same greedy tokens
    as the eager path, for prompts of two lengths, and keeps the cache buffers for the next call."""
    model = random_model(tiny_config(n_layer=1))  # one layer: half the compilation
    model.max_seq_length = 40
    # a short prompt prefilled by the compiled step, then one over MAX_COMPILED_TOKENS, prefilled eagerly
    prompts = (torch.tensor([1, 5, 9, 3]), torch.tensor([1, 7, 2, 11, 30, 4, 8, 6, 12, 3, 9, 5]))
    assert len(prompts[0]) <= MAX_COMPILED_TOKENS < len(prompts[1])
    for prompt in prompts:
        eager = list(generate(model, prompt, 24, temperature=0))
        assert model.transformer.h[0].attn.kv_cache is None  # the eager path frees its cache
        assert list(generate(model, prompt, 24, temperature=0, compile=True)) == eager
        assert model.transformer.h[0].attn.kv_cache is not None
