"""The OpenAI-compatible server, through the official `openai` client against a server on 127.0.0.1:
completions, chat and streaming give what the model gives alone (greedy), however requests are batched;
bad requests get a 4xx with a message; 8 concurrent streaming clients for a few seconds, no error and
no stream mixed up with another."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import torch

from lit_gpt.generate import generate
from lit_gpt.serve import BatchedGenerator, create_app, load_served_model
from lit_gpt.sft.templates import SegmentEncoder, get_template

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

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


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    served = load_served_model(tiny_checkpoint, name="tiny", template="zephyr", device="cpu", dtype="float32")
    engine = BatchedGenerator(served.model, served.tokenizer, max_batch=8)
    engine.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    http = uvicorn.Server(uvicorn.Config(create_app(served, engine), log_level="warning"))
    thread = threading.Thread(target=http.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not http.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)
    yield client, engine, port
    http.should_exit = True
    thread.join(timeout=10)
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
    import json
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=b"{not json", method="POST"),
            timeout=10,
        )
    assert bad.value.code == 400 and "JSON" in json.loads(bad.value.read())["error"]["message"]
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
    assert "/v1/chat/completions" in page and "tiny" in page
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
