#!/usr/bin/env bash
# Data parallel over 2 processes of one thread on the bench config's text decoder (hidden 1024, 8 layers, 16 heads,
# MLP 2816, vocabulary 151,936; `vocab=32768 bash bench/overlap.sh` for a smaller one) — init-tiny's wide options;
# encoders tiny and frozen — on the demo's data, AdamW:
# gradients all-reduced after backward against --overlap-grad-reduce (buckets all-reduced during backward). Prints the
# mean step time, the exposed data-parallel communication and the peak resident memory (the trainer's own report) of each.
# With extra="--use-distributed-optimizer" both runs use ZeRO-1 (the overlapped one reduce-scatters its buckets).
# Usage: bash bench/overlap.sh [iterations (default 6)] [bucket size in elements (default Megatron's 40M)]
set -euo pipefail
cd "$(dirname "$0")/.."
bucket=${2:-}
set -- "${1:-6}" 2
source bench/tiny-setup.sh
vocab=${vocab:-151936}
$cli init-tiny --out "$work/wide" --text-hidden-size 1024 --text-layers 8 --text-intermediate-size 2816 --text-heads 16 --vocab-size "$vocab" >/dev/null
cat > "$work/wide.json" <<'JSON'
{ "image_encoder": { "vision_encoder": { "freeze": true }, "vision_projector": { "freeze": true } },
  "audio_encoder": { "audio_encoder": { "freeze": true } },
  "text_decoder": { "freeze": false } }
JSON
flags="--mm-model $work/wide.json --mm-data $work/demo/data.json --load $work/wide --seq-length 1024 --lr 1e-5 --train-iters $iterations --log-interval 1 --global-batch-size 2 --micro-batch-size 1 --num-workers 1 --seed 5"
run() { OMP_NUM_THREADS=1 $mpi -x OMP_NUM_THREADS -np 2 $cli finetune $flags ${extra:-} "$@" 2>&1; }
after=$(run)
overlapped=$(run --overlap-grad-reduce ${bucket:+--ddp-bucket-size $bucket})
echo "DP 2 × 1 thread, bench-config text decoder, vocabulary $vocab, $iterations iterations${extra:+, $extra} (mean step over the second half):"
echo "  after backward : $(echo "$after" | mean_step) ms per step; $(echo "$after" | grep -o 'data-parallel communication: .*' | head -1); $(echo "$after" | grep -o 'peak resident memory: .*' | head -1)"
echo "  overlapped     : $(echo "$overlapped" | mean_step) ms per step; $(echo "$overlapped" | grep -o 'data-parallel communication: .*' | head -1); $(echo "$overlapped" | grep -o 'peak resident memory: .*' | head -1)"
echo "$overlapped" | grep -o 'overlapped gradient reduction.*' | sed 's/^/  /'
