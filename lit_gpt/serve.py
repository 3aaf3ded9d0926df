"""An OpenAI-compatible HTTP server over one model: `/v1/models`, `/v1/completions` and
`/v1/chat/completions` (with server-sent-event streaming), and a minimal chat page at `/`.

Built on FastAPI + uvicorn: plain ASGI routes and `StreamingResponse` are all the OpenAI protocol needs,
and the batching below is ours to control (LitServe's batching collects whole requests, not decoding
steps of streams that start and end at different times).

Batching: a generation thread takes the requests waiting (up to `max_batch`), left-pads their prompts
to one length, prefills them in one forward pass and decodes them together, one token per row a step,
each row with its own sampling settings, stop strings and token budget. Padding is kept out of
attention by the model's `attn_mask`; RoPE sees only distances, so a prompt's left offset changes
nothing. Requests that arrive meanwhile form the next batch. On a GPU the decoding step is compiled
with static shapes (a batch is then always `max_batch` rows) and replayed as a CUDA graph.
"""

from __future__ import annotations

import asyncio
import html
import json
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fastapi import Request  # at module level: FastAPI resolves the routes' annotations here

from lit_gpt.generate import sample
from lit_gpt.model import GPT
from lit_gpt.sft.inference import StopStream
from lit_gpt.sft.templates import ChatTemplate, SegmentEncoder
from lit_gpt.tokenizer import Tokenizer


