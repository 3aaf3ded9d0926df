"""Fine-tune a pretrained Llama-family model on chat data, with Lightning Fabric (single device, DDP or FSDP2).

The command lives in lit_gpt/cli/finetune.py (installed also as `lit-finetune`); this file runs it from a
checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.finetune import main

if __name__ == "__main__":
    main()
