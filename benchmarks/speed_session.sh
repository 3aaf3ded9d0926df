#!/usr/bin/env bash
# The float8 / bf16 speed checks of one device session; tables last. Logs: $OUT/logs.tgz.
#   bash benchmarks/speed_session.sh grid      # one GPU: HF baseline, bf16, float8 (throughput.py), the
#                                              # 24 GiB cap pair, and the real trainer in bf16 and float8
#   bash benchmarks/speed_session.sh lanes     # two GPUs at once: cuda tests, packing and server benchmarks on
#                                              # GPU 0, the 1,000-step bf16/float8 quality pair on GPU 1
#   bash benchmarks/speed_session.sh scaling   # FSDP2 bf16 vs float8 on 1 and 2 GPUs
#   bash benchmarks/speed_session.sh explore   # two GPUs at once: profiles and probes of the bf16 / float8 step
#                                              # (fused gate+up, coordinate-descent tuning, max-autotune, micro
#                                              # batch 24, accumulation 4), then the checkpoint save time
#   bash benchmarks/speed_session.sh final     # one GPU: checkpoint save time, then HF, bf16, float8 (tuned and
#                                              # not) at the recipe's 64 sequences per GPU step, and the trainer
#   bash benchmarks/speed_session.sh verify    # one GPU: checkpoint save time at the recipe's micro batch (pinned
#                                              # buffers kept), the cuda tests, the fused gate+up probe, the trainer in bf16
#   bash benchmarks/speed_session.sh last      # preparation scaling (CPUs), checkpoint save time (GPU 0), LoRA 7B vs full 1B (GPU 1)
#   bash benchmarks/speed_session.sh residual  # one GPU: the bf16 residual stream against the fp32 one (BASE: a
#                                              # tree before it, `git archive 93475ef | tar -x -C _base`), float8
#                                              # with fast accumulation in the backward, the fused gate+up probe
#   bash benchmarks/speed_session.sh inductor  # one GPU: RMSNorm, RoPE and SwiGLU left to Inductor in compiled blocks
#   bash benchmarks/speed_session.sh table     # one GPU: HF, bf16, float8 (with and without Inductor's elementwise ops)
#                                              # at the recipe's 64 sequences per GPU step
#   bash benchmarks/speed_session.sh trainers  # one GPU: the real trainer, bf16 (no flag) and --float8 tensorwise, 64
#                                              # sequences per step
#   bash benchmarks/speed_session.sh attention # one GPU, flash-attn-4 installed: every attention kernel at
#                                              # tiny_LLaMA_1b's shape (benchmarks/attention.py), fa4 against SDPA
#                                              # in the model (pytest -m cuda), the step with each kernel, causal
#                                              # and document-masked at mean length 512. flash-attn-4 installed with
#                                              # `pip install --target T`: put T and T/nvidia_cutlass_dsl/dsl_packages
#                                              # on PYTHONPATH (--target does not run the CuTe DSL's .pth file)
#   bash benchmarks/speed_session.sh fa4trainer # one GPU, flash-attn-4 and quack-kernels installed (as for
#                                              # attention): the norm, residual+norm and loss kernels against
#                                              # quack's; the step with SDPA, fa4, fa4 + quack's kernels, fa4 +
#                                              # float8; then the real trainer (no attention flag: auto takes
#                                              # fa4) in bf16 and float8, on DATA or else the corpus that
#                                              # muon_session.sh left in /tmp/ttl. Ends by DEADLINE s (565)
#   bash benchmarks/speed_session.sh hf        # one GPU: the Hugging Face baseline's step alone (before `quack`)
#   bash benchmarks/speed_session.sh quack     # the same installation: quack-kernels' norm, residual+norm and
#                                              # loss against ours; the real trainer on documents of mean length
#                                              # 512, causal, --document_mask and causal with SDPA (cuDNN), 24
#                                              # steps each (steady tok/s by benchmarks/trainer_windows.py); then
#                                              # quack's kernels in the step, until DEADLINE s (565)
#   bash benchmarks/speed_session.sh attnprobe # after `quack`, on the same machine (its flash-attn-4 in
#                                              # /tmp/fa4/site-packages): fa4 against fa4 with K and V repeated to
#                                              # every query head, and cuDNN, causal and document-masked, each fa4
#                                              # kernel's GPU time (benchmarks/attention.py --profile)
#   bash benchmarks/speed_session.sh quality   # the 1,000-step runs, three seeds each: bf16 and float8 of this tree,
#                                              # bf16 of BASE, all at once over the GPUs there (nothing timed);
#                                              # SEEDS=45,46,47 NEW_PRECISIONS=bf16 for more seeds of the bf16 pair
# Needs the prepared sample in DATA (default .gpu_data: data/ and tokenizer/).
set -uo pipefail
PART=${1:-grid}
OUT=${OUT:-/tmp/gpu_out}
DATA=${DATA:-.gpu_data}
WORK=${WORK:-/dev/shm/lit_gpt_work}
BASE=${BASE:-_base}
LOGS=$WORK/logs
mkdir -p "$OUT" "$LOGS"
snap() { tar czf "$OUT/.logs.$BASHPID.tmp" -C "$WORK" logs 2>/dev/null && mv "$OUT/.logs.$BASHPID.tmp" "$OUT/logs.tgz"; }
trap snap EXIT
# seconds left before DEADLINE (565 by default) for the parts that stop by it; never 0, which timeout reads as none
left() { local l=$(( ${DEADLINE:-565} - SECONDS )); echo $(( l > 1 ? l : 1 )); }
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 TOKENIZERS_PARALLELISM=false
python3 - <<'PY' 2>&1 | tee "$LOGS/versions.txt"
import importlib.metadata as md
import torch
def version(name):  # a call may leave an optional package out (torchao, when the carry is tight)
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "absent"
print(f"{torch.cuda.get_device_name()} x{torch.cuda.device_count()} | torch {torch.__version__} | " + " | ".join(
    f"{n} {version(n)}" for n in ("triton", "torchao", "transformers", "lightning", "flash-attn-4", "quack-kernels")))
