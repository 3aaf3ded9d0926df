"""Speculative sampling: a small draft model proposes tokens, the target model checks them all at once.

One round, for a sequence whose last token the target has not yet seen:

1. the draft samples k tokens d_1..d_k one at a time from its filtered distributions q_1..q_k;
2. the target scores the unseen tail plus d_1..d_k in ONE forward pass (KV cache, `input_pos`),
   which gives its filtered distributions p_1..p_{k+1};
3. d_i is accepted with probability min(1, p_i(d_i) / q_i(d_i)), in order; at the first rejection
   the round ends with a token drawn from the residual norm(max(0, p_i - q_i)); when all k pass,
   a bonus token is drawn from p_{k+1}.

Every emitted token is then distributed exactly as the target's own filtered sampling would draw it
(temperature, top-k and top-p are applied identically to p and q), whatever the draft. At temperature
0 the distributions are one-hot and the rule becomes: accept while the draft token equals the
target's argmax, then emit the target's argmax; the output equals target-only greedy decoding.

Each model's KV cache is tracked by a `CacheCursor`: how many leading positions hold keys and values
of the current sequence. After a round both are rolled back to the accepted length; the model only
ever attends to positions at or below each query's own position, and those below the cursor are
valid, so a rolled-back region is simply overwritten by the next round (and is zeroed on rollback so
that nothing stale can hide there). A model that lags behind the sequence (the draft never sees its
own last proposal, nor the bonus token) feeds the tokens it lacks at the start of its next forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from lit_gpt.generate import check_sampling, filtered_logits, forward_fn, release_kv_cache
from lit_gpt.inference import LoadedModel
from lit_gpt.model import GPT
from lit_gpt.tokenizer import Tokenizer


# --- distributions ---------------------------------------------------------------------------------
def filtered_probs(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """The distribution `lit_gpt.generate.sample` draws from, as float32 probabilities (..., vocab):
    softmax(logits / temperature) kept to the top_k most likely tokens, then to the nucleus (the
    fewest most likely tokens reaching top_p), renormalised. Temperature 0 gives the argmax one-hot."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.size(-1)).float()
    return torch.softmax(filtered_logits(logits, temperature, top_k, top_p), dim=-1)


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    return int(torch.multinomial(probs, 1, generator=generator))


def verify_draft(
    p: torch.Tensor,
    q: torch.Tensor,
    draft_tokens: torch.Tensor,
    greedy: bool,
    generator: torch.Generator | None = None,
) -> tuple[int, int]:
    """(number of draft tokens accepted, the token that follows them).

    p: (k+1, V) the target's filtered distributions after the unseen tail and after each draft token;
    q: (k, V) the draft's filtered distributions the k `draft_tokens` were drawn from."""
    k = draft_tokens.numel()
    if greedy:
        choice = p.argmax(-1)
        accepted = int((choice[:k] == draft_tokens).cumprod(0).sum())
        return accepted, int(choice[accepted])
    rows = torch.arange(k, device=p.device)
    ratio = p[rows, draft_tokens] / q[rows, draft_tokens]  # q > 0 there: the draft drew these tokens
    # P(u < ratio) = min(1, ratio) for u uniform in [0, 1)
    passed = torch.rand(k, device=p.device, generator=generator) < ratio
    accepted = int(passed.int().cumprod(0).sum())
    if accepted == k:
        return k, _draw(p[k], generator)
    residual = (p[accepted] - q[accepted]).clamp_min(0)
    # A rejection means p < q at the draft token, so p > q somewhere else and the residual has mass;
    # only rounding can empty it, when p and q are equal up to it: p is then the right distribution.
    if float(residual.sum()) <= 0:
        residual = p[accepted]
    return accepted, _draw(residual, generator)


# --- KV cache bookkeeping --------------------------------------------------------------------------
def rollback_kv_cache(model: GPT, length: int, written: int) -> None:
    """Forget cache positions [length, written) of every layer (zeroed, so that nothing stale stays).

    The model attends only to cached positions <= each query's position, all rewritten by the call
    that feeds them, so continuing from `length` never reads this region; zeroing touches only the
    few positions a rejected round wrote, not the whole cache."""
    if not 0 <= length <= written:
        raise ValueError(f"cannot roll back to {length} with {written} positions written")
    for block in model.transformer.h:
        cache = block.attn.kv_cache
        if cache is None:
            raise RuntimeError("the model has no KV cache: call setup_kv_cache() first")
        cache.k[:, :, length:written].zero_()
        cache.v[:, :, length:written].zero_()


