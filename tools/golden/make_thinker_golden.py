#!/usr/bin/env python3
"""Writes a Hugging Face golden dump of the tiny random Qwen2.5-Omni thinker for OmniTune's golden test.

Usage (needs torch, transformers >= 4.52 with Qwen2.5-Omni, safetensors):
    dotnet run --project src/OmniTune.Cli -c Release -- init-tiny --out /tmp/omni-tiny --seed 0
    python tools/golden/make_thinker_golden.py /tmp/omni-tiny tests/golden/thinker-tiny.safetensors 0

Dump layout (one safetensors file; metadata: model_seed, model_sha256, transformers_version):
  inputs : input_ids I64[B,S], attention_mask I64[B,S], labels I64[B,S], pixel_values F32[N,1176],
           image_grid_thw I64[n,3], pixel_values_videos F32[Nv,1176], video_grid_thw I64[nv,3],
           video_second_per_grid F32[nv], input_features F32[A,mel,frames], feature_attention_mask I64[A,frames],
           use_audio_in_video I64[1]
  outputs: inputs_embeds F32[B,S,H] (placeholders filled), position_ids I64[3,B,S], rope_deltas I64[B,1],
           logits F32[B,S,V], loss F32[1], image_embeds, video_embeds, audio_embeds (encoder outputs, F32)
The sample mirrors tests/OmniTune.Tests/Models/MultimodalSample.cs: an audio clip (120 frames), an image (grid 1x4x4)
and a video (grid 2x4x4, 1.0 s per grid) with its 300-frame audio track interleaved; loss on the answer only.
"""
import hashlib
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
import transformers
from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniThinkerConfig
from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniThinkerForConditionalGeneration


def audio_tokens(frames):
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


