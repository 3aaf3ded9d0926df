"""Write a checkpoint as a GGUF file for llama.cpp (architecture `llama`), tokenizer included.

The command lives in lit_gpt/cli/convert_gguf.py (installed also as `lit-convert-gguf`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.convert_gguf import main

if __name__ == "__main__":
    main()
