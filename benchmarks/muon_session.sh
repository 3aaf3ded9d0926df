#!/usr/bin/env bash
# The Muon / time-to-loss checks of one device session (issue 24); tables last, logs in $OUT/logs.tgz.
#   bash benchmarks/muon_session.sh overhead   # prepare the corpus (once per machine), then tiny_LLaMA_1b in the real
#                                              # trainer with AdamW and with Muon at 64 and at 1024 sequences a step
#   bash benchmarks/muon_session.sh cudatests  # the GPU tests of Muon (float8, compiled, save and resume)
#   bash benchmarks/muon_session.sh fp8long    # tiny_LLaMA_1b, Muon + float8, 300 steps on the corpus
#   bash benchmarks/muon_session.sh sweep      # the plan's learning-rate sweeps (ONLY=adamw,muon), JOBS at once
#   bash benchmarks/muon_session.sh steptime   # every configuration's tokens/s, one after the other
#   bash benchmarks/muon_session.sh final      # the final runs of ONLY (SEEDS=1,2), JOBS at once (default 1), at
#                                              # LR (default: the sweep's best); STOP=1: each ends at the
#                                              # baseline's final loss (challengers; BASELINE_LR: the baseline's
#                                              # finals at that rate set it); each run recorded as it ends
#   bash benchmarks/muon_session.sh report     # the time-to-loss table and PNG of what has run
# sweep, steptime and final end by DEADLINE seconds after the start (default 565, under the call's 600).
# The corpus (benchmarks/time_to_loss.py prepare) and the runs stay in $TTL (/tmp/ttl) while the machine is warm;
# the runs of earlier sessions (metrics and settings, benchmarks/results/*_ttl_runs) are put back there
# first, and `train` keeps every run already there.
set -uo pipefail
PART=${1:-overhead}
OUT=${OUT:-/tmp/gpu_out}
TTL=${TTL:-/tmp/ttl}
WORK=${WORK:-/tmp/muon_work}
LOGS=$WORK/logs
mkdir -p "$OUT" "$LOGS"
snap() {  # the logs and every run's metrics and settings (not the weights)
  local kept; kept=$(cd "$TTL" 2>/dev/null && find runs steptime corpus.json \( -name "*.csv" -o -name "*.json" -o -name "*.txt" \) 2>/dev/null)
  tar czf "$OUT/.logs.$BASHPID.tmp" -C "$WORK" logs -C "$TTL" $kept; mv "$OUT/.logs.$BASHPID.tmp" "$OUT/logs.tgz"
}
trap snap EXIT
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 TOKENIZERS_PARALLELISM=false
python3 - <<'PY' | tee "$LOGS/versions.txt"
import torch, triton, lightning, torchao
print(f"{torch.cuda.get_device_name()} x{torch.cuda.device_count()} | torch {torch.__version__} | triton {triton.__version__} | "
      f"torchao {torchao.__version__} | lightning {lightning.__version__}")
PY

restored() {  # the runs of earlier sessions and their step times (measured in one job), where none are yet
  mkdir -p "$TTL/runs"
  for run in benchmarks/results/*_ttl_runs/*/; do
    [ -e "$TTL/runs/$(basename "$run")" ] || cp -r "$run" "$TTL/runs/"
  done
  # step times only from the card in hand (the runs' losses by tokens do not depend on the card)
  local card; card=$(python3 -c "import torch; print('h200' if 'H200' in torch.cuda.get_device_name() else 'h100')")
  local steps; steps=$(ls benchmarks/results/${card}_*_ttl_steptime.json 2>/dev/null | tail -n 1)
  [ -n "$steps" ] && [ ! -f "$TTL/steptime/steptime.json" ] && mkdir -p "$TTL/steptime" && cp "$steps" "$TTL/steptime/steptime.json"
  return 0
}

bounded() {  # a command ended (SIGINT: its trainings are killed) before the call's 600 s, so the logs come back
  timeout -s INT -k 15 $(( ${DEADLINE:-565} - SECONDS )) "$@"
}

prepared() {  # the corpus, prepared once per machine
  restored
  [ -f "$TTL/corpus.json" ] && return
  local t0=$SECONDS
  python3 benchmarks/time_to_loss.py prepare --out "$TTL" > "$LOGS/prepare.txt" 2>&1 || { tail -30 "$LOGS/prepare.txt"; exit 1; }
  echo "prepared in $((SECONDS - t0)) s: $(python3 -c "import json; c=json.load(open('$TTL/corpus.json')); print({k: c[k] for k in ('train', 'val')})")"
}

trainer_1b() {  # trainer_1b NAME ARGS...: tiny_LLaMA_1b on the corpus, no validation, no save
  local name=$1; shift
  rm -rf "$WORK/$name"
  timeout 420 python3 pretrain/tinyllama.py --data_dir "$TTL/data" --tokenizer_dir "$TTL/tokenizer" \
    --train_sources '{"train_code": 1.0}' --val_prefix "" --model_name tiny_LLaMA_1b --out_dir "$WORK/$name" \
    --save_interval 0 --tensorboard false --resume null "$@" > "$LOGS/$name.txt" 2>&1
  echo "$name: exit $?"
}

