#!/usr/bin/env bash
# Pipeline-parallel step time on the tiny multimodal model (the demo's image, audio, video-with-sound and text data):
# PP 1 (one process, 1 and 2 threads) against PP 2 (two processes of one thread), each rank's busy time and idle share.
# Usage: bash bench/pipeline.sh [iterations (default 20)] [global batch (default 8)]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/tiny-setup.sh
cat > "$work/pp2.json" <<'JSON'
{
  "image_encoder": { "vision_encoder": { "freeze": true, "pipeline_num_layers": [2, 0] }, "vision_projector": { "freeze": false } },
  "audio_encoder": { "audio_encoder": { "freeze": false, "pipeline_num_layers": [2, 0] } },
  "text_decoder": { "freeze": false, "pipeline_num_layers": [1, 1] }
}
JSON
flags="--mm-data $work/demo/data.json --seq-length 1024 --lr 1e-3 --train-iters $iterations --log-interval 1 --global-batch-size $batch --num-workers 1 --seed 5"
pp1_1=$(OMP_NUM_THREADS=1 $mpi -x OMP_NUM_THREADS -np 1 $cli finetune --mm-model "$work/demo/model.json" $flags 2>&1 | mean_step)
pp1_2=$(OMP_NUM_THREADS=2 $mpi -x OMP_NUM_THREADS -np 1 $cli finetune --mm-model "$work/demo/model.json" $flags 2>&1 | mean_step)
pp2_out=$(OMP_NUM_THREADS=1 $mpi -x OMP_NUM_THREADS -np 2 $cli finetune --mm-model "$work/pp2.json" --pipeline-model-parallel-size 2 $flags 2>&1)
pp2=$(echo "$pp2_out" | mean_step)
echo "global batch $batch, micro-batch 1, $iterations iterations (mean step over the second half):"
echo "  PP 1, 1 process x 1 thread : $pp1_1 ms per step"
echo "  PP 1, 1 process x 2 threads: $pp1_2 ms per step"
echo "  PP 2, 2 processes x 1 thread: $pp2 ms per step"
echo "$pp2_out" | grep -A3 "pipeline report" | sed 's/^/  /'