@dataclass
class CacheCursor:
    """A model with a batch-1 KV cache and how many leading positions of it hold the sequence."""

    model: GPT
    vocab_size: int
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # lit_gpt.generate.forward_fn(model)
    length: int = 0  # positions holding keys/values of the current sequence
    written: int = 0  # one past the highest position written since the last rollback
    forward_passes: int = 0

    def feed(self, token_ids: Sequence[int]) -> torch.Tensor:
        """Append `token_ids` at the next positions; their logits (T, vocab_size)."""
        device = self.model.lm_head.weight.device
        positions = torch.arange(self.length, self.length + len(token_ids), device=device)
        logits = self.forward(torch.tensor([list(token_ids)], device=device), positions)[0]
        self.length += len(token_ids)
        self.written = max(self.written, self.length)
        self.forward_passes += 1
        return logits[:, : self.vocab_size]  # padding rows of the head are no tokens

    def rollback(self, length: int) -> None:
        rollback_kv_cache(self.model, length, self.written)
        self.length = self.written = length


# --- the generation loop ---------------------------------------------------------------------------
@dataclass
class SpeculativeStats:
    proposed: int = 0  # draft tokens offered to the target
    accepted: int = 0  # of those, kept
    rejected: int = 0  # rounds that ended on a rejected proposal (the proposals after it go unchecked)
    generated: int = 0
    rounds: int = 0
    target_forward_passes: int = 0  # one per round: the prompt is scored in the first round's pass
    draft_forward_passes: int = 0
    k_history: list[int] = field(default_factory=list)  # k of each round (adaptive k changes it)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def alpha(self) -> float:
        """Per-token acceptance probability, the alpha of E = (1 - alpha^(k+1)) / (1 - alpha): accepted over
        checked proposals. At least `acceptance_rate`, whose denominator also counts the proposals after
        a rejection, which are never checked."""
        checked = self.accepted + self.rejected
        return self.accepted / checked if checked else 0.0

    @property
    def tokens_per_target_pass(self) -> float:
        return self.generated / self.target_forward_passes if self.target_forward_passes else 0.0

    def as_dict(self) -> dict:
        return {
            "proposed": self.proposed,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "acceptance_rate": self.acceptance_rate,
            "alpha": self.alpha,
            "generated": self.generated,
            "rounds": self.rounds,
            "target_forward_passes": self.target_forward_passes,
            "draft_forward_passes": self.draft_forward_passes,
            "tokens_per_target_pass": self.tokens_per_target_pass,
        }


@dataclass
class SpeculativeResult:
    tokens: list[int]  # the new tokens, without the prompt
    stats: SpeculativeStats


def next_k(k: int, accepted: int, k_max: int) -> int:
    """Adaptive draft length: one more after a fully accepted round, one fewer when fewer than half
    of the proposals were accepted, within [1, k_max]."""
    if accepted == k:
        return min(k + 1, k_max)
    if accepted < k // 2:
        return max(k - 1, 1)
    return k


class SpeculativeDecoder:
    """One sequence decoded speculatively: the token ids so far, both models' KV caches (batch 1, set
    up here, dropped by `close`) and the statistics of the rounds run."""

    def __init__(
        self,
        target: GPT,
        draft: GPT,
        prompt: Sequence[int],
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        compile: bool = False,
    ) -> None:
        self.sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p)
        self.compile = compile
        self.generator = generator
        self.sequence = list(prompt)
        self.stats = SpeculativeStats()
        self.device = target.lm_head.weight.device
        for model in (target, draft):
            model.setup_kv_cache(batch_size=1, device=self.device)
        vocab_size = target.config.vocab_size
        self.target = CacheCursor(target, vocab_size, forward_fn(target, compile))
        self.draft = CacheCursor(draft, vocab_size, forward_fn(draft, compile))

    @torch.inference_mode()
    def round(self, k: int) -> list[int]:
        """Propose k tokens, verify them; the 1 to k + 1 tokens this appends to the sequence."""
        greedy = self.sampling["temperature"] == 0
        length = len(self.sequence)
        proposals, q_rows = [], []
        for _ in range(k):
            # the draft first feeds what it has not seen (its last proposal and the bonus token of the
            # previous round, or the whole prompt), then each proposal but the last
            logits = self.draft.feed((self.sequence + proposals)[self.draft.length :])[-1]
            if greedy:
                proposals.append(int(logits.argmax()))
            else:
                q_rows.append(filtered_probs(logits, **self.sampling))
                proposals.append(_draw(q_rows[-1], self.generator))
        # one target pass over its unseen tail and all proposals: k + 1 next-token distributions
        logits = self.target.feed((self.sequence + proposals)[self.target.length :])[-(k + 1) :]
        p = filtered_probs(logits, **self.sampling)
        q = torch.stack(q_rows) if q_rows else p[:0]
        accepted, following = verify_draft(
            p, q, torch.tensor(proposals, dtype=torch.long, device=self.device), greedy, self.generator
        )
        # keep every position that holds an accepted token; the newest token is fed next round
        self.target.rollback(length + accepted)
        self.draft.rollback(min(self.draft.length, length + accepted))
        emitted = proposals[:accepted] + [following]
        self.sequence += emitted
        s = self.stats
        s.rounds, s.proposed, s.accepted = s.rounds + 1, s.proposed + k, s.accepted + accepted
        s.rejected += accepted < k
        s.k_history.append(k)
        s.target_forward_passes, s.draft_forward_passes = self.target.forward_passes, self.draft.forward_passes
        return emitted

    def close(self) -> None:
        release_kv_cache(self.target.model, self.compile)
        release_kv_cache(self.draft.model, self.compile)


