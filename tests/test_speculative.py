import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_helpers import SAMPLE_LINES, random_model, tiny_config

from lit_gpt.checkpoint import save_hf_checkpoint, save_lit_checkpoint
from lit_gpt.generate import generate, sample
from lit_gpt.inference import load_for_inference
from lit_gpt.tokenizer import Tokenizer
from speculative_decoding.sampling import (
    SpeculativeDecoder,
    check_same_tokenizer,
    filtered_probs,
    next_k,
    rollback_kv_cache,
    speculative_generate,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run thousands of small forwards here; a second thread only adds contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@torch.no_grad()
def perturbed_copy(model, scale: float, seed: int):
    """A draft that agrees with the target often but not always: its weights plus noise."""
    draft = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    for p in draft.parameters():
        p.add_(scale * torch.randn(p.shape, generator=generator))
    return draft


PROMPTS = [torch.tensor([5, 6, 7]), torch.tensor([1]), torch.tensor([100, 3, 3, 3, 42, 17, 9, 64])]


def test_filtered_probs_is_what_sample_draws_from():
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0)) * 3
    for kwargs in [
        dict(temperature=1.0),
        dict(temperature=0.7, top_k=5),
        dict(temperature=1.3, top_p=0.8),
        dict(temperature=1.0, top_k=10, top_p=0.6),
    ]:
        ours = torch.multinomial(filtered_probs(logits, **kwargs), 1, generator=torch.Generator().manual_seed(1))[:, 0]
        theirs = sample(logits, generator=torch.Generator().manual_seed(1), **kwargs)
        assert torch.equal(ours, theirs), kwargs
    assert torch.equal(filtered_probs(logits, temperature=0).argmax(-1), logits.argmax(-1))
    assert torch.equal(filtered_probs(logits, temperature=0).sum(-1), torch.ones(64))


@pytest.mark.parametrize("draft_kind", ["perturbed", "smaller", "same"])
def test_greedy_output_equals_target_only_greedy(draft_kind):
    target = random_model(tiny_config(), seed=0)
    draft = {
        "perturbed": lambda: perturbed_copy(target, 0.01, seed=1),
        "smaller": lambda: random_model(tiny_config(n_layer=1, n_embd=16, n_head=2, n_query_groups=1), seed=2),
        "same": lambda: target,
    }[draft_kind]()
    proposed = accepted = 0
    for prompt in PROMPTS:
        expected = list(generate(target, prompt, 40, temperature=0))
        for k in (1, 3, 5):
            result = speculative_generate(target, draft, prompt, 40, k=k, temperature=0)
            assert result.tokens == expected, (draft_kind, prompt.tolist(), k)
            stats = result.stats
            assert stats.generated == 40 and stats.target_forward_passes == stats.rounds
            assert stats.draft_forward_passes == stats.proposed  # one draft pass per proposal
            proposed, accepted = proposed + stats.proposed, accepted + stats.accepted
            if draft_kind == "same":
                # every proposal accepted: k + 1 tokens per target pass (the last round is cut short)
                assert stats.accepted == stats.proposed and stats.rounds == math.ceil(40 / (k + 1))
    if draft_kind == "perturbed":
        assert 0.2 < accepted / proposed < 0.95  # both paths ran: acceptances and corrections
    if draft_kind == "smaller":
        assert accepted < proposed


def test_compiled_speculative_decoding_keeps_the_greedy_output():
    """compile=True runs both models' short calls compiled over static shapes (the whole cache under a
    mask), with rollbacks in between: the output is still the target's own greedy output."""
    target = random_model(tiny_config(n_layer=1), seed=0)  # one layer: half the compilation
    draft = perturbed_copy(target, 0.01, seed=1)
    prompt = PROMPTS[0]
    for model in (target, draft):
        model.max_seq_length = prompt.numel() + 30
    expected = list(generate(target, prompt, 30, temperature=0))
    result = speculative_generate(target, draft, prompt, 30, k=3, temperature=0, compile=True)
    assert result.tokens == expected and 0 < result.stats.accepted < result.stats.proposed


