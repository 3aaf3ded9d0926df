"""Convert a lit checkpoint (folder, .pth file or pretraining DCP folder) into a Hugging Face Llama folder.

The command lives in lit_gpt/cli/convert_lit.py (installed also as `lit-convert-lit`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.convert_lit import main

if __name__ == "__main__":
    main()
