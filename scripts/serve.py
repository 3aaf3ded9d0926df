"""Serve a model over an OpenAI-compatible HTTP API (and a chat page at /), with FastAPI + uvicorn.

The command lives in lit_gpt/cli/serve.py (installed also as `lit-serve`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.serve import main

if __name__ == "__main__":
    main()