def test_adaptive_k_moves_within_bounds_and_keeps_the_output():
    assert [next_k(4, a, 8) for a in (4, 3, 2, 1, 0)] == [5, 4, 4, 3, 3]
    assert next_k(8, 8, 8) == 8 and next_k(1, 0, 8) == 1 and next_k(2, 0, 8) == 1
    target = random_model(tiny_config(), seed=0)
    prompt = PROMPTS[0]
    expected = list(generate(target, prompt, 50, temperature=0))
    same = speculative_generate(target, target, prompt, 50, k=2, temperature=0, adaptive=True, k_max=6)
    assert same.tokens == expected and same.stats.k_history[:5] == [2, 3, 4, 5, 6]
    draft = perturbed_copy(target, 0.01, seed=1)
    varied = speculative_generate(target, draft, prompt, 50, k=4, temperature=0, adaptive=True, k_max=6)
    assert varied.tokens == expected and 1 <= min(varied.stats.k_history) and max(varied.stats.k_history) <= 6


def test_stops_at_eos_and_at_max_new_tokens():
    target = random_model(tiny_config(), seed=0)
    draft = perturbed_copy(target, 0.01, seed=1)
    prompt = PROMPTS[0]
    greedy = list(generate(target, prompt, 30, temperature=0))
    eos = greedy[7]
    result = speculative_generate(target, draft, prompt, 30, k=4, temperature=0, eos_id=eos)
    assert result.tokens == greedy[: greedy.index(eos) + 1]
    generator = torch.Generator().manual_seed(0)
    for n in (0, 1, 2, 5, 13):
        assert len(speculative_generate(target, draft, prompt, n, k=4, generator=generator).tokens) == n
    with pytest.raises(ValueError, match="max_seq_length"):
        speculative_generate(target, draft, prompt, 62, k=4)
    with pytest.raises(ValueError, match="vocabulary"):
        speculative_generate(target, random_model(tiny_config(vocab_size=64)), prompt, 5)


def fresh_prefill_cache(model, token_ids):
    """The KV cache a fresh model copy holds after one forward over `token_ids`."""
    reference = copy.deepcopy(model)
    reference.setup_kv_cache(1)
    with torch.inference_mode():
        reference(torch.tensor([token_ids]), input_pos=torch.arange(len(token_ids)))
    return [(b.attn.kv_cache.k.clone(), b.attn.kv_cache.v.clone()) for b in reference.transformer.h]


def test_rollback_leaves_caches_equal_to_a_fresh_prefill_of_the_accepted_text():
    target = random_model(tiny_config(), seed=0)
    draft = perturbed_copy(target, 0.02, seed=1)
    decoder = SpeculativeDecoder(target, draft, [5, 6, 7], temperature=1.0, generator=torch.Generator().manual_seed(0))
    draft_lags = set()
    try:
        for _ in range(8):
            decoder.round(3)
            n = len(decoder.sequence)
            # the target holds everything but the newest token; the draft one more behind after a full acceptance
            assert decoder.target.length == n - 1 and decoder.draft.length in (n - 1, n - 2)
            draft_lags.add(n - decoder.draft.length)
            for cursor in (decoder.target, decoder.draft):
                expected = fresh_prefill_cache(cursor.model, decoder.sequence[: cursor.length])
                for block, (k, v) in zip(cursor.model.transformer.h, expected):
                    # accepted positions equal; everything past them zero, as in the fresh cache
                    torch.testing.assert_close(block.attn.kv_cache.k, k)
                    torch.testing.assert_close(block.attn.kv_cache.v, v)
    finally:
        decoder.close()
    assert draft_lags == {1, 2}
    assert 0 < decoder.stats.accepted < decoder.stats.proposed  # rejections were rolled back too


def test_rollback_kv_cache_zeroes_only_the_forgotten_positions():
    model = random_model(tiny_config(), seed=0)
    model.setup_kv_cache(1)
    with torch.inference_mode():
        model(torch.tensor([[1, 2, 3, 4, 5]]), input_pos=torch.arange(5))
    before = [b.attn.kv_cache.k.clone() for b in model.transformer.h]
    rollback_kv_cache(model, 2, 5)
    for block, k in zip(model.transformer.h, before):
        assert torch.equal(block.attn.kv_cache.k[:, :, :2], k[:, :, :2]) and k[:, :, 2:5].abs().sum() > 0
        assert not block.attn.kv_cache.k[:, :, 2:].any() and not block.attn.kv_cache.v[:, :, 2:].any()
    with pytest.raises(ValueError, match="roll back"):
        rollback_kv_cache(model, 6, 5)