PY

in_base() {  # run a command (or function) in the tree before the change, BASE, importing lit_gpt from there
  ( cd "$BASE" && PYTHONPATH="${PYTHONPATH/$OLDPWD/$PWD}" "$@" )
}

tp() {  # throughput.py rows: tp NAME ARGS...
  local name=$1; shift
  python3 benchmarks/throughput.py --json "$LOGS/tp_$name.json" "$@" > "$LOGS/tp_$name.txt" 2>&1
}

trainer() {  # the real trainer, no speed flag, global batch 32 (micro batch 16 by default on 80 GB: accumulation 2)
  local name=$1; shift
  rm -rf "$WORK/trainer_$name"
  timeout "${TRAINER_TIMEOUT:-300}" python3 pretrain/tinyllama.py --data_dir "$DATA/data" --tokenizer_dir "$DATA/tokenizer" \
    --out_dir "$WORK/trainer_$name" --global_batch_size 32 --max_steps 16 --warmup_steps 2 --log_interval 4 \
    --val_prefix "" --save_interval 0 --tensorboard false "$@" > "$LOGS/trainer_$name.txt" 2>&1
  cp "$WORK/trainer_$name/metrics.csv" "$LOGS/metrics_trainer_$name.csv" 2>/dev/null
}

if [[ $PART == grid ]]; then
  tp hf --variants hf --micro_batches 8 --grad_accum 2 --steps 8
  tp main --variants triton+compile,triton+compile+fp8 --micro_batches 16 --grad_accum 2 --steps 8
  trainer bf16
  trainer fp8 --float8 tensorwise
  tp capped --memory_cap_gb 24 --variants triton+compile+ac-mlp,triton+compile+ac-mlp+fp8 --micro_batches 4 --steps 8
  for f in hf main capped; do grep -E "^(variant|hf|triton)" "$LOGS/tp_$f.txt" | grep -v "^{"; done
  for f in bf16 fp8; do echo "trainer $f:"; grep -E "micro batch|step (8|12|16)/" "$LOGS/trainer_$f.txt" | cut -c1-170 | tail -n 4; done
fi