tps() {  # the median logged tokens/s of a run, its first window (compilation) left out, and the second of longer logs
  python3 - "$WORK/$1/metrics.csv" <<'PY'
import statistics, sys
from lit_gpt.training.metrics import read_metrics
v = [x for _, x in read_metrics(sys.argv[1])["tokens_per_sec"]]
print(f"{statistics.median(v[2:] if len(v) > 4 else v[1:]):.0f}")
PY
}

case $PART in
overhead)
  prepared
  common=(--micro_batch_size 16 --warmup_steps 2 --lr 4e-4 --min_lr 4e-5)
  # 64 sequences a step (TinyLlama's share of one GPU of 16): the optimizer step weighs most here
  trainer_1b oh_adamw "${common[@]}" --global_batch_size 64 --max_steps 16 --log_interval 2 --optimizer adamw
  trainer_1b oh_muon "${common[@]}" --global_batch_size 64 --max_steps 16 --log_interval 2 --optimizer muon
  # the recipe's global batch of 1024 sequences on one GPU (accumulation 64): steps 2 and 3 timed
  trainer_1b recipe_adamw "${common[@]}" --global_batch_size 1024 --max_steps 3 --log_interval 1 --optimizer adamw
  trainer_1b recipe_muon "${common[@]}" --global_batch_size 1024 --max_steps 3 --log_interval 1 --optimizer muon
  a=$(tps oh_adamw); m=$(tps oh_muon); ra=$(tps recipe_adamw); rm=$(tps recipe_muon)
  echo "tiny_LLaMA_1b, bf16, compiled, micro batch 16, one GPU:"
  echo "  64 sequences a step:   adamw $a tok/s, muon $m tok/s, muon adds $(python3 -c "print(f'{$a/$m-1:.2%}')") to the step"
  echo "  1024 sequences a step: adamw $ra tok/s, muon $rm tok/s, muon adds $(python3 -c "print(f'{$ra/$rm-1:.2%}')") to the step"
  ;;
cudatests)
  timeout 300 python3 -m pytest -m cuda -q tests/test_muon_cuda.py > "$LOGS/cuda_tests.txt" 2>&1; tail -3 "$LOGS/cuda_tests.txt"
  ;;
fp8long)
  prepared
  trainer_1b fp8_muon_300 --optimizer muon --float8 tensorwise --global_batch_size 16 --micro_batch_size 16 \
    --max_steps 300 --warmup_steps 30 --lr 4e-4 --min_lr 4e-5 --log_interval 10
  python3 - "$WORK/fp8_muon_300/metrics.csv" <<'PY'
import math, sys
from lit_gpt.training.metrics import read_metrics
m = read_metrics(sys.argv[1])
loss = m["loss"]
worst = max(b - min(v for _, v in loss[: i + 1]) for i, (_, b) in enumerate(loss))
print(f"fp8 muon 300 steps: loss {loss[0][1]:.3f} -> {loss[-1][1]:.3f}, logged {len(loss)}, all finite "
      f"{all(math.isfinite(v) for _, v in loss)}, skipped {m['skipped_steps'][-1][1]:.0f}, largest rise over the "
      f"running minimum {worst:.3f}, max grad norm {max(v for _, v in m['grad_norm']):.2f}, "
      f"tok/s {sorted(v for _, v in m['tokens_per_sec'])[len(m['tokens_per_sec']) // 2]:.0f}")
PY
  ;;
sweep)
  prepared
  bounded python3 benchmarks/time_to_loss.py train --data "$TTL" --phase sweep --only "${ONLY:-adamw,muon}" \
    --jobs "${JOBS:-6}" ${MICRO:+--micro_batch_size $MICRO} 2>&1 | tee "$LOGS/sweep.txt" | tail -12
  ;;
steptime)
  prepared
  bounded python3 benchmarks/time_to_loss.py steptime --data "$TTL" --only "${ONLY:-adamw,muon,muon_float8}" 2>&1 | tee "$LOGS/steptime.txt" | tail -5
  ;;
final)
  prepared
  bounded python3 benchmarks/time_to_loss.py train --data "$TTL" --phase final --only "${ONLY:-adamw}" \
    --seeds "${SEEDS:-1}" --jobs "${JOBS:-1}" ${LR:+--lr $LR} ${STOP:+--stop_at_target} ${BASELINE_LR:+--baseline_lr $BASELINE_LR} \
    ${MICRO:+--micro_batch_size $MICRO} 2>&1 | tee "$LOGS/final_${ONLY:-adamw}_${SEEDS:-1}.txt"
  ;;
report)
  restored
  python3 benchmarks/time_to_loss.py report --data "$TTL" --png "$OUT/time_to_loss.png" --json "$OUT/time_to_loss.json" \
    ${BASELINE_LR:+--baseline_lr $BASELINE_LR}
  ;;
*)
  echo "unknown part $PART"; exit 2
  ;;
esac