# --- the output distribution -----------------------------------------------------------------------
def chi_square(counts: torch.Tensor, probs: torch.Tensor):
    """(statistic, critical value at significance 0.001). Cells expected below 5 are pooled; the
    critical value is the Wilson-Hilferty approximation of the chi-square quantile (within 0.5% for
    df >= 3): df (1 - 2/(9 df) + z sqrt(2/(9 df)))^3 with z = 3.090, the standard normal 0.999 quantile."""
    n = counts.sum()
    expected = probs.double() * n
    small = expected < 5
    observed = torch.cat([counts[~small].double(), counts[small].sum().double().view(1)])
    expected = torch.cat([expected[~small], expected[small].sum().view(1)])
    keep = expected > 0
    statistic = float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    df = int(keep.sum()) - 1
    c = 2 / (9 * df)
    return statistic, df * (1 - c + 3.090 * math.sqrt(c)) ** 3


@pytest.mark.parametrize("sampling, k", [(dict(temperature=1.0), 2), (dict(temperature=0.8, top_k=6, top_p=0.9), 1)])
def test_sampled_tokens_follow_the_target_distribution(sampling, k):
    """Over 4000 seeded draws of k + 1 tokens, the first token (an accepted draft token or a residual
    correction) and the second (with k=2 the second draft position; with k=1 a bonus token or, after a
    rejection, the next round) follow the target's filtered distribution. The draft's own distribution
    is rejected by the same test, so the test has the power to fail."""
    config = tiny_config(vocab_size=16, padding_multiple=16, n_layer=1)  # one layer: 4000 runs stay quick
    target = random_model(config, seed=0)
    draft = perturbed_copy(target, 0.03, seed=3)
    prompt = torch.tensor([3, 1, 4])
    generator = torch.Generator().manual_seed(1234)
    draws, accepted, proposed = [], 0, 0
    for _ in range(4000):
        result = speculative_generate(target, draft, prompt, k + 1, k=k, generator=generator, **sampling)
        draws.append(result.tokens[:2])
        accepted, proposed = accepted + result.stats.accepted, proposed + result.stats.proposed
    assert 0.3 < accepted / proposed < 0.9
    first = torch.tensor([d[0] for d in draws])

    def exact(model, ids):
        with torch.no_grad():
            return filtered_probs(model(torch.tensor([ids]))[0, -1], **sampling)

    p, q = exact(target, prompt.tolist()), exact(draft, prompt.tolist())
    counts = torch.bincount(first, minlength=16)
    assert counts[p == 0].sum() == 0  # nothing outside the target's top-k / nucleus
    statistic, critical = chi_square(counts, p)
    assert statistic < critical, (statistic, critical)
    statistic, critical = chi_square(counts, q)
    assert statistic > critical, "the test cannot tell the draft's distribution from the target's"

    x0 = int(counts.argmax())
    second = torch.tensor([d[1] for d in draws if d[0] == x0])
    p2 = exact(target, prompt.tolist() + [x0])
    counts2 = torch.bincount(second, minlength=16)
    assert second.numel() > 500 and counts2[p2 == 0].sum() == 0
    statistic, critical = chi_square(counts2, p2)
    assert statistic < critical, (statistic, critical)


# --- loading pairs and the command line ------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_pair(tmp_path_factory, sp_tokenizer_dir):
    folder = tmp_path_factory.mktemp("pair")
    target = random_model(tiny_config(vocab_size=320), seed=0)
    draft = perturbed_copy(target, 0.01, seed=1)
    save_lit_checkpoint(folder / "target", target.state_dict(), target.config, tokenizer_dir=sp_tokenizer_dir)
    save_lit_checkpoint(folder / "draft", draft.state_dict(), draft.config, tokenizer_dir=sp_tokenizer_dir)
    save_hf_checkpoint(folder / "draft_hf", draft.state_dict(), draft.config, tokenizer_dir=sp_tokenizer_dir)
    return folder


def load_cpu(path):
    return load_for_inference(path, "cpu", require_tokenizer=False)


