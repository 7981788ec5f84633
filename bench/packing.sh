#!/usr/bin/env bash
# Sequence packing on LLaMA-Factory's multimodal demo mix (../shared/assets/llamafactory-demo: mllm_demo, mllm_audio_demo,
# mllm_video_demo — 12 samples of images, audio and video, taken 4 times) through the tiny model, one process, micro-batch 4: padded rows
# (one sample each) against neat-packed rows (data.json neat_packing: several samples per row of --seq-length tokens).
# Samples/s = samples per row × rows per step / step time. workers=N (default 2) sets --num-workers; extra="..." adds
# finetune flags. Media decoding (an ffmpeg process per video and per audio) costs more than the tiny model's step; the
# media cache (--media-cache-mb, default 1024) decodes each file once, so from the second epoch on the steps measure the
# model: 2 cores, 1 worker: padded 32.0, packed 51.3 samples/s (1.60×); with extra="--media-cache-mb 0", where every
# load decodes again and the ratio shows the decoding more than the packing: padded 9.1, packed 9.2 (1.01×).
# Usage: bash bench/packing.sh [iterations (default 20)] [global batch (default 4)] [seq length (default 1024)]
set -euo pipefail
cd "$(dirname "$0")/.."
demo_set="$(cd .. && pwd)/shared/assets/llamafactory-demo"
[ -f "$demo_set/dataset_info.json" ] || { echo "skipped: $demo_set is absent (LLaMA-Factory's demo set)"; exit 0; }
seq=${3:-1024}
set -- "${1:-20}" "${2:-4}"
source bench/tiny-setup.sh
# The three demo files concatenated 4 times (48 samples) so that packed rows fill several global batches.
python3 - "$demo_set" "$work/mix.json" <<'PY'
import json, sys
rows = [r for _ in range(4) for name in ("mllm_demo", "mllm_audio_demo", "mllm_video_demo") for r in json.load(open(f"{sys.argv[1]}/{name}.json"))]
json.dump(rows, open(sys.argv[2], "w"))
PY
write_data() {   # $1 = file, $2 = extra basic_parameters
  cat > "$1" <<JSON
{ "dataset_param": {
    "dataset_type": "huggingface",
    "preprocess_parameters": { "model_name_or_path": "$work/demo/tiny-model", "image_max_pixels": 262144, "video_max_pixels": 16384 },
    "basic_parameters": { "template": "qwen2_omni", "dataset_dir": "$demo_set", "dataset": "$work/mix.json"$2 },
    "attr": { "images": "images", "videos": "videos", "audios": "audios", "messages": "messages", "role_tag": "role", "content_tag": "content",
              "user_tag": "user", "assistant_tag": "assistant" } },
  "dataloader_param": { "dataloader_mode": "sampler", "drop_last": true, "shuffle": true } }
JSON
}
write_data "$work/padded.json" ""
write_data "$work/packed.json" ', "neat_packing": true'
flags="--mm-model $work/demo/model.json --seq-length $seq --lr 1e-3 --train-iters $iterations --log-interval 1 --global-batch-size $batch --micro-batch-size 4 --num-workers ${workers:-2} --seed 5 ${extra:-}"
padded_log=$($cli finetune $flags --mm-data "$work/padded.json" 2>&1)
packed_log=$($cli finetune $flags --mm-data "$work/packed.json" 2>&1)
padded=$(echo "$padded_log" | mean_step)
packed=$(echo "$packed_log" | mean_step)
per_row=$(echo "$packed_log" | grep -o '[0-9]* training samples in [0-9]* rows' | awk '{ printf "%.2f", $1 / $5 }')
echo "LLaMA-Factory demo mix (12 samples × 4), tiny model, micro-batch 4, global batch $batch, seq length $seq, $iterations iterations (mean step over the second half):"
echo "$packed_log" | grep -m1 'neat packing' | sed 's/^/  /'
awk -v a="$padded" -v b="$packed" -v r="$per_row" -v g="$batch" 'BEGIN {
  sa = g / (a / 1000); sb = g * r / (b / 1000);
  printf "  padded (one sample per row): %.1f ms per step, %.2f samples/s\n", a, sa;
  printf "  neat packing (%.2f per row) : %.1f ms per step, %.2f samples/s (%.2fx)\n", r, b, sb, sb / sa }'
