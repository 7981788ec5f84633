#!/usr/bin/env python3
"""Writes a Hugging Face golden dump of the tiny random Qwen2.5-Omni thinker for OmniTune's golden test.

Usage (needs torch, transformers with Qwen2.5-Omni: 4.52+ or 5.x, safetensors):
    dotnet run --project src/OmniTune.Cli -c Release -- init-tiny --out /tmp/omni-tiny --seed 0
    python tools/golden/make_thinker_golden.py /tmp/omni-tiny tests/golden/thinker-tiny.safetensors 0

Dump layout (one safetensors file; metadata: model_seed, model_sha256, transformers_version):
  inputs : input_ids I64[B,S], attention_mask I64[B,S], labels I64[B,S], pixel_values F32[N,1176],
           image_grid_thw I64[n,3], pixel_values_videos F32[Nv,1176], video_grid_thw I64[nv,3],
           video_second_per_grid F32[nv], input_features F32[A,mel,frames], feature_attention_mask I64[A,frames],
           use_audio_in_video I64[1]
  outputs: inputs_embeds F32[B,S,H] (placeholders filled), position_ids I64[3,B,S], rope_deltas I64[B,1] (as the
           forward stores them: get_rope_index's delta minus the row's padding count), logits F32[B,S,V], loss F32[1],
           image_embeds, video_embeds, audio_embeds (encoder outputs, F32)
Two rows, right-padded as OmniTune's collator pads (B = 2):
  row 0 mirrors tests/OmniTune.Tests/Models/MultimodalSample.cs: an audio clip (120 frames), an image (grid 1x4x4)
        and a video (grid 2x4x4, 1.0 s per grid) with its 300-frame audio track interleaved; loss on the answer only.
  row 1 is shorter: an image of grid 1x16x12 (four attention windows of the vision encoder) and a 450-frame clip (three
        chunks of the audio encoder), then padding; the logits at the padded positions are compared too (a padded
        query attends to the row's real tokens, as Hugging Face's eager mask has it).
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


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (byte-level BPE), defined here: transformers 5.x moved it."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


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

    c = dict(full["thinker_config"])
    for kind in ("image", "video", "audio"):   # 4.x names them *_token_index, later versions *_token_id
        c.setdefault(f"{kind}_token_index", c.get(f"{kind}_token_id"))
    merge = c["vision_config"]["spatial_merge_size"]
    with open(os.path.join(folder, "vocab.json")) as f:
        vocab = json.load(f)
    byte_ids = {}
    for b, ch in bytes_to_unicode().items():
        byte_ids[b] = vocab[ch]

    def text(row, s):
        row.extend(byte_ids[b] for b in s.encode("utf-8"))

    def image_span(row, grid):
        row.extend([c["vision_start_token_id"]] + [c["image_token_index"]] * (grid[0] * grid[1] * grid[2] // merge ** 2) + [c["vision_end_token_id"]])

    def audio_span(row, frames):
        row.extend([c["audio_start_token_id"]] + [c["audio_token_index"]] * audio_tokens(frames) + [c["audio_end_token_id"]])

    def answer(row, question, reply):
        text(row, question); row.append(c["eos_token_id"]); text(row, "\n"); row.append(c["bos_token_id"]); text(row, "assistant\n")
        prompt = len(row)
        text(row, reply); row.append(c["eos_token_id"])
        return prompt

    g = torch.Generator().manual_seed(seed)
    image, video, wide_image = (1, 4, 4), (2, 4, 4), (1, 16, 12)
    clip_frames, track_frames, long_clip_frames = 120, 300, 450

    # Row 0: audio clip, image, video with its own sound interleaved.
    row0 = [c["bos_token_id"]]; text(row0, "user\n")
    audio_span(row0, clip_frames)
    image_span(row0, image)
    row0 += [c["vision_start_token_id"], c["audio_start_token_id"]]
    for kind, count in interleave(video, 1.0, audio_tokens(track_frames), merge, c["position_id_per_seconds"], c["seconds_per_chunk"]):
        row0 += [c["video_token_index"] if kind == "video" else c["audio_token_index"]] * count
    row0 += [c["audio_end_token_id"], c["vision_end_token_id"]]
    prompt0 = answer(row0, "What do you see and hear?", "A red circle and a tone.")

    # Row 1: a wide image (several vision windows) and a long clip (several audio chunks).
    row1 = [c["bos_token_id"]]; text(row1, "user\n")
    image_span(row1, wide_image)
    audio_span(row1, long_clip_frames)
    prompt1 = answer(row1, "Describe.", "Bars.")

    length = max(len(row0), len(row1))
    rows, prompts = [row0, row1], [prompt0, prompt1]
    input_ids = torch.full((2, length), c["pad_token_id"], dtype=torch.long)
    attention_mask = torch.zeros(2, length, dtype=torch.long)
    labels = torch.full((2, length), -100, dtype=torch.long)
    for r, (row, prompt) in enumerate(zip(rows, prompts)):
        input_ids[r, :len(row)] = torch.tensor(row)
        attention_mask[r, :len(row)] = 1
        labels[r, prompt:len(row)] = torch.tensor(row[prompt:])

    mel = c["audio_config"]["num_mel_bins"]
    patch_dim = 3 * 2 * 14 * 14
    audios = [clip_frames, track_frames, long_clip_frames]   # in placeholder order: row 0 clip, row 0 track, row 1 clip
    features = torch.zeros(len(audios), mel, max(audios))
    feature_mask = torch.zeros(len(audios), max(audios), dtype=torch.long)
    for i, frames in enumerate(audios):
        features[i, :, :frames] = torch.randn(mel, frames, generator=g)
        feature_mask[i, :frames] = 1
    images = [image, wide_image]
    pixel_values = torch.randn(sum(t * h * w for t, h, w in images), patch_dim, generator=g)
    pixel_values_videos = torch.randn(video[0] * video[1] * video[2], patch_dim, generator=g)
    image_grid_thw = torch.tensor(images)
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
        # The forward stores the delta minus the row's padding count (what decoding continues from).
        rope_deltas = rope_deltas - (attention_mask.shape[1] - attention_mask.sum(-1, keepdim=True))
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
