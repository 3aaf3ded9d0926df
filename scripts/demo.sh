#!/usr/bin/env bash
# The whole path on the embedded sample: train a tokenizer on it, pack it into shards, pretrain a
# ~5M-parameter model, convert the last checkpoint to a Hugging Face folder, generate from it with
# our sampler and with transformers. Usage: bash scripts/demo.sh [python] [out_dir] [steps]
# (`make demo STEPS=N`): steps, when given, replaces the demo recipe's max_steps
# (lit_gpt/cli/recipes/demo.yaml).
set -euo pipefail
PY=${1:-python}
OUT=${2:-out/demo}
STEPS=${3:-}
cd "$(dirname "$0")/.."

rc=0
"$PY" pretrain/tinyllama.py --out_dir "$OUT" ${STEPS:+--max_steps "$STEPS"} || rc=$?
if [ "$rc" -eq 75 ]; then  # stopped by a signal after saving (PRETRAIN.md, "Exit codes")
    echo "pretraining stopped and saved; run the demo again to continue it" >&2
    exit 75
fi
[ "$rc" -eq 0 ] || exit "$rc"
CKPT=$(ls -d "$OUT"/checkpoints/step-* | sort -V | tail -n 1)
"$PY" scripts/plot_run.py --run_dir "$OUT"
"$PY" scripts/convert_lit_checkpoint.py --checkpoint "$CKPT" --output_dir "$OUT/hf"
"$PY" scripts/generate.py --checkpoint "$CKPT" --prompt "The Python language" --max_new_tokens 60 \
    --temperature 0.8 --top_k 50 --seed 0
"$PY" - "$OUT/hf" <<'PYEOF'
import sys
try:  # transformers imports torchao where it is installed: first quietly, without its irrelevant load failures
    from lit_gpt.training.float8 import import_torchao_float8
    import_torchao_float8()
except ImportError:
    pass
from transformers import AutoTokenizer, LlamaForCausalLM
folder = sys.argv[1]
tok = AutoTokenizer.from_pretrained(folder)
model = LlamaForCausalLM.from_pretrained(folder)
ids = tok("def fibonacci(n):", return_tensors="pt").input_ids
out = model.generate(ids, max_new_tokens=40, do_sample=False)
print("\n[transformers, greedy]", tok.decode(out[0], skip_special_tokens=True))
PYEOF
echo "demo done: checkpoints in $OUT/checkpoints, Hugging Face folder in $OUT/hf, curves in $OUT/run.png"
