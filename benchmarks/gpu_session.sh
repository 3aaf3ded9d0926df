#!/usr/bin/env bash
# The GPU checks and timings of one device session, in one call; the tables come last.
#   bash benchmarks/gpu_session.sh tests,kernels,throughput "hf,torch,triton,triton+compile" "8"
# Parts: tests (pytest -m cuda), kernels (benchmarks/kernel_bench.py), throughput (benchmarks/throughput.py
# with the given variants and micro batches), capped (the 24 GB emulation); on 2+ GPUs: scaling
# (benchmarks/scaling.py: full/no_shard/hybrid on 1 vs 2 GPUs, micro batch SCALING_MICRO, default 8),
# parity (benchmarks/parity_1v2.py: 1 vs 2 GPUs, 2->1 and 1->2 resumes, PNG into $OUT and
# benchmarks/results), coverage (benchmarks/data_coverage.py on 2 ranks x 2 workers of the sample corpus);
# speculative: trains the pair of benchmarks/configs/spec_*.yaml on the prepared sample (SPEC_DATA, a
# folder with data/ and tokenizer/; SPEC_STEPS steps each) and runs benchmarks/speculative.py on it
# (extra flags in SPEC_FLAGS, e.g. "--compile --verify_ks ''").
set -uo pipefail
PARTS=${1:-tests,kernels,throughput}
VARIANTS=${2:-hf,torch,triton,triton+compile}
MICRO=${3:-8,16}
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TOKENIZERS_PARALLELISM=false
python3 - <<'PY' | tee "$OUT/versions.txt"
import torch, triton, transformers, lightning
print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__} | "
      f"transformers {transformers.__version__} | lightning {lightning.__version__}")
PY
if [[ ,$PARTS, == *,tests,* ]]; then
  python3 -m pytest -m cuda -q -s tests/test_kernels_cuda.py ${TESTS_K:+-k "$TESTS_K"} 2>&1 | tee "$OUT/cuda_tests.txt" | tail -n 25
fi
if [[ ,$PARTS, == *,kernels,* ]]; then
  python3 benchmarks/kernel_bench.py --json "$OUT/kernels.json" 2>&1 | tee "$OUT/kernels.txt" | tail -n 20
fi
if [[ ,$PARTS, == *,throughput,* ]]; then
  python3 benchmarks/throughput.py --variants "$VARIANTS" --micro_batches "$MICRO" --json "$OUT/throughput.json" \
    2>&1 | tee "$OUT/throughput.txt" | tail -n 30
fi
if [[ ,$PARTS, == *,capped,* ]]; then
  python3 benchmarks/throughput.py --memory_cap_gb 24 --variants "${CAPPED_VARIANTS:-triton+compile+ac}" \
    --micro_batches "${CAPPED_MICRO:-4,8}" --json "$OUT/capped.json" 2>&1 | tee "$OUT/capped.txt" | tail -n 12
fi
if [[ ,$PARTS, == *,scaling,* ]]; then
  python3 benchmarks/scaling.py --gpus 1,2 --modes "${SCALING_MODES:-full,no_shard,hybrid}" \
    --micro_batches "${SCALING_MICRO:-8}" ${SCALING_FLAGS:-} --json "$OUT/scaling.json" 2>&1 | tee "$OUT/scaling.txt" | tail -n 12
fi
if [[ ,$PARTS, == *,parity,* ]]; then
  python3 benchmarks/parity_1v2.py --out_dir "${WORK:-/tmp/gpu_work}/parity_runs" --png benchmarks/results/parity_1v2.png \
    --json "$OUT/parity.json" ${PARITY_FLAGS:-} 2>&1 | tee "$OUT/parity.txt" | tail -n 8
  cp benchmarks/results/parity_1v2.png "$OUT/"
fi
if [[ ,$PARTS, == *,coverage,* ]]; then
  python3 benchmarks/data_coverage.py --data_dir "${COVERAGE_DATA:-${WORK:-/tmp/gpu_work}/parity_runs/sample/data}" --ranks 2 --workers 2 \
    --micro_batch 4 --block_size 2048 --log "$OUT/data_coverage.csv" 2>&1 | tee "$OUT/coverage.txt" | tail -n 4
fi
if [[ ,$PARTS, == *,speculative,* ]]; then
  SPEC_DATA=${SPEC_DATA:-.gpu_data}
  for m in target_37M draft_5M; do
    python3 pretrain/tinyllama.py --model_config benchmarks/configs/spec_$m.yaml --data_dir "$SPEC_DATA/data" \
      --tokenizer_dir "$SPEC_DATA/tokenizer" --out_dir "${WORK:-/tmp/gpu_work}/spec_$m" --global_batch_size 64 \
      --micro_batch_size 64 --max_steps "${SPEC_STEPS:-600}" --lr 2e-3 --min_lr 2e-4 --warmup_steps "${SPEC_WARMUP:-50}" \
      --eval_interval "${SPEC_STEPS:-600}" --eval_batches 16 --save_interval "${SPEC_STEPS:-600}" --log_interval 100 \
      --num_workers 2 --tensorboard false 2>&1 | tee "$OUT/train_$m.txt" | grep -E "step|val" | tail -n 4
  done
  last() { ls -d "${WORK:-/tmp/gpu_work}/spec_$1"/checkpoints/step-* | tail -n 1; }
  python3 benchmarks/speculative.py --target "$(last target_37M)" --draft "$(last draft_5M)" ${SPEC_FLAGS:-} \
    --json "$OUT/speculative.json" 2>&1 | tee "$OUT/speculative.txt" | tail -n 40
fi
