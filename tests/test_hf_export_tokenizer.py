"""The Hugging Face folder exported from pretraining encodes exactly as we do through transformers'
AutoTokenizer (BOS included), so greedy generation through transformers equals ours."""

from __future__ import annotations

import pytest
import torch
from model_helpers import random_model

pytest.importorskip("transformers")  # a test extra: the exports are checked against it

from transformers import AutoTokenizer, LlamaForCausalLM

from lit_gpt.checkpoint import save_hf_checkpoint
from lit_gpt.config import Config
from lit_gpt.generate import generate
from lit_gpt.tokenizer import Tokenizer

TEXTS = ["hello", "def fibonacci(n):", "The Python language is", "import numpy as np\nx = 1"]


def test_autotokenizer_and_greedy_generation_match_ours(tmp_path, sample_tokenizer):
    # the tokenizer folder of a pretraining run carries a tokenizer_config.json of special tokens only
    assert (sample_tokenizer / "tokenizer_config.json").is_file()
    config = Config(
        name="t",
        n_layer=2,
        n_head=4,
        n_query_groups=2,
        n_embd=32,
        intermediate_size=88,
        vocab_size=1024,
        block_size=64,
        kernels="torch",
    )
    model = random_model(config)
    save_hf_checkpoint(tmp_path / "hf", model.state_dict(), config, tokenizer_dir=sample_tokenizer)
    ours, theirs = Tokenizer(sample_tokenizer), AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in TEXTS:
        assert theirs(text).input_ids == list(ours.encode(text, bos=True)), text
    hf_model = LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    prompt = theirs("def fibonacci(n):", return_tensors="pt").input_ids
    with torch.no_grad():
        hf_out = hf_model.generate(prompt, max_new_tokens=12, do_sample=False, eos_token_id=None)[0, prompt.shape[1] :]
    model.max_seq_length = prompt.shape[1] + 12
    our_out = list(generate(model, torch.tensor(list(ours.encode("def fibonacci(n):", bos=True))), 12, temperature=0.0))
    assert hf_out.tolist() == our_out


def test_exported_files_get_the_usual_mode(tmp_path):
    import os

    from model_helpers import tiny_config

    umask = os.umask(0o022)
    try:
        model = random_model(tiny_config())
        save_hf_checkpoint(tmp_path / "hf", model.state_dict(), model.config)
    finally:
        os.umask(umask)
    assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "hf").iterdir()} == {"0o644"}