def speculative_generate(
    target: GPT,
    draft: GPT,
    prompt: torch.Tensor,
    max_new_tokens: int,
    k: int = 4,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    adaptive: bool = False,
    k_max: int | None = None,
    compile: bool = False,
) -> SpeculativeResult:
    """Up to `max_new_tokens` tokens following `prompt` (T,), distributed as `target`'s own sampling.

    `k` draft tokens per round (the first k when `adaptive`, which then moves it within [1, k_max],
    k_max defaulting to 2 k). `compile`: both models' short calls run compiled (lit_gpt.generate.forward_fn).
    Stops after an `eos_id` token (kept). Both models must share the device
    and the vocabulary, and have `max_seq_length` >= T + max_new_tokens."""
    if prompt.dim() != 1 or prompt.numel() == 0:
        raise ValueError(f"prompt must be a non-empty 1-D tensor of token ids, got shape {tuple(prompt.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    k_max = k_max if k_max is not None else 2 * k
    if not 1 <= k <= k_max:
        raise ValueError(f"need 1 <= k <= k_max, got k={k}, k_max={k_max}")
    check_sampling(temperature, top_k, top_p)
    check_vocab(target.config.vocab_size, draft.config.vocab_size)
    if draft.lm_head.weight.device != target.lm_head.weight.device:
        raise ValueError(f"target on {target.lm_head.weight.device} but draft on {draft.lm_head.weight.device}")
    needed = prompt.numel() + max_new_tokens
    for role, model in (("target", target), ("draft", draft)):
        if needed > model.max_seq_length:
            raise ValueError(
                f"prompt ({prompt.numel()}) + max_new_tokens ({max_new_tokens}) = {needed} exceeds the "
                f"{role}'s max_seq_length ({model.max_seq_length}); set it to {needed}"
            )

    new: list[int] = []
    with torch.inference_mode():
        decoder = SpeculativeDecoder(target, draft, prompt.tolist(), temperature, top_k, top_p, generator, compile)
        try:
            while len(new) < max_new_tokens:
                # a round yields up to k_round + 1 tokens: never propose past max_new_tokens
                k_round = min(k, max_new_tokens - len(new) - 1)
                emitted = decoder.round(k_round)
                if eos_id in emitted:
                    new += emitted[: emitted.index(eos_id) + 1]
                    break
                new += emitted
                if adaptive and k_round == k:
                    k = next_k(k, len(emitted) - 1, k_max)  # emitted = accepted proposals + 1
        finally:
            decoder.close()
    decoder.stats.generated = len(new)
    return SpeculativeResult(new, decoder.stats)


# --- loading a pair --------------------------------------------------------------------------------
def check_vocab(target_vocab: int, draft_vocab: int) -> None:
    if target_vocab != draft_vocab:
        raise ValueError(
            f"the target's vocabulary has {target_vocab} tokens but the draft's {draft_vocab}: "
            f"speculative decoding needs both models to share one tokenizer"
        )


def check_same_tokenizer(target: LoadedModel, draft: LoadedModel) -> Tokenizer | None:
    """Raise ValueError unless the pair (`lit_gpt.inference.load_for_inference(..., require_tokenizer=False)`)
    shares a vocabulary and, when both carry a tokenizer, the same one (same file contents and special ids).
    Returns the tokenizer found, if any."""
    check_vocab(target.config.vocab_size, draft.config.vocab_size)
    tokenizers = [target.tokenizer, draft.tokenizer]
    if all(tokenizers):
        a, b = (tok.identity() for tok in tokenizers)
        differ = [key for key in a if a[key] != b.get(key)]
        if differ:
            raise ValueError(
                f"{target.path} and {draft.path} carry different tokenizers (differing: "
                f"{', '.join(f'{key} {a[key]!r} vs {b.get(key)!r}' for key in differ)}); "
                f"speculative decoding needs one tokenizer"
            )
    return tokenizers[0] or tokenizers[1]
