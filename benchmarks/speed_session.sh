#!/usr/bin/env bash
# The float8 / bf16 speed checks of one device session on a 2-GPU machine, two lanes at once; tables last.
#   bash benchmarks/speed_session.sh single     # GPU 0: throughput grid; GPU 1: cuda tests, quality, trainer
#   bash benchmarks/speed_session.sh scaling    # both GPUs: FSDP2 bf16 vs float8 on 1 and 2 GPUs; then
#                                               # the whole-model-graph variants (GPU 0) and the float8 trainer (GPU 1)
# Needs the prepared sample in DATA (default .gpu_data: data/ and tokenizer/). Results go to $OUT.
set -uo pipefail
PART=${1:-single}
OUT=${OUT:-/tmp/gpu_out}
DATA=${DATA:-.gpu_data}
WORK=${WORK:-/dev/shm/lit_gpt_work}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 TOKENIZERS_PARALLELISM=false
python3 - <<'PY' | tee "$OUT/versions.txt"
import torch, triton, transformers, lightning, torchao
print(f"{torch.cuda.get_device_name()} x{torch.cuda.device_count()} | torch {torch.__version__} | triton {triton.__version__} | "
      f"torchao {torchao.__version__} | transformers {transformers.__version__} | lightning {lightning.__version__}")
PY

tp() {  # throughput rows on the lane's GPU: tp NAME ARGS...
  local name=$1; shift
  python3 benchmarks/throughput.py --json "$OUT/tp_$name.json" "$@" > "$OUT/tp_$name.txt" 2>&1
}

trainer() {  # the real trainer with no speed flag, global batch 32 (accumulation 2 at micro batch 16): trainer NAME ARGS...
  local name=$1; shift
  rm -rf "$WORK/trainer_$name"
  timeout 400 python3 pretrain/tinyllama.py --data_dir "$DATA/data" --tokenizer_dir "$DATA/tokenizer" \
    --out_dir "$WORK/trainer_$name" --global_batch_size 32 --max_steps 24 --log_interval 4 --val_prefix "" \
    --save_interval 0 --tensorboard false "$@" > "$OUT/trainer_$name.txt" 2>&1
  grep -E "parameters|step 24/|saved" "$OUT/trainer_$name.txt" | tail -n 3
}

if [[ $PART == single ]]; then
  (  # lane A, GPU 0: the throughput grid, HF baseline first
    export CUDA_VISIBLE_DEVICES=0
    tp hf --variants hf --micro_batches 8 --grad_accum 2 --steps 8
    tp main --variants triton+compile,triton+compile+fp8,triton+compile+fp8row --micro_batches 16 --grad_accum 2 --steps 8
    tp small --model tiny_LLaMA_120M --variants triton+compile,triton+compile+fp8 --micro_batches 16 --grad_accum 2 \
      --steps 8 --float8_min_features 0
    tp capped --memory_cap_gb 24 --variants triton+compile+ac-mlp,triton+compile+ac-mlp+fp8 --micro_batches 4 \
      --grad_accum 2 --steps 8
  ) &
  (  # lane B, GPU 1: cuda tests, the bf16 trainer, the 1,000-step quality pair
    export CUDA_VISIBLE_DEVICES=1
    python3 -m pytest -m cuda -q -p no:cacheprovider tests > "$OUT/cuda_tests.txt" 2>&1
    trainer bf16
    python3 benchmarks/float8_quality.py --data_dir "$DATA/data" --tokenizer_dir "$DATA/tokenizer" \
      --out_dir "$WORK/quality" --steps 1000 --png "$OUT/float8_quality.png" --json "$OUT/float8_quality.json" \
      > "$OUT/quality.txt" 2>&1
  ) &
  wait
  tail -n 4 "$OUT/cuda_tests.txt"
  cat "$OUT/quality.txt" | tail -n 3
  for f in hf main small capped; do tail -n 6 "$OUT/tp_$f.txt" | grep -v "^$"; done
  grep -E "step (8|12|16|20|24)/" "$OUT/trainer_bf16.txt" | cut -c1-160
fi

if [[ $PART == scaling ]]; then
  for f8 in "" tensorwise; do
    python3 benchmarks/scaling.py --gpus 1,2 --modes full --micro_batches 8 --compile ${f8:+--float8 $f8} \
      --json "$OUT/scaling_${f8:-bf16}.json" > "$OUT/scaling_${f8:-bf16}.txt" 2>&1
  done
  (
    export CUDA_VISIBLE_DEVICES=0
    tp graph --variants triton+graph,triton+graph+fp8 --micro_batches 16 --grad_accum 2 --steps 8 --timeout 280
  ) &
  (
    export CUDA_VISIBLE_DEVICES=1
    trainer fp8 --float8 tensorwise
  ) &
  wait
  for f in bf16 tensorwise; do tail -n 3 "$OUT/scaling_$f.txt"; done
  tail -n 5 "$OUT/tp_graph.txt"
  grep -E "step (8|12|16|20|24)/" "$OUT/trainer_fp8.txt" | cut -c1-160
fi
