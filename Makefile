# One entry point for the demo and the tests. `make test` builds a fresh virtual environment
# (.venv) with the CPU build of torch that lies on disk, installs the package with its test
# extras, and runs the CPU test suite. `make demo` runs the whole path on the embedded sample;
# `make demo STEPS=600` pretrains for that many steps instead of the demo recipe's max_steps.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch; a bare `torch` would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
TRITON_PIN ?= triton==3.8.0
OUT ?= out/demo
# empty: the demo recipe's max_steps (lit_gpt/cli/recipes/demo.yaml)
STEPS ?=

.PHONY: venv lint test test-cuda demo sft-demo chat-sample clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN) $(TRITON_PIN)
	$(PY) -m pip install -q -e ".[test]"

venv: $(PY)

lint: $(PY)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest -m "not cuda and not llamacpp" -q tests

test-cuda: $(PY)
	$(PY) -m pytest -m cuda -q tests

demo: $(PY)
	bash scripts/demo.sh $(PY) $(OUT) $(STEPS)

sft-demo: $(PY)
	test -d $(OUT)/checkpoints || $(PY) pretrain/tinyllama.py --out_dir $(OUT) $(if $(STEPS),--max_steps $(STEPS))
	$(PY) sft/finetune.py
	$(PY) sft/simple_inference.py --prompt "How do I reverse a list in Python?"

chat-sample: $(PY)
	$(PY) scripts/build_chat_sample.py

clean:
	rm -rf $(VENV) out
