#!/usr/bin/env bash
# Tensor-parallel step time on the tiny multimodal model (the demo's image, audio, video-with-sound and text data):
# TP 1 (one process of 1 and of 2 threads) against TP 2 and TP 2 + sequence parallel (two processes of one thread),
# with the share of the step spent in the tensor-parallel collectives that finetune prints at the end.
# The decoder-only benchmark at a size where the split pays (hidden 1024, seq 2048) is
#   mpirun -np 2 dotnet bench/OmniTune.Bench/bin/Release/net10.0/OmniTune.Bench.dll --only tensor-parallel
# Usage: bash bench/tensor.sh [iterations (default 20)] [global batch (default 8)]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/tiny-setup.sh
flags="--mm-model $work/demo/model.json --mm-data $work/demo/data.json --seq-length 1024 --lr 1e-3 --train-iters $iterations --log-interval 1 --global-batch-size $batch --num-workers 1 --seed 5"
tp1_1=$(OMP_NUM_THREADS=1 $mpi -x OMP_NUM_THREADS -np 1 $cli finetune $flags 2>&1 | mean_step)
tp1_2=$(OMP_NUM_THREADS=2 $mpi -x OMP_NUM_THREADS -np 1 $cli finetune $flags 2>&1 | mean_step)
tp2_out=$(OMP_NUM_THREADS=1 $mpi -x OMP_NUM_THREADS -np 2 $cli finetune $flags --tensor-model-parallel-size 2 2>&1)
sp_out=$(OMP_NUM_THREADS=1 $mpi -x OMP_NUM_THREADS -np 2 $cli finetune $flags --tensor-model-parallel-size 2 --sequence-parallel 2>&1)
echo "global batch $batch, micro-batch 1, $iterations iterations (mean step over the second half):"
echo "  TP 1, 1 process x 1 thread  : $tp1_1 ms per step"
echo "  TP 1, 1 process x 2 threads : $tp1_2 ms per step"
echo "  TP 2, 2 processes x 1 thread: $(echo "$tp2_out" | mean_step) ms per step; $(echo "$tp2_out" | grep -o 'tensor-parallel communication: .*')"
echo "  TP 2 + sequence parallel    : $(echo "$sp_out" | mean_step) ms per step; $(echo "$sp_out" | grep -o 'tensor-parallel communication: .*')"