class BadRequest(ValueError):
    """A request the server refuses, with the HTTP status and OpenAI error fields to answer with."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


@dataclass
class GenerationRequest:
    ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float | None
    stop: tuple[str, ...]
    # called from the generation thread: (new text, finish reason or None, completion tokens so far)
    emit: Callable[[str, str | None, int], None]
    cancelled: bool = False
    generated: int = field(default=0, init=False)


class BatchedGenerator:
    """The generation thread: batches of waiting requests decoded together (see the module's docstring)."""

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        max_batch: int = 8,
        compile: bool = False,
        seed: int = 1234,
        batch_window_s: float = 0.005,
    ) -> None:
        self.model, self.tokenizer, self.max_batch, self.compile = model, tokenizer, max_batch, compile
        self.device = model.lm_head.weight.device
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.batch_window_s = batch_window_s
        self.pending: deque[GenerationRequest] = deque()
        self.wakeup = threading.Condition()
        self.stopping = False
        self.batches = 0  # batches run so far, and the most rows one had (for logs and tests)
        self.largest_batch = 0
        self._compiled = None
        self._thread = threading.Thread(target=self._run, name="generation", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self.wakeup:
            self.stopping = True
            self.wakeup.notify_all()
        self._thread.join(timeout=10)

    def submit(self, request: GenerationRequest) -> None:
        with self.wakeup:
            self.pending.append(request)
            self.wakeup.notify()

    # --- the generation thread -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self.wakeup:
                while not self.pending and not self.stopping:
                    self.wakeup.wait()
                if self.stopping:
                    return
            time.sleep(self.batch_window_s)  # let requests sent together arrive together
            batch = self._take_batch()
            try:
                self._generate(batch)
            except Exception as e:  # a failed batch ends its own streams with the error, not the server
                for r in batch:
                    r.emit(f"[generation failed: {e}]", "error", r.generated)

    def _take_batch(self) -> list[GenerationRequest]:
        """The oldest waiting requests, as many as fit one batch: rows share positions, so the longest
        prompt plus the largest token budget must fit the context."""
        context = self.model.max_seq_length
        batch: list[GenerationRequest] = []
        with self.wakeup:
            kept: deque[GenerationRequest] = deque()
            while self.pending and len(batch) < self.max_batch:
                r = self.pending.popleft()
                if r.cancelled:
                    continue
                longest = max([len(x.ids) for x in batch] + [len(r.ids)])
                budget = max([x.max_tokens for x in batch] + [r.max_tokens])
                if batch and longest + budget > context:
                    kept.append(r)
                    continue
                batch.append(r)
            self.pending.extendleft(reversed(kept))
        return batch

    def _decode_step(self):
        if not self.compile:
            return lambda idx, pos, mask: self.model(idx, input_pos=pos, attn_mask=mask)
        if self._compiled is None:
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            self._compiled = torch.compile(self.model, mode=mode, fullgraph=True, dynamic=False)
        compiled = self._compiled
        # a CUDA graph's output is overwritten by its next replay: keep a copy
        return lambda idx, pos, mask: compiled(idx, input_pos=pos, attn_mask=mask).clone()

    @torch.inference_mode()
    def _generate(self, batch: list[GenerationRequest]) -> None:
        if not batch:
            return
        model, device = self.model, self.device
        rows = self.max_batch if self.compile else len(batch)  # static shapes when compiled
        longest = max(len(r.ids) for r in batch)
        context = model.max_seq_length
        idx = torch.zeros(rows, longest, dtype=torch.long)
        key_mask = torch.zeros(rows, context, dtype=torch.bool)  # cached positions holding a row's tokens
        for row in range(rows):
            ids = batch[row].ids if row < len(batch) else [0]  # filler rows: one token, never read
            idx[row, longest - len(ids) :] = torch.tensor(ids)
            key_mask[row, longest - len(ids) : longest] = True
        idx, key_mask = idx.to(device), key_mask.to(device)
        # prefill: a token attends to its row's tokens; a padding query to itself alone (a query with no
        # key at all would make NaN on some attention backends, and padding keys feed no real token)
        padding = ~key_mask[:, :longest]
        prefill_mask = key_mask[:, None, :longest] | (
            padding[:, :, None] & torch.eye(longest, dtype=torch.bool, device=device)
        )
        model.setup_kv_cache(batch_size=rows, device=device)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        streams = [StopStream(self.tokenizer, r.stop) for r in batch]
        done = [False] * len(batch)
        eos = self.tokenizer.eos_id
        logits = model(idx, input_pos=torch.arange(longest, device=device), attn_mask=prefill_mask[:, None])[:, -1]
        step = self._decode_step()
        pos = longest
        while True:
            tokens = torch.zeros(rows, dtype=torch.long, device=device)
            for row, r in enumerate(batch):
                if done[row]:
                    continue
                if r.cancelled:
                    done[row] = True
                    continue
                token = int(sample(logits[row], r.temperature, None, r.top_p, self.generator))
                tokens[row] = token
                r.generated += 1
                finish = None
                if token == eos:
                    piece, finish = streams[row].finish(), "stop"
                else:
                    piece = streams[row].add(token)
                    if streams[row].stopped:
                        finish = "stop"
                    elif r.generated >= r.max_tokens:
                        piece, finish = piece + streams[row].finish(), "length"
                if piece or finish:
                    r.emit(piece, finish, r.generated)
                done[row] = finish is not None
            if all(done) or pos >= context:
                break
            key_mask[:, pos] = True
            logits = step(tokens.view(rows, 1), torch.tensor([pos], device=device), key_mask[:, None, None])[:, -1]
            pos += 1
        for row, r in enumerate(batch):  # the context ran out (the request checks make it rare)
            if not done[row]:
                r.emit(streams[row].finish(), "length", r.generated)
        if not self.compile:
            model.clear_kv_cache()


# --- the HTTP API ------------------------------------------------------------------------------------
@dataclass
class ServedModel:
    name: str
    model: GPT
    tokenizer: Tokenizer
    template: ChatTemplate | None  # None: /v1/chat/completions refuses (a base model)

    @property
    def context(self) -> int:
        return self.model.max_seq_length


def _number(body: dict[str, Any], key: str, default, kind=float, low=None, high=None, allow_none=True):
    value = body.get(key, default)
    if value is None:
        if allow_none:
            return default
        raise BadRequest(f"'{key}' must be given", key)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind is int and not float(value).is_integer())
    ):
        raise BadRequest(f"'{key}' must be {'an integer' if kind is int else 'a number'}, got {value!r}", key)
    value = kind(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadRequest(f"'{key}' must be in [{low}, {high}], got {value}", key)
    return value


def _stop_strings(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise BadRequest("'stop' must be a non-empty string or a list of up to 4 of them", "stop")
    return stop


def build_request(served: ServedModel, body: Any, chat: bool) -> tuple[GenerationRequest, int]:
    """A generation request from an OpenAI request body (without its `emit`), and its prompt length;
    BadRequest names the field at fault."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if model != served.name:
        raise BadRequest(
            f"the model {model!r} does not exist; this server serves {served.name!r}", "model", 404, "model_not_found"
        )
    if _number(body, "n", 1, int) != 1:
        raise BadRequest("only n = 1 is supported", "n")
    if chat:
        if served.template is None:
            raise BadRequest(f"{served.name} has no chat template (start the server with --template)", "messages")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list of {role, content} objects", "messages")
        try:
            ids, _ = SegmentEncoder(served.tokenizer).encode_conversation(
                served.template, messages, add_generation_prompt=True
            )
        except ValueError as e:
            raise BadRequest(f"'messages': {e}", "messages") from None
        stop = list(served.template.stop_strings)
        default_max = served.context - len(ids)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise BadRequest("'prompt' must be a non-empty string (one prompt per request)", "prompt")
        ids = served.tokenizer.encode(prompt, bos=served.tokenizer.bos_id is not None)
        stop, default_max = [], 16
    stop += _stop_strings(body)
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, key, default_max, int, low=1)
    if len(ids) + max_tokens > served.context:
        raise BadRequest(
            f"the prompt ({len(ids)} tokens) plus {key} ({max_tokens}) exceeds the model's context of "
            f"{served.context} tokens",
            key,
        )
    temperature = _number(body, "temperature", 1.0, float, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, float, 0.0, 1.0)
    if top_p == 0:
        raise BadRequest("'top_p' must be above 0", "top_p")
    request = GenerationRequest(
        ids, max_tokens, temperature, None if top_p == 1 else top_p, tuple(stop), emit=lambda *a: None
    )
    return request, len(ids)


CHAT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{MODEL}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 15px/1.45 system-ui, sans-serif; max-width: 46rem; margin: 0 auto; padding: 1rem; color: #222; }
 h1 { font-size: 1.1rem; } #log { border: 1px solid #ccc; border-radius: 6px; padding: .6rem; min-height: 16rem; }
 .user, .assistant { white-space: pre-wrap; margin: .4rem 0; padding: .4rem .6rem; border-radius: 6px; }
 .user { background: #e8f0fe; } .assistant { background: #f3f3f3; }
 form { display: flex; gap: .5rem; margin-top: .6rem; } textarea { flex: 1; font: inherit; height: 3.2rem; }
</style></head>
<body>
<h1>Chat with {{MODEL}}</h1>
<div id="log"></div>
<form id="form"><textarea id="text" placeholder="Your message (Enter sends, Shift+Enter: new line)"></textarea>
<button id="send">Send</button><button type="button" id="reset">Reset</button></form>
<script>
const model = "{{MODEL}}", log = document.getElementById("log"), text = document.getElementById("text");
let messages = [];
function bubble(role, content) {
  const div = document.createElement("div"); div.className = role; div.textContent = content;
  log.appendChild(div); return div;
}
async function send(event) {
  event.preventDefault();
  const content = text.value.trim(); if (!content) return;
  text.value = ""; messages.push({role: "user", content}); bubble("user", content);
  const out = bubble("assistant", ""); let answer = "";
  const response = await fetch("/v1/chat/completions", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({model, messages, stream: true, temperature: 0.7})});  // max_tokens: the rest of the context
  if (!response.ok) { out.textContent = "error: " + (await response.json()).error.message; messages.pop(); return; }
  const reader = response.body.getReader(), decoder = new TextDecoder(); let buffer = "";
  for (;;) {
    const {value, done} = await reader.read(); if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
      const line = buffer.slice(0, cut).replace(/^data: /, ""); buffer = buffer.slice(cut + 2);
      if (line === "[DONE]") continue;
      const delta = JSON.parse(line).choices?.[0]?.delta?.content || "";
      answer += delta; out.textContent = answer;
    }
  }
  messages.push({role: "assistant", content: answer.trim()});
}
document.getElementById("form").addEventListener("submit", send);
text.addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) send(e); });
document.getElementById("reset").addEventListener("click", () => { messages = []; log.textContent = ""; });
// /?q=... opens the page with that message sent (a link that asks a question)
const asked = new URLSearchParams(location.search).get("q");
if (asked) { text.value = asked; send(new Event("submit")); }
</script></body></html>
"""


def create_app(served: ServedModel, engine: BatchedGenerator):
    """The FastAPI application; `engine` must be started (see `serve`)."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

    app = FastAPI(title=f"lit_gpt: {served.name}")
    created = int(time.time())

    def error(e: BadRequest) -> JSONResponse:
        kind = "not_found_error" if e.status == 404 else "invalid_request_error"
        return JSONResponse(
            {"error": {"message": str(e), "type": kind, "param": e.param, "code": e.code}}, status_code=e.status
        )

    @app.get("/", response_class=HTMLResponse)
    def chat_page() -> str:
        return CHAT_PAGE.replace("{{MODEL}}", html.escape(served.name))

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": served.name,
                    "object": "model",
                    "created": created,
                    "owned_by": "lit_gpt",
                    "context_length": served.context,
                }
            ],
        }

    async def complete(http_request: Request, chat: bool):
        try:
            body = await http_request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(BadRequest("the request body is not valid JSON"))
        try:
            request, prompt_tokens = build_request(served, body, chat)
        except BadRequest as e:
            return error(e)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        request.emit = lambda text, finish, n: loop.call_soon_threadsafe(events.put_nowait, (text, finish, n))
        engine.submit(request)
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        base = {"id": ident, "created": int(time.time()), "model": served.name}
        usage = lambda n: {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": n,  # noqa: E731
            "total_tokens": prompt_tokens + n,
        }

        if body.get("stream"):

            async def stream():
                kind = "chat.completion.chunk" if chat else "text_completion"
                try:
                    if chat:
                        yield _sse(
                            {
                                **base,
                                "object": kind,
                                "choices": [
                                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                                ],
                            }
                        )
                    while True:
                        text, finish, n = await events.get()
                        if finish == "error":
                            yield _sse({"error": {"message": text, "type": "server_error"}})
                            break
                        choice = (
                            {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}
                            if chat
                            else {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
                        )
                        chunk = {**base, "object": kind, "choices": [choice]}
                        if finish and (body.get("stream_options") or {}).get("include_usage"):
                            chunk["usage"] = usage(n)
                        yield _sse(chunk)
                        if finish:
                            break
                    yield "data: [DONE]\n\n"
                finally:
                    request.cancelled = True  # a client that went away frees its row

            return StreamingResponse(stream(), media_type="text/event-stream")

        parts: list[str] = []
        try:
            while True:
                text, finish, n = await events.get()
                if finish == "error":
                    return JSONResponse({"error": {"message": text, "type": "server_error"}}, status_code=500)
                parts.append(text)
                if finish:
                    break
        finally:
            request.cancelled = True
        content = "".join(parts)
        choice = (
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
            if chat
            else {"index": 0, "text": content, "logprobs": None, "finish_reason": finish}
        )
        return {
            **base,
            "object": "chat.completion" if chat else "text_completion",
            "choices": [choice],
            "usage": usage(n),
        }

    @app.post("/v1/completions")
    async def completions(http_request: Request):
        return await complete(http_request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(http_request: Request):
        return await complete(http_request, chat=True)

    return app


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def load_served_model(
    checkpoint: Path,
    name: str | None = None,
    template: str | None = None,
    device: str = "auto",
    dtype: str | None = None,
    tokenizer_dir: Path | None = None,
) -> ServedModel:
    """A lit checkpoint (folder, .pth, pretraining or fine-tuning DCP folder, run folder) or a Hugging Face
    folder, with the chat template it was fine-tuned with (`template` names another; none: completions only)."""
    from lit_gpt.checkpoint import checkpoint_folder
    from lit_gpt.inference import load_for_inference
    from lit_gpt.sft.templates import get_template, template_of
    from lit_gpt.training.checkpointing import find_checkpoint

    path = find_checkpoint(Path(checkpoint))  # the template is checked before the weights load
    chat_template = get_template(template) if template else template_of(checkpoint_folder(path))
    loaded = load_for_inference(path, device, dtype, tokenizer_dir)
    return ServedModel(name or loaded.config.name or loaded.folder.name, loaded.model, loaded.tokenizer, chat_template)


def serve(
    checkpoint: Path,
    name: str | None = None,
    template: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 8,
    compile: str = "auto",
    device: str = "auto",
    dtype: str | None = None,
    tokenizer_dir: Path | None = None,
    seed: int = 1234,
) -> None:
    """Load the model and serve it with uvicorn until interrupted."""
    import uvicorn

    served = load_served_model(checkpoint, name, template, device, dtype, tokenizer_dir)
    on_gpu = served.model.lm_head.weight.is_cuda
    engine = BatchedGenerator(
        served.model, served.tokenizer, max_batch, compile=compile == "on" or (compile == "auto" and on_gpu), seed=seed
    )
    engine.start()
    print(
        f"serving {served.name} (context {served.context}, chat template "
        f"{served.template.name if served.template else 'none'}) on http://{host}:{port}",
        file=sys.stderr,
    )
    try:
        uvicorn.run(create_app(served, engine), host=host, port=port, log_level="info")
    finally:
        engine.stop()
