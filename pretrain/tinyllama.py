"""Pretrain a Llama-family model on packed shards with Lightning Fabric (single device, DDP or FSDP2).

The command lives in lit_gpt/cli/pretrain.py (installed also as `lit-pretrain`); this file runs it from a
checkout installed with `pip install -e .`, e.g. `python pretrain/tinyllama.py --devices 8`,
`fabric run --devices 8 pretrain/tinyllama.py ...` or `torchrun --nproc_per_node 8 pretrain/tinyllama.py ...`.
"""

from lit_gpt.cli.pretrain import main

if __name__ == "__main__":
    main()
