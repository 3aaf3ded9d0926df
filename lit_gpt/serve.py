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

Trust: every request field is checked before it reaches the generation thread (a value that slips through
and fails there ends its own request only, not its batch-mates); a body over `max_body_bytes` is refused
from its Content-Length before it is read; with an API key every route but the static chat page needs it.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import math
import os
import socket
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
from fastapi.responses import JSONResponse

from lit_gpt.generate import sample
from lit_gpt.model import GPT
from lit_gpt.sft.inference import StopStream
from lit_gpt.sft.templates import ChatTemplate, SegmentEncoder
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.training.option_checks import check_path

DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: some 250k tokens of English text, more than any context served here
# Sampling divides the logits by the temperature: below this the draw differs from the argmax only between
# logits a few thousandths apart, and a tiny one overflows float32 to inf (then NaN probabilities). A
# temperature below it decodes greedily, as 0 does.
MIN_TEMPERATURE = 1e-3
API_KEY_ENV = "LIT_GPT_API_KEY"


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
    ended: bool = field(default=False, init=False)  # its last event (a finish reason or the error) is sent


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
            except Exception as e:  # a step shared by the batch failed: its requests end, the server goes on
                for r in batch:
                    if not r.ended:
                        _end_with_error(r, e)

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
                try:
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
                    r.ended = finish is not None
                    if piece or finish:
                        r.emit(piece, finish, r.generated)
                except Exception as e:  # this row's own work failed: it ends alone, its batch-mates go on
                    _end_with_error(r, e)
                    finish = "error"
                done[row] = finish is not None
            if all(done) or pos >= context:
                break
            key_mask[:, pos] = True
            logits = step(tokens.view(rows, 1), torch.tensor([pos], device=device), key_mask[:, None, None])[:, -1]
            pos += 1
        for row, r in enumerate(batch):  # the context ran out (the request checks make it rare)
            if not done[row]:
                r.ended = True
                r.emit(streams[row].finish(), "length", r.generated)
        if not self.compile:
            model.clear_kv_cache()


def _end_with_error(request: GenerationRequest, e: Exception) -> None:
    """End a request whose generation failed: the error is logged and sent to its client."""
    print(f"a request failed while generating: {type(e).__name__}: {e}", file=sys.stderr)
    request.ended = True
    try:
        request.emit(f"generation failed: {type(e).__name__}: {e}", "error", request.generated)
    except RuntimeError:  # the server's event loop is closed: no client is left to tell
        pass


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


@dataclass
class ApiRequest:
    """An OpenAI request, checked: the generation it asks for and how to answer it."""

    generation: GenerationRequest
    prompt_tokens: int
    stream: bool
    include_usage: bool


# Fields of the OpenAI API this server does not implement: refused unless absent, null or the value that asks
# for nothing, rather than answered as if they had been applied.
_INERT_VALUES: dict[str, tuple] = {
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "logit_bias": ({},),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "echo": (False,),
    "best_of": (1,),
    "suffix": ("",),
    "tools": ([],),
    "functions": ([],),
    "response_format": ({"type": "text"},),
}


def _shown(value: Any) -> str:
    """A client's value for an error message, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(body: dict[str, Any], key: str, default, kind=float, low=None, high=None):
    """body[key] (absent or null: `default`), refused unless a finite number (an integer for kind=int) in
    [low, high]."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"'{key}' must be {'an integer' if kind is int else 'a number'}, got {_shown(value)}", key)
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"'{key}' must be a finite number, got {value}", key)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise BadRequest(f"'{key}' must be an integer, got {value}", key)
    # compared before any conversion: an integer of 400 digits has no float
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"in [{low}, {high}]"
        raise BadRequest(f"'{key}' must be {bounds}, got {_shown(value)}", key)
    return kind(value)