def interleave(grid, second_per_grid, n_audio, merge, per_second, seconds_per_chunk):
    per_group = (grid[1] // merge) * (grid[2] // merge)
    video = [t * second_per_grid * per_second for t in range(grid[0]) for _ in range(per_group)]
    audio = list(range(n_audio))
    tpc = per_second * seconds_per_chunk

    def chunks(values):
        sizes, start, current = [], 0, 1
        for i, v in enumerate(values):
            if v >= current * tpc:
                sizes.append(i - start)
                start, current = i, current + 1
        sizes.append(len(values) - start)
        return sizes

    v, a = chunks(video), chunks(audio)
    runs = []
    for j in range(max(len(v), len(a))):
        if j < len(v) and v[j] > 0:
            runs.append(("video", v[j]))
        if j < len(a) and a[j] > 0:
            runs.append(("audio", a[j]))
    return runs


def main(folder, out, model_seed=0):
    """model_seed: the --seed given to init-tiny (recorded so the test can rebuild the same weights)."""
    seed = 1234
    with open(os.path.join(folder, "config.json")) as f:
        full = json.load(f)
    config = Qwen2_5OmniThinkerConfig(**full["thinker_config"])
    config._attn_implementation = "eager"
    model = Qwen2_5OmniThinkerForConditionalGeneration(config).float().eval()
    weights_path = os.path.join(folder, "model.safetensors")
    state = {k[len("thinker."):]: v.float() for k, v in load_file(weights_path).items() if k.startswith("thinker.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    with open(weights_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest().upper()

    c = full["thinker_config"]
    merge = c["vision_config"]["spatial_merge_size"]
    with open(os.path.join(folder, "vocab.json")) as f:
        vocab = json.load(f)
    byte_ids = {}
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode
    for b, ch in bytes_to_unicode().items():
        byte_ids[b] = vocab[ch]

    ids = []
    def text(s):
        ids.extend(byte_ids[b] for b in s.encode("utf-8"))

    g = torch.Generator().manual_seed(seed)
    image, video = (1, 4, 4), (2, 4, 4)
    clip_frames, track_frames = 120, 300
    ids.append(c["bos_token_id"]); text("user\n")
    ids += [c["audio_start_token_id"]] + [c["audio_token_index"]] * audio_tokens(clip_frames) + [c["audio_end_token_id"]]
    ids += [c["vision_start_token_id"]] + [c["image_token_index"]] * (image[0] * image[1] * image[2] // merge ** 2) + [c["vision_end_token_id"]]
    ids += [c["vision_start_token_id"], c["audio_start_token_id"]]
    for kind, count in interleave(video, 1.0, audio_tokens(track_frames), merge, c["position_id_per_seconds"], c["seconds_per_chunk"]):
        ids += [c["video_token_index"] if kind == "video" else c["audio_token_index"]] * count
    ids += [c["audio_end_token_id"], c["vision_end_token_id"]]
    text("What do you see and hear?"); ids.append(c["eos_token_id"]); text("\n"); ids.append(c["bos_token_id"]); text("assistant\n")
    prompt = len(ids)
    text("A red circle and a tone."); ids.append(c["eos_token_id"])

    mel = c["audio_config"]["num_mel_bins"]
    patch_dim = 3 * 2 * 14 * 14
    input_ids = torch.tensor([ids])
    attention_mask = torch.ones_like(input_ids)
    labels = torch.tensor([[-100 if i < prompt else t for i, t in enumerate(ids)]])
    features = torch.zeros(2, mel, track_frames)
    features[0, :, :clip_frames] = torch.randn(mel, clip_frames, generator=g)
    features[1] = torch.randn(mel, track_frames, generator=g)
    feature_mask = torch.zeros(2, track_frames, dtype=torch.long)
    feature_mask[0, :clip_frames] = 1
    feature_mask[1] = 1
    pixel_values = torch.randn(image[0] * image[1] * image[2], patch_dim, generator=g)
    pixel_values_videos = torch.randn(video[0] * video[1] * video[2], patch_dim, generator=g)
    image_grid_thw = torch.tensor([image])
    video_grid_thw = torch.tensor([video])
    second_per_grid = torch.tensor([1.0])

    with torch.no_grad():
        result = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                       image_grid_thw=image_grid_thw, pixel_values_videos=pixel_values_videos,
                       video_grid_thw=video_grid_thw, video_second_per_grid=second_per_grid,
                       input_features=features, feature_attention_mask=feature_mask, use_audio_in_video=True,
                       labels=labels, output_hidden_states=True, return_dict=True)
        position_ids, rope_deltas = model.get_rope_index(
            input_ids, image_grid_thw, video_grid_thw, attention_mask, True, feature_mask.sum(1), second_per_grid)
        image_embeds = model.visual(pixel_values, grid_thw=image_grid_thw)
        video_embeds = model.visual(pixel_values_videos, grid_thw=video_grid_thw)
        lengths = feature_mask.sum(1)
        valid = features.permute(0, 2, 1)[feature_mask.bool()].permute(1, 0)
        audio_out = model.audio_tower(valid, feature_lens=lengths, aftercnn_lens=(lengths - 1) // 2 + 1)
        audio_embeds = audio_out.last_hidden_state if hasattr(audio_out, "last_hidden_state") else audio_out[0]

    def f32(t):
        return t.detach().float().contiguous()

    tensors = {
        "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
        "pixel_values": pixel_values, "image_grid_thw": image_grid_thw,
        "pixel_values_videos": pixel_values_videos, "video_grid_thw": video_grid_thw,
        "video_second_per_grid": second_per_grid, "input_features": features, "feature_attention_mask": feature_mask,
        "use_audio_in_video": torch.tensor([1]),
        "inputs_embeds": f32(result.hidden_states[0]), "position_ids": position_ids.long().contiguous(),
        "rope_deltas": rope_deltas.long().contiguous(), "logits": f32(result.logits), "loss": f32(result.loss.reshape(1)),
        "audio_embeds": f32(audio_embeds),
    }
    for name, value in (("image_embeds", image_embeds), ("video_embeds", video_embeds)):
        if not torch.is_tensor(value):
            value = value.pooler_output if getattr(value, "pooler_output", None) is not None else value[0]
        tensors[name] = f32(value)
    save_file({k: v.contiguous() for k, v in tensors.items()}, out,
              metadata={"model_seed": str(model_seed), "model_sha256": sha, "transformers_version": transformers.__version__})
    print(f"wrote {out}: loss {result.loss.item():.6f}, logits {tuple(result.logits.shape)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