def test_pairs_load_from_lit_and_hf_folders_and_must_share_the_tokenizer(checkpoint_pair, tmp_path):
    import sentencepiece

    target = load_cpu(checkpoint_pair / "target")
    lit_draft, hf_draft = load_cpu(checkpoint_pair / "draft"), load_cpu(checkpoint_pair / "draft_hf")
    ids = torch.tensor([[1, 20, 30, 40]])
    with torch.no_grad():
        torch.testing.assert_close(hf_draft.model(ids), lit_draft.model(ids))
    assert isinstance(check_same_tokenizer(target, hf_draft), Tokenizer)

    # the same vocabulary size, another tokenizer: trained on other text
    other = tmp_path / "other"
    other.mkdir()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SAMPLE_LINES[::-1][:200]),
        model_prefix=str(other / "tokenizer"),
        vocab_size=320,
        byte_fallback=True,
        model_type="bpe",
        character_coverage=1.0,
        minloglevel=2,
    )
    save_lit_checkpoint(
        tmp_path / "stranger", lit_draft.model.state_dict(), lit_draft.model.config, tokenizer_dir=other
    )
    with pytest.raises(ValueError, match="different tokenizers"):
        check_same_tokenizer(target, load_cpu(tmp_path / "stranger"))
    small = random_model(tiny_config(vocab_size=256), seed=0)
    save_lit_checkpoint(tmp_path / "small", small.state_dict(), small.config)
    with pytest.raises(ValueError, match="share one tokenizer"):
        check_same_tokenizer(target, load_cpu(tmp_path / "small"))


def run_script(*args, timeout=180):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result


def test_command_line_prints_the_target_greedy_text_and_the_speedup(checkpoint_pair):
    prompt, n = "the model learns", 24
    result = run_script(
        REPO / "speculative_decoding" / "generate.py",
        "--target",
        checkpoint_pair / "target",
        "--draft",
        checkpoint_pair / "draft_hf",
        "--prompt",
        prompt,
        "--max_new_tokens",
        n,
        "--temperature",
        0,
        "--k",
        3,
        "--device",
        "cpu",
    )
    loaded = load_cpu(checkpoint_pair / "target")
    tokenizer = Tokenizer(checkpoint_pair / "target")
    prompt_ids = tokenizer.encode(prompt, bos=True)
    loaded.model.max_seq_length = len(prompt_ids) + n
    expected = list(generate(loaded.model, torch.tensor(prompt_ids), n, temperature=0, eos_id=tokenizer.eos_id))
    assert result.stdout == tokenizer.decode(prompt_ids + expected) + "\n"
    for line in ("acceptance rate:", "tokens/s", "speedup:", "identical to target-only greedy output: yes"):
        assert line in result.stderr


def test_benchmark_runs_on_cpu(checkpoint_pair, tmp_path):
    """The benchmark's CPU path on tiny shapes: the demo pair, then decode latencies and the speedup they imply."""
    out = tmp_path / "bench.json"
    result = run_script(
        REPO / "benchmarks" / "speculative.py",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--demo_pair",
        checkpoint_pair / "target",
        checkpoint_pair / "draft",
        "--ks",
        "2,4",
        "--max_new_tokens",
        16,
        "--prompts",
        "the model learns",
        "--latency_steps",
        8,
        "--latency_prompt",
        16,
        "--latency_target",
        "micro_LLaMA",
        "--latency_draft",
        "micro_LLaMA",
        "--json",
        out,
    )
    report = json.loads(out.read_text())
    assert {(row["k"], row["temperature"]) for row in report["pair"]} == {(2, 0.0), (4, 0.0), (2, 1.0), (4, 1.0)}
    for row in report["pair"]:
        assert 0 <= row["acceptance_rate"] <= 1 and row["speedup"] > 0
        assert row["alpha"] >= row["acceptance_rate"]  # proposals after a rejection count only in the latter
    assert {row["model"] for row in report["latency"]} == {"micro_LLaMA"}
    t_target, t_draft = (row["median_ms"] for row in report["latency"])
    assert len(report["implied"]) == 4  # one per measured (k, temperature)
    for row in report["implied"]:
        a, k = row["alpha"], row["k"]
        e = sum(a**i for i in range(k + 1))  # 1 + a + ... + a^k accepted-prefix-plus-one tokens
        assert row["expected_tokens_per_round"] == pytest.approx(e)
        assert row["implied_speedup"] == pytest.approx(e * t_target / (k * t_draft + t_target))
    assert "E = (1 - alpha^(k+1)) / (1 - alpha)" in result.stdout
