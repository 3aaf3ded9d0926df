"""The OpenAI-compatible server, through the official `openai` client against a server on 127.0.0.1:
completions, chat and streaming give what the model gives alone (greedy), however requests are batched;
bad requests get a 4xx with a message; 8 concurrent streaming clients for a few seconds, no error and
no stream mixed up with another. Then what a careless or hostile client sends: a request that fails
while generating ends alone, oversized bodies, API keys, content parts, malformed fields, bad options."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Any

import pytest
import torch

# the server's extra (`pip install 'lit_gpt[serve]'`) and the client the tests talk through: without them the
# module skips, saying which is missing
pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

from lit_gpt.generate import generate  # noqa: E402
from lit_gpt.serve import BatchedGenerator, GenerationRequest, create_app, load_served_model  # noqa: E402
from lit_gpt.sft.templates import SegmentEncoder, get_template  # noqa: E402

PROMPTS = [
    "What is 2 + 2?",
    "How do I reverse a list in Python?",
    "Name a prime number.",
    "Why is the sky blue? Tell me briefly.",
    "Hello!",
    "What does math.sqrt do?",
    "Write a haiku about the sea.",
    "And times 3?",
]


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    """Greedy answers of the model alone (its own copy: the server's is busy in another thread)."""
    served = load_served_model(tiny_checkpoint, name="tiny", template="zephyr", device="cpu", dtype="float32")
    encoder, eos = SegmentEncoder(served.tokenizer), served.tokenizer.eos_id

    def greedy(ids, max_tokens):
        out = []
        for token in generate(served.model, torch.tensor(ids), max_tokens, temperature=0.0, eos_id=eos):
            if token == eos:
                break
            out.append(token)
        return served.tokenizer.decode(out)

    chats = {
        p: greedy(
            encoder.encode_conversation(
                get_template("zephyr"), [{"role": "user", "content": p}], add_generation_prompt=True
            )[0],
            12,
        )
        for p in PROMPTS
    }
    completions = {p: greedy(served.tokenizer.encode(p, bos=True), 10) for p in PROMPTS}
    return chats, completions


@contextmanager
def running(app):
    """`app` served by uvicorn on a free port of 127.0.0.1, in a thread: yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    http = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=http.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not http.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield sock.getsockname()[1]
    finally:
        http.should_exit = True
        thread.join(timeout=10)


def client_of(port: int, api_key: str = "unused"):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=api_key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def served(tiny_checkpoint):
    return load_served_model(tiny_checkpoint, name="tiny", template="zephyr", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def server(served):
    engine = BatchedGenerator(served.model, served.tokenizer, max_batch=8)
    engine.start()
    with running(create_app(served, engine)) as port:
        yield client_of(port), engine, port
    engine.stop()


def test_models_completions_and_chat(server, reference):
    client, _, _ = server
    chats, completions = reference
    assert [m.id for m in client.models.list().data] == ["tiny"]
    prompt = PROMPTS[1]
    out = client.completions.create(model="tiny", prompt=prompt, max_tokens=10, temperature=0)
    assert out.choices[0].text == completions[prompt]
    assert out.usage.completion_tokens <= 10 and out.choices[0].finish_reason in ("stop", "length")
    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": prompt}], max_tokens=12, temperature=0
    )
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].message.content == chats[prompt]
    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": prompt}], max_tokens=12, temperature=0, stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == chats[prompt]
    text = "".join(
        c.choices[0].text
        for c in client.completions.create(model="tiny", prompt=prompt, max_tokens=10, temperature=0, stream=True)
    )
    assert text == completions[prompt]
    sampled = client.completions.create(model="tiny", prompt=prompt, max_tokens=8, temperature=1.0, top_p=0.9)
    assert isinstance(sampled.choices[0].text, str)


def test_bad_requests_get_4xx_with_a_message(server):
    client, _, port = server
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4", prompt="hi", max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="tiny", messages=[], max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="exceeds the model's context of 128"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=500)
    with pytest.raises(openai.BadRequestError, match="alternate"):
        client.chat.completions.create(model="tiny", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="tiny", prompt="hi", temperature=5)
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=b"{not json", method="POST"),
            timeout=10,
        )
    assert bad.value.code == 400 and "JSON" in json.loads(bad.value.read())["error"]["message"]
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
    assert "/v1/chat/completions" in page and "/v1/models" in page  # the page learns the model id from there
    # the server still answers
    assert client.completions.create(model="tiny", prompt="hi", max_tokens=2).choices[0].text is not None


def test_eight_concurrent_streaming_clients(server, reference):
    """8 clients, each streaming its own prompts back to back for about 3 seconds: every stream is whole
    and is the answer to its own prompt (the model's greedy answer alone), though batched with others."""
    client, engine, _ = server
    chats, completions = reference
    errors, counts = [], [0] * 8
    stop_at = time.monotonic() + 3

    def run(worker: int) -> None:
        try:
            n = 0
            while time.monotonic() < stop_at and n < 40:
                prompt = PROMPTS[(worker + n) % len(PROMPTS)]
                if (worker + n) % 2:
                    got = "".join(
                        c.choices[0].delta.content or ""
                        for c in client.chat.completions.create(
                            model="tiny",
                            messages=[{"role": "user", "content": prompt}],
                            max_tokens=12,
                            temperature=0,
                            stream=True,
                        )
                    )
                    expected = chats[prompt]
                else:
                    got = "".join(
                        c.choices[0].text
                        for c in client.completions.create(
                            model="tiny", prompt=prompt, max_tokens=10, temperature=0, stream=True
                        )
                    )
                    expected = completions[prompt]
                if got != expected:
                    errors.append(f"worker {worker}, {prompt!r}: {got!r} != {expected!r}")
                n += 1
            counts[worker] = n
        except Exception as e:  # reported below, with the others
            errors.append(f"worker {worker}: {type(e).__name__}: {e}")

    batches_before = engine.batches
    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:5]
    assert all(n >= 1 for n in counts) and sum(counts) >= 16
    assert engine.largest_batch > 1 and engine.batches - batches_before < sum(counts)  # requests shared batches


# --- what a careless or hostile client sends -----------------------------------------------------------------
def post(port: int, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    """A request the openai client would not send (NaN, malformed fields): the status and the JSON answer."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Collected:
    """The `emit` of a request submitted to the engine directly: its text and how it ended."""

    def __init__(self) -> None:
        self.text, self.finish, self.done = "", None, threading.Event()

    def __call__(self, text: str, finish: str | None, n: int) -> None:
        self.text += text
        if finish:
            self.finish = finish
            self.done.set()


def test_a_request_failing_inside_generation_ends_alone(server, reference):
    """Five requests decoded in one batch, one failing inside generation (a NaN temperature put past the
    request checks makes its sampling raise): it ends with an error, the four others with the answers the
    model gives them alone."""
    _, engine, _ = server
    _, completions = reference
    tokenizer = engine.tokenizer
    answers = {p: Collected() for p in PROMPTS[:4]}
    poisoned = Collected()
    requests = [GenerationRequest(tokenizer.encode(p, bos=True), 10, 0.0, None, (), emit=answers[p]) for p in answers]
    requests.insert(2, GenerationRequest(tokenizer.encode("Hello!", bos=True), 10, float("nan"), None, (), poisoned))
    batches = engine.batches
    with engine.wakeup:  # all queued before the generation thread looks: one batch
        for request in requests:
            engine.submit(request)
    assert all(c.done.wait(60) for c in [*answers.values(), poisoned])
    assert engine.batches == batches + 1
    assert poisoned.finish == "error" and "nan" in poisoned.text
    assert {p: (c.text, c.finish in ("stop", "length")) for p, c in answers.items()} == {
        p: (completions[p], True) for p in answers
    }


def test_concurrent_streams_survive_poisoned_sampling_values(server, reference):
    """Four clients stream chat answers while others send a NaN temperature, a NaN top_p, an infinite
    temperature (raw: the openai client refuses to send them) and a temperature of 1e-40, which once made
    the shared generation thread raise and end every stream of its batch: the NaN and infinite ones get
    400 naming the field, 1e-40 decodes greedily, every stream is whole."""
    client, _, port = server
    chats, _ = reference
    poisons = [("temperature", float("nan")), ("top_p", float("nan")), ("temperature", float("inf"))]
    start = threading.Barrier(4 + len(poisons) + 1)
    results: dict[str, Any] = {}

    def stream(prompt: str, temperature: float) -> None:
        start.wait()
        try:
            chunks = client.chat.completions.create(
                model="tiny",
                messages=[{"role": "user", "content": prompt}],
                max_tokens=12,
                temperature=temperature,
                stream=True,
            )
            results[prompt, temperature] = "".join(c.choices[0].delta.content or "" for c in chunks)
        except Exception as e:  # compared below
            results[prompt, temperature] = f"{type(e).__name__}: {e}"

    def poison(field: str, value: float) -> None:
        start.wait()
        body = {"model": "tiny", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 12, field: value}
        status, answer = post(port, "/v1/chat/completions", body)
        results[field, str(value)] = (status, answer["error"]["param"] if status != 200 else None)

    threads = [threading.Thread(target=stream, args=(p, 0.0)) for p in PROMPTS[:3]]
    threads.append(threading.Thread(target=stream, args=(PROMPTS[3], 1e-40)))
    threads += [threading.Thread(target=poison, args=p) for p in poisons]
    threads.append(threading.Thread(target=stream, args=(PROMPTS[4], 0.0)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    expected = {(p, 0.0): chats[p] for p in [*PROMPTS[:3], PROMPTS[4]]}
    expected[PROMPTS[3], 1e-40] = chats[PROMPTS[3]]
    expected.update({(field, str(value)): (400, field) for field, value in poisons})
    assert results == expected


def test_a_body_over_the_limit_is_refused_before_it_is_read(served, server):
    """--max_body_bytes: a prompt over it gets 413 through the openai client; a request that only declares
    a larger body gets its 413 before sending any of it, one sent in chunks as soon as they pass the limit;
    the server goes on. The default limit (1 MiB)
    refuses a 2 MB prompt at once (an 18 MB one used to stall every route for 27 s)."""
    client, engine, _ = server
    with running(create_app(served, engine, max_body_bytes=4096)) as port:
        limited = client_of(port)
        with pytest.raises(openai.APIStatusError) as refused:
            limited.completions.create(model="tiny", prompt="word " * 1000, max_tokens=2)
        assert refused.value.status_code == 413 and "limit of 4096 bytes" in str(refused.value)
        head = b"POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        declared = head + b"Content-Length: 100000000\r\n\r\n"  # headers alone: the 413 comes without the body
        chunk = b"3e8\r\n" + b" " * 1000 + b"\r\n"  # sent in chunks of 1000 bytes, without a length
        chunked = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 5
        for request in (declared, chunked):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(request)
                answer = b""
                while b"request_too_large" not in answer and (piece := conn.recv(65536)):
                    answer += piece
            assert answer.startswith(b"HTTP/1.1 413") and b"request_too_large" in answer
        assert limited.completions.create(model="tiny", prompt="hi", max_tokens=2).choices[0].finish_reason
    begin = time.monotonic()
    with pytest.raises(openai.APIStatusError) as refused:
        client.completions.create(model="tiny", prompt="word " * 400_000, max_tokens=2)
    assert refused.value.status_code == 413 and time.monotonic() - begin < 5


def test_the_api_key_is_checked_on_every_route(served, server):
    """With an API key, the openai client with the key is served and one with another key or none gets 401
    on every route, unknown ones too; the chat page, which names nothing of the server, still loads and
    sends the key it asks for as a Bearer token."""
    _, engine, _ = server
    with running(create_app(served, engine, api_key="k3y-of-the-test")) as port:
        keyed = client_of(port, "k3y-of-the-test")
        assert [m.id for m in keyed.models.list().data] == ["tiny"]
        chat = keyed.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert chat.choices[0].message.role == "assistant"
        for key in ("wrong", "k3y-of-the-tes", "k3y-of-the-test2", "K3Y-OF-THE-TEST"):
            other = client_of(port, key)
            with pytest.raises(openai.AuthenticationError, match="API key"):
                other.models.list()
            with pytest.raises(openai.AuthenticationError):
                other.completions.create(model="tiny", prompt="hi", max_tokens=2)
            with pytest.raises(openai.AuthenticationError):
                other.chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2, stream=True
                )
        for path in ("/v1/models", "/v1/unknown", "/docs", "/openapi.json"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
            assert refused.value.code == 401, path
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert "tiny" not in page and '"Bearer " + keyInput.value' in page


def test_listening_beyond_this_machine_without_a_key_is_warned():
    from lit_gpt.serve import exposure_warning

    for address in ("0.0.0.0", "::", "192.168.1.20"):
        assert "without an API key" in exposure_warning(address, None)
        assert exposure_warning(address, "a-key") is None
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None


def test_content_parts_are_read_as_text(server, reference):
    """OpenAI's content-parts form of a message: its text parts are the message (joined by newlines); an
    image part is refused with 400 naming its type."""
    client, _, _ = server
    chats, _ = reference
    prompt = PROMPTS[3]
    parts = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        max_tokens=12,
        temperature=0,
    )
    assert parts.choices[0].message.content == chats[prompt]
    first, second = prompt.split("? ")
    joined = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": first + "?"}, {"type": "text", "text": second}]},
    ]
    as_string = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{first}?\n{second}"}]
    answers = [
        client.chat.completions.create(model="tiny", messages=m, max_tokens=12, temperature=0)
        for m in (joined, as_string)
    ]
    assert len({(a.usage.prompt_tokens, a.choices[0].message.content) for a in answers}) == 1
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    with pytest.raises(
        openai.BadRequestError, match="content part 1 is of type 'image_url'; this server reads text parts only"
    ):
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}]
        )


def test_max_tokens_null_takes_the_rest_of_a_long_chat_and_a_prompt_past_the_context_gets_400(server, served):
    """`"max_tokens": null` on a chat that fills most of the context answers within what is left (it was
    a 500: the budget ignored the prompt's length past the context); a prompt with no room left for an
    answer gets 400, chat or completion."""
    client, _, _ = server
    encoder, template = SegmentEncoder(served.tokenizer), get_template("zephyr")
    messages = [{"role": "user", "content": PROMPTS[0]}]
    while len(encoder.encode_conversation(template, messages, add_generation_prompt=True)[0]) < 100:
        messages[-1:] = [messages[-1], {"role": "assistant", "content": "Four."}, {"role": "user", "content": "Why?"}]
    prompt_tokens = len(encoder.encode_conversation(template, messages, add_generation_prompt=True)[0])
    assert prompt_tokens < 128
    answer = client.chat.completions.create(model="tiny", messages=messages, max_tokens=None, temperature=0)
    assert answer.usage.prompt_tokens == prompt_tokens and answer.usage.completion_tokens <= 128 - prompt_tokens
    assert answer.choices[0].finish_reason in ("stop", "length")
    longer = messages + [{"role": "assistant", "content": "Four."}, {"role": "user", "content": PROMPTS[3] * 4}]
    for max_tokens in (None, 1):
        with pytest.raises(openai.BadRequestError, match="leaves no room for an answer in the model's context of 128"):
            client.chat.completions.create(model="tiny", messages=longer, max_tokens=max_tokens)
    with pytest.raises(openai.BadRequestError, match="leaves no room"):
        client.completions.create(model="tiny", prompt=PROMPTS[3] * 20)


@pytest.mark.parametrize(
    "route, fields, param",
    [
        ("chat/completions", {"stream": True, "stream_options": 5}, "stream_options"),
        ("chat/completions", {"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options"),
        ("chat/completions", {"stream": "yes"}, "stream"),
        ("completions", {"temperature": float("nan")}, "temperature"),
        ("completions", {"top_p": float("-inf")}, "top_p"),
        ("completions", {"max_tokens": 10**400}, "max_tokens"),
        ("completions", {"prompt": "\ud800"}, None),
        ("completions", {"presence_penalty": 1.0}, "presence_penalty"),
        ("completions", {"logprobs": True}, "logprobs"),
        ("chat/completions", {"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages"),
        ("chat/completions", {"messages": [{"role": "user", "content": [5]}]}, "messages"),
        ("chat/completions", {"messages": ["hi"]}, "messages"),
    ],
)
def test_a_malformed_field_gets_400_naming_it(server, route, fields, param):
    """What the client got wrong gets 400 with an OpenAI error body naming the field, never a 500 or a
    stream cut short (`stream_options: 5` once ended the stream midway)."""
    _, _, port = server
    body = {"model": "tiny", "prompt": "hi", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    status, answer = post(port, f"/v1/{route}", {**body, **fields})
    assert (status, answer["error"]["type"], answer["error"]["param"]) == (400, "invalid_request_error", param)


@pytest.mark.parametrize("raw", [b"[" * 100_000, b"\xff\xfe{}", b'{"model": "tiny", "prompt": "hi"'])
def test_a_body_that_is_not_json_gets_400(server, raw):
    _, _, port = server
    status, answer = post(port, "/v1/completions", raw=raw)
    assert status == 400 and "not valid JSON" in answer["error"]["message"]


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--max_batch", "0", "--max_batch must be at least 1, got 0"),
        ("--port", "0", "--port must be in [1, 65535], got 0"),
        ("--port", "65536", "--port must be in [1, 65535], got 65536"),
        ("--max_body_bytes", "100", "--max_body_bytes must be at least 1024, got 100"),
        ("--seed", "-1", "--seed must be in [0, 18446744073709551615], got -1"),
        ("--api_key", "two words", "the API key (--api_key or LIT_GPT_API_KEY) must be printable ASCII"),
    ],
)
def test_an_option_out_of_range_stops_the_command_in_one_line(option, value, message, tmp_path, capsys):
    """Checked before the checkpoint is even looked for (`--max_batch 0` once left every request waiting)."""
    from lit_gpt.cli.serve import main

    with pytest.raises(SystemExit) as stopped:
        main(["--checkpoint", str(tmp_path / "missing"), option, value])
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")


def test_a_missing_checkpoint_or_a_taken_port_stops_the_command_in_one_line(tmp_path, capsys, tiny_checkpoint):
    from lit_gpt.cli.serve import main

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = str(taken.getsockname()[1])
    (tmp_path / "empty").mkdir()
    cases = [
        (["--checkpoint", str(tmp_path / "missing")], f"--checkpoint {tmp_path / 'missing'}: no such file or folder"),
        (["--checkpoint", str(tmp_path / "empty")], "no checkpoint found"),
        (["--checkpoint", str(tiny_checkpoint), "--port", port], f"cannot listen on 127.0.0.1:{port}"),
    ]
    with taken:
        for argv, message in cases:
            with pytest.raises(SystemExit) as stopped:
                main(argv)
            lines = capsys.readouterr().err.splitlines()
            assert stopped.value.code == 2 and len(lines) == 1 and message in lines[0], (argv, lines)