def _stop_strings(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise BadRequest("'stop' must be a non-empty string or a list of up to 4 of them", "stop")
    return stop


def _message_text(message: Any, index: int) -> Any:
    """A message with its content as one string: OpenAI's content parts (`[{"type": "text", "text": ...}]`) are
    joined by newlines; a part of another type (an image, audio, a file) is refused, this model reads text.
    Anything else is left as it is, for check_conversation to refuse with the message's number."""
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return message
    texts = []
    for j, part in enumerate(message["content"]):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "text":
            raise BadRequest(f"message {index}, content part {j}: 'text' must be a string", "messages")
        else:
            what = f"of type {_shown(kind)}" if kind is not None else 'not a {"type": ..., ...} object'
            raise BadRequest(
                f"message {index}, content part {j} is {what}; this server reads text parts only", "messages"
            )
    return {**message, "content": "\n".join(texts)}


def parse_body(raw: bytes) -> Any:
    """The JSON value of a request body; BadRequest when it is not JSON or holds a string that is not text
    (a lone surrogate escape such as \\ud800: refused here rather than failing deep in a tokenizer)."""
    try:
        body = json.loads(raw)
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("the request body holds a string that is not valid Unicode (a lone surrogate)") from None
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep, an integer of 4,300+ digits
        raise BadRequest("the request body is not valid JSON") from None
    return body


def build_request(served: ServedModel, body: Any, chat: bool) -> ApiRequest:
    """The generation an OpenAI request body asks for (its `emit` still to set), every field checked: a
    BadRequest names the field at fault. Cheap checks come first, the tokenizing last."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if model != served.name:
        raise BadRequest(
            f"the model {_shown(model)} does not exist; this server serves {served.name!r}",
            "model",
            404,
            "model_not_found",
        )
    for key, inert in _INERT_VALUES.items():
        value = body.get(key)
        if value is not None and value not in inert:
            raise BadRequest(f"'{key}' is not supported by this server (got {_shown(value)})", key)
    if _number(body, "n", 1, int) != 1:
        raise BadRequest("only n = 1 is supported", "n")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be true or false, got {_shown(stream)}", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest(
            f"'stream_options' must be an object such as {{\"include_usage\": true}}, got {_shown(options)}",
            "stream_options",
        )
    include_usage = (options or {}).get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        raise BadRequest(
            f"'stream_options.include_usage' must be true or false, got {_shown(include_usage)}", "stream_options"
        )
    temperature = _number(body, "temperature", 1.0, float, 0.0, 2.0)
    if temperature < MIN_TEMPERATURE:
        temperature = 0.0
    top_p = _number(body, "top_p", 1.0, float, 0.0, 1.0)
    if top_p == 0:
        raise BadRequest("'top_p' must be above 0", "top_p")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, key, None, int, low=1)
    stop = _stop_strings(body)
    if chat:
        if served.template is None:
            raise BadRequest(f"{served.name} has no chat template (start the server with --template)", "messages")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list of {role, content} objects", "messages")
        messages = [_message_text(m, i) for i, m in enumerate(messages)]
        try:
            ids, _ = SegmentEncoder(served.tokenizer).encode_conversation(
                served.template, messages, add_generation_prompt=True
            )
        except ValueError as e:
            raise BadRequest(f"'messages': {e}", "messages") from None
        stop = list(served.template.stop_strings) + stop
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise BadRequest("'prompt' must be a non-empty string (one prompt per request)", "prompt")
        ids = served.tokenizer.encode(prompt, bos=served.tokenizer.bos_id is not None)
    room = served.context - len(ids)
    if room < 1:
        raise BadRequest(
            f"the prompt is {len(ids)} tokens and leaves no room for an answer in the model's context of "
            f"{served.context} tokens",
            "messages" if chat else "prompt",
            code="context_length_exceeded",
        )
    if max_tokens is None:  # chat: the rest of the context; completions: OpenAI's 16
        max_tokens = room if chat else min(16, room)
    elif max_tokens > room:
        raise BadRequest(
            f"the prompt ({len(ids)} tokens) plus {key} ({max_tokens}) exceeds the model's context of "
            f"{served.context} tokens",
            key,
            code="context_length_exceeded",
        )
    generation = GenerationRequest(
        ids, max_tokens, temperature, None if top_p == 1 else top_p, tuple(stop), emit=lambda *a: None
    )
    return ApiRequest(generation, len(ids), bool(stream), bool(include_usage))


# The chat page names nothing of the server (the model's id comes from /v1/models), so it is served to
# anyone; with an API key set it asks for the key at the first refusal and keeps it in the tab's
# sessionStorage, sending it as every request's Bearer token.
CHAT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 15px/1.45 system-ui, sans-serif; max-width: 46rem; margin: 0 auto; padding: 1rem; color: #222; }
 h1 { font-size: 1.1rem; } #log { border: 1px solid #ccc; border-radius: 6px; padding: .6rem; min-height: 16rem; }
 .user, .assistant { white-space: pre-wrap; margin: .4rem 0; padding: .4rem .6rem; border-radius: 6px; }
 .user { background: #e8f0fe; } .assistant { background: #f3f3f3; } .error { color: #a00; }
 form { display: flex; gap: .5rem; margin-top: .6rem; } textarea { flex: 1; font: inherit; height: 3.2rem; }
</style></head>
<body>
<h1 id="title">Chat</h1>
<div id="log"></div>
<form id="form"><textarea id="text" placeholder="Your message (Enter sends, Shift+Enter: new line)"></textarea>
<button id="send">Send</button><button type="button" id="reset">Reset</button></form>
<p id="keyline" hidden><label>API key: <input type="password" id="key" autocomplete="off"></label>
(this server asks for one; it is kept in this tab only)</p>
<script>
const log = document.getElementById("log"), text = document.getElementById("text");
const keyInput = document.getElementById("key"), keyLine = document.getElementById("keyline");
keyInput.value = sessionStorage.getItem("apiKey") || ""; keyLine.hidden = !keyInput.value;
keyInput.addEventListener("input", () => sessionStorage.setItem("apiKey", keyInput.value));
let messages = [], model = null;
function bubble(role, content) {
  const div = document.createElement("div"); div.className = role; div.textContent = content;
  log.appendChild(div); return div;
}
function headers() {
  const h = {"Content-Type": "application/json"};
  if (keyInput.value) h["Authorization"] = "Bearer " + keyInput.value;
  return h;
}
async function refusal(response) {  // the server's message; a refused key shows the key field
  if (response.status === 401) { keyLine.hidden = false; keyInput.focus(); }
  try { return (await response.json()).error.message; }
  catch (e) { return response.status + " " + response.statusText; }
}
async function findModel() {
  const response = await fetch("/v1/models", {headers: headers()});
  if (!response.ok) throw new Error(await refusal(response));
  model = (await response.json()).data[0].id;
  document.title = model; document.getElementById("title").textContent = "Chat with " + model;
}
async function send(event) {
  event.preventDefault();
  const content = text.value.trim(); if (!content) return;
  text.value = ""; const asked = bubble("user", content), out = bubble("assistant", "");
  const turn = {role: "user", content}; let answer = "";
  try {
    if (!model) await findModel();
    // no max_tokens: the answer may take the rest of the context
    const response = await fetch("/v1/chat/completions", {method: "POST", headers: headers(),
      body: JSON.stringify({model, messages: [...messages, turn], stream: true, temperature: 0.7})});
    if (!response.ok) throw new Error(await refusal(response));
    const reader = response.body.getReader(), decoder = new TextDecoder(); let buffer = "";
    for (;;) {
      const {value, done} = await reader.read(); if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
        const line = buffer.slice(0, cut).replace(/^data: /, ""); buffer = buffer.slice(cut + 2);
        if (line === "[DONE]") continue;
        const chunk = JSON.parse(line);
        if (chunk.error) throw new Error(chunk.error.message);
        answer += chunk.choices?.[0]?.delta?.content || ""; out.textContent = answer;
      }
    }
    messages.push(turn, {role: "assistant", content: answer.trim()});
  } catch (e) {  // the turn is taken back, its text left to send again
    asked.remove(); out.className = "assistant error"; out.textContent = "error: " + e.message; text.value = content;
  }
}
document.getElementById("form").addEventListener("submit", send);
text.addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) send(e); });
document.getElementById("reset").addEventListener("click", () => { messages = []; log.textContent = ""; });
// /?q=... opens the page with that message sent (a link that asks a question)
const asked = new URLSearchParams(location.search).get("q");
if (asked) { text.value = asked; send(new Event("submit")); } else { findModel().catch(() => {}); }
</script></body></html>
"""


def _error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    """An OpenAI-style error body."""
    kind = "server_error" if status >= 500 else {404: "not_found_error"}.get(status, "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


def _refusal(e: BadRequest) -> JSONResponse:
    return _error_response(e.status, str(e), e.param, e.code)


class KeyCheck:
    """ASGI middleware: every request but the chat page (GET /) must carry `Authorization: Bearer <key>`, as
    OpenAI clients send their `api_key`; the comparison takes the same time wherever the key differs."""

    def __init__(self, app, api_key: str) -> None:
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and not (scope["path"] == "/" and scope["method"] == "GET"):
            scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                refusal = _error_response(
                    401,
                    "a valid API key is needed: send it as the header 'Authorization: Bearer KEY'",
                    None,
                    "invalid_api_key",
                )
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_body(http_request: Request, limit: int) -> bytes:
    """A request's body, refused (413) past `limit` bytes: from its Content-Length before any of it is read,
    or, sent without one, as soon as what has arrived passes the limit."""
    too_large = BadRequest(
        f"the request body is over this server's limit of {limit} bytes (lit-serve --max_body_bytes)",
        status=413,
        code="request_too_large",
    )
    declared = http_request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise too_large
    body = bytearray()
    async for chunk in http_request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def create_app(
    served: ServedModel,
    engine: BatchedGenerator,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
):
    """The FastAPI application; `engine` must be started (see `serve`). With `api_key`, every route but the
    chat page refuses a request without it (401); a body over `max_body_bytes` gets 413."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    # no /docs, /redoc, /openapi.json: the routes take raw bodies, so FastAPI's pages would describe nothing
    app = FastAPI(title=f"lit_gpt: {served.name}", docs_url=None, redoc_url=None, openapi_url=None)
    if api_key is not None:
        app.add_middleware(KeyCheck, api_key=api_key)
    created = int(time.time())

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:  # an unknown route, a wrong method
        return _error_response(e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def server_error(_: Request, e: Exception) -> JSONResponse:  # a bug of ours; its traceback is logged
        return _error_response(500, f"internal error: {type(e).__name__}")

    @app.get("/", response_class=HTMLResponse)
    def chat_page() -> str:
        return CHAT_PAGE

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
            body = parse_body(await read_body(http_request, max_body_bytes))
            # tokenizing a long prompt takes a while: not on the event loop, which serves every other request
            api = await asyncio.to_thread(build_request, served, body, chat)
        except BadRequest as e:
            return _refusal(e)
        request, prompt_tokens = api.generation, api.prompt_tokens
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        request.emit = lambda text, finish, n: loop.call_soon_threadsafe(events.put_nowait, (text, finish, n))
        engine.submit(request)
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        base = {"id": ident, "created": int(time.time()), "model": served.name}
        usage = lambda n: {  # noqa: E731
            "prompt_tokens": prompt_tokens,
            "completion_tokens": n,
            "total_tokens": prompt_tokens + n,
        }

        if api.stream:

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
                        if finish and api.include_usage:
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
                    return _error_response(500, text)
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


def check_options(port: int, max_batch: int, max_body_bytes: int, seed: int, api_key: str | None) -> None:
    """Raise ValueError for a server option out of range, before anything is loaded."""
    ranges = {
        "port": (port, 1, 65535),
        "max_batch": (max_batch, 1, None),
        "max_body_bytes": (max_body_bytes, 1024, None),
        "seed": (seed, 0, 2**64 - 1),
    }
    for name, (value, low, high) in ranges.items():
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"in [{low}, {high}]"
            raise ValueError(f"--{name} must be {bounds}, got {value}")
    if api_key is not None and not (api_key.isascii() and api_key.isprintable() and api_key and " " not in api_key):
        raise ValueError(f"the API key (--api_key or {API_KEY_ENV}) must be printable ASCII without spaces, not empty")


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, taken before the model loads: a port in use or an unknown host fails at
    once, and no other process takes the port meanwhile."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise ValueError(f"--host {host}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


def exposure_warning(address: str, api_key: str | None) -> str | None:
    """The warning for a server bound to `address` (an IP) that other machines may reach without a key."""
    if api_key is not None or ipaddress.ip_address(address.split("%")[0]).is_loopback:
        return None
    return (
        f"warning: listening on {address} without an API key: anyone who can reach this port can use the model "
        f"(set --api_key or {API_KEY_ENV}, or --host 127.0.0.1)"
    )


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
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Load the model and serve it with uvicorn until interrupted. `api_key` None: the LIT_GPT_API_KEY
    environment variable's, if set. ValueError (FileNotFoundError for the checkpoint) for a bad option, before
    the weights load."""
    import uvicorn

    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV)
    check_options(port, max_batch, max_body_bytes, seed, api_key)
    check_path("checkpoint", checkpoint, "checkpoint")  # a LoRA run, a file of the wrong kind: said in one line
    check_path("tokenizer_dir", tokenizer_dir, "folder")
    sock = listening_socket(host, port)
    try:
        served = load_served_model(checkpoint, name, template, device, dtype, tokenizer_dir)
    except BaseException:
        sock.close()
        raise
    on_gpu = served.model.lm_head.weight.is_cuda
    engine = BatchedGenerator(
        served.model, served.tokenizer, max_batch, compile=compile == "on" or (compile == "auto" and on_gpu), seed=seed
    )
    engine.start()
    warning = exposure_warning(sock.getsockname()[0], api_key)
    if warning:
        print(warning, file=sys.stderr)
    print(
        f"serving {served.name} (context {served.context}, chat template "
        f"{served.template.name if served.template else 'none'}) on http://{host}:{port}"
        f"{', API key required' if api_key else ''}",
        file=sys.stderr,
    )
    app = create_app(served, engine, api_key=api_key, max_body_bytes=max_body_bytes)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shut down on Ctrl-C, then raised it again: the way a server ends
        pass
    finally:
        engine.stop()
        sock.close()