if [[ $PART == lanes ]]; then
  (  # GPU 0: the cuda tests, then the fine-tuning packing and server-load benchmarks
    export CUDA_VISIBLE_DEVICES=0
    timeout 150 python3 -m pytest -m cuda -q -p no:cacheprovider tests > "$LOGS/cuda_tests.txt" 2>&1; snap
    timeout 160 python3 benchmarks/sft_packing.py --model_name tiny_LLaMA_1b --max_seq_length 2048 --micro_batch_size 8 \
      --steps 20 > "$LOGS/sft_packing.txt" 2>&1; snap
    timeout 130 python3 benchmarks/serve_load.py --clients 16 --max_batch 16 --seconds 20 > "$LOGS/serve_load.txt" 2>&1; snap
  ) &
  (  # GPU 1: the 1,000-step bf16 / float8 quality pair (its metrics also carry the loader's data-wait share)
    export CUDA_VISIBLE_DEVICES=1
    timeout 420 python3 benchmarks/float8_quality.py --data_dir "$DATA/data" --tokenizer_dir "$DATA/tokenizer" \
      --out_dir "$WORK/quality" --steps 1000 --png "$OUT/float8_quality.png" --json "$OUT/float8_quality.json" \
      > "$LOGS/quality.txt" 2>&1
    for d in "$WORK"/quality/*/; do cp "$d/metrics.csv" "$LOGS/metrics_$(basename "$d").csv"; done; snap
  ) &
  wait
  tail -n 4 "$LOGS/cuda_tests.txt"; tail -n 3 "$LOGS/quality.txt"; tail -n 3 "$LOGS/sft_packing.txt"; tail -n 2 "$LOGS/serve_load.txt"
fi

if [[ $PART == scaling ]]; then
  for f8 in "" tensorwise; do
    timeout 150 python3 benchmarks/scaling.py --gpus 1,2 --modes full --micro_batches 8 --compile --steps 8 --warmup 3 \
      ${f8:+--float8 $f8} --json "$LOGS/scaling_${f8:-bf16}.json" > "$LOGS/scaling_${f8:-bf16}.txt" 2>&1; snap
  done
  for f in bf16 tensorwise; do echo "scaling $f:"; tail -n 3 "$LOGS/scaling_$f.txt"; done
fi

if [[ $PART == explore ]]; then
  lane_a() {
    tp fp8prof --variants triton+compile+fp8 --micro_batches 16 --grad_accum 2 --steps 6 --profile; snap
    tp fused --variants triton+compile+fusedmlp,triton+compile+fp8+fusedmlp --micro_batches 16 --grad_accum 2 --steps 6; snap
    tp big --variants triton+compile+fp8 --micro_batches 24 --grad_accum 2 --steps 6; snap
    tp accum4 --variants triton+compile,triton+compile+fp8 --micro_batches 16 --grad_accum 4 --steps 4; snap
  }
  lane_b() {
    tp bf16prof --variants triton+compile --micro_batches 16 --grad_accum 2 --steps 6 --profile; snap
    tp cdt --variants triton+compile+cdt,triton+compile+cdt+fp8 --micro_batches 16 --grad_accum 2 --steps 6 --timeout 400; snap
    tp autotune --variants triton+autotune+fp8 --micro_batches 16 --grad_accum 2 --steps 6 --timeout 300; snap
    timeout 200 python3 benchmarks/checkpoint_save.py --model tiny_LLaMA_1b --device cuda --micro_batch_size 4 \
      --out_dir /tmp/ckpt_bench > "$LOGS/checkpoint_save.txt" 2>&1; snap
  }
  if [[ $(python3 -c 'import torch; print(torch.cuda.device_count())') -ge 2 ]]; then
    ( export CUDA_VISIBLE_DEVICES=0; lane_a ) & ( export CUDA_VISIBLE_DEVICES=1; lane_b ) & wait
  else
    lane_a; lane_b
  fi
  for f in fp8prof bf16prof fused big accum4 cdt autotune; do echo "== $f"; sed -n '/^variant/,$p' "$LOGS/tp_$f.txt" | grep -v "^ " | head -n 8; done
  tail -n 7 "$LOGS/checkpoint_save.txt"
fi

if [[ $PART == final ]]; then
  timeout 200 python3 benchmarks/checkpoint_save.py --model tiny_LLaMA_1b --device cuda --micro_batch_size 4 \
    --out_dir /tmp/ckpt_bench > "$LOGS/checkpoint_save.txt" 2>&1; snap; rm -rf /tmp/ckpt_bench
  tp hf --variants hf --micro_batches 8 --grad_accum 4 --steps 6; snap
  tp main --variants triton+compile,triton+compile+fp8,triton+compile+notune+fp8 --micro_batches 16 --grad_accum 4 \
    --steps 6 --timeout 240; snap
  trainer fp8 --float8 tensorwise --global_batch_size 64 --max_steps 12; snap
  tail -n 7 "$LOGS/checkpoint_save.txt"
  for f in hf main; do sed -n '/^variant/,$p' "$LOGS/tp_$f.txt"; done
  echo "trainer fp8:"; grep -E "micro batch|step (8|12)/" "$LOGS/trainer_fp8.txt" | cut -c1-170 | tail -n 3
fi

if [[ $PART == verify ]]; then
  timeout 200 python3 benchmarks/checkpoint_save.py --model tiny_LLaMA_1b --device cuda --micro_batch_size 16 \
    --steps_after 4 --out_dir /tmp/ckpt_bench > "$LOGS/checkpoint_save.txt" 2>&1; snap; rm -rf /tmp/ckpt_bench
  timeout 170 python3 -m pytest -m cuda -q -p no:cacheprovider tests > "$LOGS/cuda_tests.txt" 2>&1; snap
  tp fused --variants triton+compile+fusedmlp,triton+compile+fp8+fusedmlp --micro_batches 16 --grad_accum 4 --steps 6; snap
  trainer bf16 --global_batch_size 64 --max_steps 12; snap
  tail -n 7 "$LOGS/checkpoint_save.txt"; tail -n 3 "$LOGS/cuda_tests.txt"
  sed -n '/^variant/,$p' "$LOGS/tp_fused.txt"
  echo "trainer bf16:"; grep -E "step (8|12)/" "$LOGS/trainer_bf16.txt" | cut -c1-170 | tail -n 2
fi

if [[ $PART == last ]]; then  # three at once: preparation scaling on the CPUs, one benchmark per GPU
  ( timeout 150 python3 benchmarks/prepare_scaling.py --processes '[1,2,4,8,16]' --copies 32 > "$LOGS/prepare_scaling.txt" 2>&1; snap ) &
  ( export CUDA_VISIBLE_DEVICES=0
    timeout 210 python3 benchmarks/checkpoint_save.py --model tiny_LLaMA_1b --device cuda --micro_batch_size 4 \
      --out_dir /tmp/ckpt_bench > "$LOGS/checkpoint_save.txt" 2>&1; snap ) &
  ( export CUDA_VISIBLE_DEVICES=1
    timeout 230 python3 benchmarks/finetune_memory.py --tokenizer_dir "$DATA/tokenizer" --work_dir "$WORK/finetune" \
      --micro_batch 2 --steps 8 --timeout 150 --json "$LOGS/finetune_memory.json" > "$LOGS/finetune_memory.txt" 2>&1; snap ) &
  wait
  tail -n 8 "$LOGS/prepare_scaling.txt"; tail -n 6 "$LOGS/checkpoint_save.txt"; tail -n 4 "$LOGS/finetune_memory.txt"
fi

if [[ $PART == residual ]]; then
  tp new --variants triton+compile,triton+compile+notune+fp8,triton+compile+notune+fp8fast,triton+compile+fusedmlp,\
triton+compile+notune+fp8+fusedmlp --micro_batches 16 --grad_accum 2 --steps 6; snap
  in_base tp old --variants triton+compile,triton+compile+notune+fp8 --micro_batches 16 --grad_accum 2 --steps 6; snap
  for f in old new; do echo "== $f"; sed -n '/^variant/,$p' "$LOGS/tp_$f.txt"; done
fi

if [[ $PART == inductor ]]; then
  tp inductor --variants triton+compile,triton+compile+inductorops,triton+compile+notune+fp8,\
triton+compile+notune+fp8+inductorops --micro_batches 16 --grad_accum 2 --steps 6; snap
  sed -n '/^variant/,$p' "$LOGS/tp_inductor.txt"
fi

if [[ $PART == table ]]; then
  tp hf --variants hf --micro_batches 8 --grad_accum 4 --steps 6; snap
  tp main --variants triton+compile,triton+compile+fp8,triton+compile+fp8+inductorops --micro_batches 16 \
    --grad_accum 4 --steps 6 --timeout 240; snap
  for f in hf main; do sed -n '/^variant/,$p' "$LOGS/tp_$f.txt"; done
fi

if [[ $PART == trainers ]]; then
  trainer bf16 --global_batch_size 64 --max_steps 12; snap
  trainer fp8 --float8 tensorwise --global_batch_size 64 --max_steps 12; snap
  for f in bf16 fp8; do echo "trainer $f:"; grep -E "micro batch|step (8|12)/" "$LOGS/trainer_$f.txt" | cut -c1-170 | tail -n 3; done
fi

if [[ $PART == attention ]]; then
  python3 benchmarks/attention.py --json "$LOGS/attention.json" > "$LOGS/attention.txt" 2>&1; snap
  python3 -m pytest -m cuda -q tests/test_attention_cuda.py > "$LOGS/attention_tests.txt" 2>&1; snap
  tp attn --variants triton+compile,triton+compile+fa4,triton+compile+docmask,triton+compile+docmask+fa4 \
    --doc_len 512 --micro_batches 16 --grad_accum 2 --steps 6 --timeout 240; snap
  sed -n '/^kernel/,$p' "$LOGS/attention.txt"; tail -n 3 "$LOGS/attention_tests.txt"
  sed -n '/^variant/,$p' "$LOGS/tp_attn.txt"
fi

if [[ $PART == fa4trainer ]]; then
  timeout "$(left)" python3 benchmarks/kernel_bench.py --ops rms_norm,add_rms_norm,linear_cross_entropy \
    --variants triton,triton_compile,quack,compile --rep-ms 50 --json "$LOGS/kernels.json" > "$LOGS/kernels.txt" 2>&1; snap
  timeout "$(left)" python3 benchmarks/throughput.py --json "$LOGS/tp_fa4.json" --micro_batches 16 --grad_accum 2 \
    --steps 6 --timeout 200 --variants triton+compile+sdpa,triton+compile+fa4,quack+compile+fa4,triton+compile+fp8+fa4 \
    > "$LOGS/tp_fa4.txt" 2>&1; snap
  sources=()
  if [ ! -d "$DATA/data" ] && [ -f /tmp/ttl/corpus.json ]; then  # the time-to-loss corpus of muon_session.sh
    DATA=/tmp/ttl; sources=(--train_sources '{"train_code": 1.0}')
  fi
  trainer bf16 "${sources[@]}" --global_batch_size 64 --max_steps 12; snap
  trainer fp8 "${sources[@]}" --float8 tensorwise --global_batch_size 64 --max_steps 12; snap
  sed -n '/^op /,$p' "$LOGS/kernels.txt"; sed -n '/^variant/,$p' "$LOGS/tp_fa4.txt"
  for f in bf16 fp8; do echo "trainer $f:"; grep -E "attention|micro batch|step (8|12)/" "$LOGS/trainer_$f.txt" | cut -c1-170 | tail -n 4; done
fi

if [[ $PART == hf ]]; then  # the Hugging Face baseline alone, in the call before `quack` on the same machine
  tp hf --variants hf --micro_batches 8 --grad_accum 4 --steps 6 --timeout 200; snap  # micro batch 16 does not fit an H100
  sed -n '/^variant/,$p' "$LOGS/tp_hf.txt"
fi

if [[ $PART == quack ]]; then
  # quack's kernels against ours first (never measured yet; two minutes at most)
  timeout "$(( $(left) < 120 ? $(left) : 120 ))" python3 benchmarks/kernel_bench.py \
    --ops rms_norm,add_rms_norm,linear_cross_entropy --variants triton,quack --rep-ms 50 \
    --json "$LOGS/kernels_quack.json" > "$LOGS/kernels_quack.txt" 2>&1; snap
  # the real trainer, causal and document-masked, on shards whose documents start (BOS) 512 tokens apart on
  # average (random tokens: the step's speed does not depend on them), with any tokenizer: TOKENIZER, else one
  # trained on the embedded sample (a second)
  docs=$WORK/docs512; mkdir -p "$docs/data"; tok=${TOKENIZER:-$WORK/sample_tokenizer}
  [ -n "${TOKENIZER:-}" ] || python3 scripts/train_tokenizer.py --out_dir "$tok" > "$LOGS/tokenizer.txt" 2>&1
  tok=$(realpath "$tok")
  python3 - "$docs/data" "$tok" <<'PY'
import sys
import numpy as np
from lit_gpt.data import write_shard
from lit_gpt.tokenizer import Tokenizer
tokenizer = Tokenizer(sys.argv[2])
rng = np.random.default_rng(0)
for i in range(2):
    ids = rng.integers(0, tokenizer.vocab_size, 1 << 21, dtype=np.uint16)
    ids[rng.random(ids.size) < 1 / 512] = tokenizer.bos_id
    write_shard(f"{sys.argv[1]}/train_docs_{i:010d}.bin", ids)
PY
  ln -sfn "$tok" "$docs/tokenizer"
  docs_trainer() { DATA=$docs TRAINER_TIMEOUT=$(left) trainer "$1" --train_sources '{"train_docs": 1.0}' \
    --global_batch_size 64 --max_steps 24 "${@:2}"; snap; }
  # 24 steps: the twelfth session's 12 left two 4-step windows after compilation, which disagreed by 7%. The
  # third run is the causal step the 1.05x bound was set against (cuDNN through SDPA)
  docs_trainer causal512
  docs_trainer docmask512 --document_mask true
  docs_trainer causal512sdpa --attention sdpa
  # quack's kernels in the step, in the time left
  timeout "$(left)" python3 benchmarks/throughput.py --json "$LOGS/tp_quack.json" --micro_batches 16 --grad_accum 2 \
    --steps 6 --timeout 150 --variants triton+compile+fa4,quack+compile+fa4 > "$LOGS/tp_quack.txt" 2>&1; snap
  sed -n '/^op /,$p' "$LOGS/kernels_quack.txt"; sed -n '/^variant/,$p' "$LOGS/tp_quack.txt"
  python3 benchmarks/trainer_windows.py --after 4 "$LOGS"/metrics_trainer_{causal512,docmask512,causal512sdpa}.csv
fi

if [[ $PART == attnprobe ]]; then
  timeout "$(left)" python3 benchmarks/attention.py --kernels fa4,fa4-mha,sdpa-cudnn --profile \
    --json "$LOGS/attnprobe.json" > "$LOGS/attnprobe.txt" 2>&1; snap
  sed -n '/ms a step by kernel\|mean document length/,$p' "$LOGS/attnprobe.txt"
fi

if [[ $PART == quality ]]; then  # trainings share the GPUs: losses and test results are compared, not speed
  DATA=$(realpath "$DATA"); GPUS=$(python3 -c 'import torch; print(",".join(map(str, range(torch.cuda.device_count()))))')
  quality() {  # quality NAME PRECISIONS: three seeds of each precision, with the tree in the current directory
    timeout 560 python3 benchmarks/float8_quality.py --data_dir "$DATA/data" --tokenizer_dir "$DATA/tokenizer" \
      --out_dir "$WORK/quality_$1" --steps 1000 --precisions "$2" --seeds "${SEEDS:-42,43,44}" --jobs 6 --gpus "$GPUS" \
      --json "$LOGS/quality_$1.json" --png "$LOGS/quality_$1.png" > "$LOGS/quality_$1.txt" 2>&1
    for d in "$WORK/quality_$1"/*/; do cp "$d/metrics.csv" "$LOGS/metrics_$1_$(basename "$d").csv"; done
  }
  cp benchmarks/float8_quality.py "$BASE/benchmarks/"
  quality new "${NEW_PRECISIONS:-bf16,float8}" & in_base quality old bf16 & wait; snap
  for f in new old; do echo "== $f"; tail -n 10 "$LOGS/quality_$f.txt"; done
fi
