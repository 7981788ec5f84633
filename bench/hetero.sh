#!/usr/bin/env bash
# Heterogeneous parallel on the tiny multimodal model (the demo's image, audio, video-with-sound and text data), two
# processes of one thread, decoder TP 2, encoders whole (model.json "tp": 1, trainable): each TP rank encoding every
# media item (homogeneous) against the two ranks sharing them (--hetero-parallel).
# Usage: bash bench/hetero.sh [iterations (default 20)] [global batch (default 8)]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/tiny-setup.sh
cat > "$work/hetero.json" <<'JSON'
{
  "image_encoder": { "tp": 1, "vision_encoder": { "freeze": false }, "vision_projector": { "freeze": false } },
  "audio_encoder": { "tp": 1, "audio_encoder": { "freeze": false } },
  "text_decoder": { "freeze": false }
}
JSON
flags="--mm-model $work/hetero.json --mm-data $work/demo/data.json --seq-length 1024 --lr 1e-3 --train-iters $iterations --log-interval 1 --global-batch-size $batch --micro-batch-size 2 --num-workers 1 --seed 5 --tensor-model-parallel-size 2"
same=$(OMP_NUM_THREADS=1 $mpi -x OMP_NUM_THREADS -np 2 $cli finetune $flags 2>&1 | mean_step)
shared=$(OMP_NUM_THREADS=1 $mpi -x OMP_NUM_THREADS -np 2 $cli finetune $flags --hetero-parallel 2>&1 | mean_step)
echo "TP 2, encoders whole and trainable, micro-batch 2, global batch $batch, $iterations iterations (mean step over the second half):"
echo "  every TP rank encodes every item  : $same ms per step"
echo "  --hetero-parallel (items shared)  : $shared ms per step"
