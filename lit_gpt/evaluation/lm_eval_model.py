"""Our GPT as an lm-evaluation-harness model, registered as `lit_gpt`.

    lit-lm-eval --model lit_gpt --model_args checkpoint=out/step-00100000,dtype=bfloat16 --tasks hellaswag

(`lit-lm-eval` is lm-eval's own command line with this module imported; lm-eval 0.4 has no plugin
discovery, so plain `lm_eval` does not know `lit_gpt`.)

Scoring follows lm-eval's conventions for a Hugging Face causal model, so that a checkpoint scores the
same here and after conversion to `LlamaForCausalLM` (`lm_eval --model hf`):

- a context is encoded with BOS in front, as the exported Llama tokenizer does by default, and an
  empty context is BOS alone;
- the context's trailing spaces move to the continuation, `context + continuation` is encoded whole,
  and the continuation is the tokens after the context's (lm-eval's `TemplateLM._encode_pair`), so a
  word is never split differently from how the model saw it in training;
- log-probabilities are over the full (padded) output vocabulary, which the exported model keeps;
- a window longer than the model's context loses tokens on the left.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import torch
import torch.nn as nn
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import normalize_gen_kwargs
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from lit_gpt.generate import generate
from lit_gpt.inference import load_for_inference
from lit_gpt.tokenizer import Tokenizer

log = logging.getLogger(__name__)

# (request key for lm-eval's cache or None, context token ids, continuation token ids)
TokenRequest = tuple[tuple[str, str] | None, list[int], list[int]]


@register_model("lit_gpt")
class LitGPTLM(TemplateLM):
    """An lm-eval `LM` over a lit checkpoint (`checkpoint=`) or an in-memory GPT (`model=` and `tokenizer=`).

    Args:
        checkpoint: a lit checkpoint folder, a `.pth` file, a pretraining checkpoint folder, a run folder or a
            Hugging Face folder (anything `lit_gpt.inference.load_for_inference` reads).
        tokenizer_dir: folder of the tokenizer files (default: the checkpoint's folder).
        device: cpu, cuda, cuda:1, ... or auto.
        dtype: float32, bfloat16, float16 or auto (bfloat16 on a GPU that supports it, else float32).
        batch_size: sequences per forward pass when scoring.
        max_batch_size: passed by lm-eval with every model; only a fixed batch size is supported, so it
            must be None or at least `batch_size`.
        max_length: the longest window the model sees (default: the config's block_size).
        max_gen_toks: new tokens generated when a task does not say.
        add_bos_token: put BOS in front of contexts (the Llama convention, and how we pretrain).
        model, tokenizer: an already loaded GPT and Tokenizer instead of `checkpoint`. The model is used
            as it is (device, dtype, mode); scoring puts it in eval mode.
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        tokenizer_dir: str | Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
        max_length: int | None = None,
        max_gen_toks: int = 256,
        add_bos_token: bool = True,
        model: nn.Module | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        super().__init__()
        if (checkpoint is None) == (model is None):
            raise ValueError("give exactly one of checkpoint= (a path) and model= (a loaded GPT)")
        if str(batch_size).startswith("auto"):
            raise ValueError("batch_size=auto is not supported by the lit_gpt model; give a number")
        self._batch_size = int(batch_size)
        if self._batch_size < 1 or (max_batch_size is not None and int(max_batch_size) < self._batch_size):
            raise ValueError(f"batch_size must be >= 1 and <= max_batch_size, got {batch_size} and {max_batch_size}")
        if model is None:
            loaded = load_for_inference(checkpoint, device, dtype, tokenizer_dir, require_tokenizer=tokenizer is None)
            model, tokenizer, self._device = loaded.model, tokenizer or loaded.tokenizer, loaded.device
        else:
            if tokenizer is None:
                if tokenizer_dir is None:
                    raise ValueError("model= needs tokenizer= or tokenizer_dir=")
                tokenizer = Tokenizer(tokenizer_dir)
            self._device = next(model.parameters()).device
        self.model, self.tokenizer = model, tokenizer
        self.config = model.config
        self._max_length = int(max_length or self.config.block_size)
        self._max_gen_toks = int(max_gen_toks)
        self.add_bos_token = bool(add_bos_token)
        if self.add_bos_token and tokenizer.bos_id is None:
            raise ValueError(f"{tokenizer.path} defines no BOS token; pass add_bos_token=False")
        if model.max_seq_length < self._max_length:
            model.max_seq_length = self._max_length  # RoPE tables for the longer windows

    # --- what lm-eval asks of a TemplateLM ----------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_id

    @property
    def prefix_token_id(self) -> int:
        """What an empty context becomes: BOS, or EOS for a tokenizer without one."""
        return self.tokenizer.bos_id if self.tokenizer.bos_id is not None else self.tokenizer.eos_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.path)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """Token ids of `string`; BOS in front when `add_special_tokens` says so (None: `add_bos_token`)."""
        bos = self.add_bos_token if add_special_tokens is None else add_special_tokens
        return self.tokenizer.encode(string, bos=bos and self.tokenizer.bos_id is not None)

    def tok_decode(self, tokens: Sequence[int], **kwargs) -> str:
        return self.tokenizer.decode(tokens)

    # --- scoring ------------------------------------------------------------------------------
    @torch.no_grad()
    def _loglikelihood_tokens(
        self, requests: list[TokenRequest], disable_tqdm: bool = False, **kwargs
    ) -> list[tuple[float, bool]]:
        """(sum of log p(continuation | context), whether greedy decoding yields the continuation) per
        request. Requests run longest first in right-padded batches (padding after a causal row
        changes nothing before it)."""
        L = self.max_length
        for _, _, continuation in requests:
            if not 0 < len(continuation) <= L:
                raise ValueError(f"a continuation of {len(continuation)} tokens does not fit a window of {L}")
        # the window: the last L + 1 tokens; the model reads all but the last
        windows = [(context + continuation)[-(L + 1) :][:-1] for _, context, continuation in requests]
        order = sorted(range(len(requests)), key=lambda i: -len(windows[i]))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        was_training = self.model.training
        self.model.eval()
        with tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="loglikelihood") as bar:
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                width = len(windows[batch[0]])
                x = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    x[row, : len(windows[i])] = torch.tensor(windows[i])
                logits = self.model(x.to(self._device))
                for row, i in enumerate(batch):
                    key, _, continuation = requests[i]
                    n = len(windows[i])
                    # logits at position j predict token j + 1: the continuation's are the last len(continuation)
                    logprobs = torch.log_softmax(logits[row, n - len(continuation) : n].float(), dim=-1)
                    target = torch.tensor(continuation, device=logprobs.device)
                    score = float(logprobs.gather(-1, target[:, None]).sum())
                    greedy = bool((logprobs.argmax(-1) == target).all())
                    results[i] = (score, greedy)
                    if key is not None:
                        self.cache_hook.add_partial("loglikelihood", key, results[i])
                bar.update(len(batch))
        self.model.train(was_training)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """log p(text | BOS) of each whole text, however long: lm-eval's disjoint windows of
        `max_length` tokens, each scoring only tokens no earlier window scored, with as much context
        before them as fits."""
        pieces: list[TokenRequest] = []
        owner: list[int] = []
        for i, (text,) in enumerate(req.args for req in requests):
            tokens = self.tok_encode(text, add_special_tokens=False)
            for context, continuation in map(
                make_disjoint_window,
                get_rolling_token_windows(
                    token_list=tokens, prefix_token=self.prefix_token_id, max_seq_len=self.max_length, context_len=1
                ),
            ):
                pieces.append((None, context, continuation))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (score, _) in zip(owner, self._loglikelihood_tokens(pieces, disable_tqdm=disable_tqdm)):
            totals[i] += score
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Continue each context until a stop sequence (cut off the result), EOS or `max_gen_toks`
        tokens. Greedy unless the task asks for sampling. One sequence at a time, with the KV cache."""
        outputs = []
        was_training = self.model.training
        self.model.eval()
        for context, gen_kwargs in tqdm(
            [req.args for req in requests], disable=disable_tqdm or self.rank != 0, desc="generate_until"
        ):
            outputs.append(self._generate_one(context, gen_kwargs))
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), outputs[-1])
        self.model.train(was_training)
        return outputs

    def _generate_one(self, context: str, gen_kwargs: dict) -> str:
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        stops = [s for s in kwargs.pop("until") if s]  # a list after normalisation
        max_new = kwargs.pop("max_gen_toks")
        temperature = float(kwargs.pop("temperature", 0.0)) if kwargs.pop("do_sample", False) else 0.0
        top_k, top_p = kwargs.pop("top_k", None), kwargs.pop("top_p", None)
        if kwargs:
            log.warning("lit_gpt ignores the generation arguments %s", sorted(kwargs))
        room = self.max_length - max_new
        if room < 1:
            raise ValueError(f"max_gen_toks={max_new} leaves no room for a context in max_length={self.max_length}")
        prompt = torch.tensor(self.tok_encode(context)[-room:], dtype=torch.long)
        new: list[int] = []
        text = ""
        with closing(
            generate(
                self.model, prompt, max_new, temperature=temperature, top_k=top_k, top_p=top_p, eos_id=self.eot_token_id
            )
        ) as tokens:
            for token in tokens:
                if token == self.eot_token_id:
                    break
                new.append(token)
                # decode the whole continuation: a piece's leading space depends on what precedes it
                text = self.tok_decode(new)
                cut = min((text.find(s) for s in stops if s in text), default=-1)
                if cut >= 0:
                    return text[:cut]
        return text


def lm_eval_cli() -> None:
    """lm-eval's own command line, with `--model lit_gpt` available (the `lit-lm-eval` console script)."""
    import argparse

    from lm_eval.__main__ import cli_evaluate

    from lit_gpt.evaluation.offline import check_task_data_offline
    from lit_gpt.evaluation.periodic import task_manager
    from lit_gpt.exit_codes import run_command

    # offline, a task without its data on disk stops here in one line instead of after lm-eval's retries
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--tasks", "-t")
    parser.add_argument("--include_path")
    known, _ = parser.parse_known_args(sys.argv[1:])
    names = [t.strip() for t in (known.tasks or "").split(",") if t.strip()]
    if names:
        run_command(lambda: check_task_data_offline(task_manager(known.include_path, tuple(names)), names))
    run_command(cli_evaluate)  # a missing checkpoint in --model_args, say: one line
