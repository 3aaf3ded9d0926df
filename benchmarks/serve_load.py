"""Load on the OpenAI-compatible server: N concurrent streaming chat clients for a while, on 127.0.0.1;
total generated tokens per second and time to first token (p50, p99).

    python benchmarks/serve_load.py                                            # GPU: tiny_LLaMA_1b, 16 clients
    python benchmarks/serve_load.py --model_name micro_LLaMA --clients 8 --seconds 5 --max_tokens 16   # CPU

The model is the preset with random weights (speed does not depend on them) and a SentencePiece
tokenizer trained on data/chat_sample's messages (or --tokenizer_dir); the server is the one of
scripts/serve.py, in this process. Every client sends its next request when its stream ends. Sampling
is greedy; a random model may end a stream early (EOS), so the count is of the tokens streamed.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_name", default="tiny_LLaMA_1b")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max_batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--max_tokens", type=int, default=128)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--tokenizer_dir", type=Path)
    args = parser.parse_args()

    import openai
    import torch
    import uvicorn
    from sft_packing import train_tokenizer

    from lit_gpt.config import Config
    from lit_gpt.model import GPT
    from lit_gpt.serve import BatchedGenerator, ServedModel, create_app
    from lit_gpt.sft.templates import get_template
    from lit_gpt.tokenizer import Tokenizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = Tokenizer(args.tokenizer_dir or train_tokenizer(Path(tmp)))
    config = Config.from_name(
        args.model_name, block_size=args.context, vocab_size=max(tokenizer.vocab_size, 512), kernels="torch"
    )
    torch.manual_seed(0)
    model = GPT(config).to(device=device, dtype=dtype).eval()
    model.reset_rope_cache()
    served = ServedModel(args.model_name, model, tokenizer, get_template("zephyr"))
    compile = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    engine = BatchedGenerator(model, tokenizer, args.max_batch, compile=compile)
    engine.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(served, engine), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=600)
    prompts = [
        "How do I reverse a list in Python?",
        "What is the capital of France?",
        "Explain recursion briefly.",
        "Write a haiku about the sea.",
    ]

    def request(i: int):
        start, first, tokens = time.perf_counter(), None, 0
        for chunk in client.chat.completions.create(
            model=args.model_name,
            messages=[{"role": "user", "content": prompts[i % len(prompts)]}],
            max_tokens=args.max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        ):
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - start
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        return first, tokens

    request(0)  # warm up (and compile) before timing
    ttft, tokens, errors = [], [0] * args.clients, []
    deadline = time.perf_counter() + args.seconds

    def client_loop(worker: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            try:
                first, count = request(worker + n)
            except Exception as e:  # counted and reported
                errors.append(repr(e))
                return
            if first is not None:
                ttft.append(first)
            tokens[worker] += count
            n += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(w,)) for w in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    server.should_exit = True
    engine.stop()
    ttft.sort()
    print(
        json.dumps(
            {
                "model": args.model_name,
                "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                "clients": args.clients,
                "max_batch": args.max_batch,
                "max_tokens": args.max_tokens,
                "compile": compile,
                "seconds": round(elapsed, 2),
                "requests": len(ttft),
                "errors": len(errors),
                "tokens_per_sec": round(sum(tokens) / elapsed, 1),
                "ttft_p50_s": round(statistics.median(ttft), 4) if ttft else None,
                "ttft_p99_s": round(ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))], 4) if ttft else None,
                "largest_batch": engine.largest_batch,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
