#!/usr/bin/env python3
"""PyTorch-side fixtures and checks for OmniTune's reader and writer of torch.save files (MindSpeed-MM checkpoints).

Needs Python with torch (Debian's python3-torch is enough). Three commands:

  structures OUT            torch.save files of the shapes OmniTune must read (release dict, VPP dict with an empty
                            chunk, a Megatron training checkpoint with args / optimizer / RNG state, views sharing a
                            storage, a refused pickle) and OUT/expected.json describing every tensor.
  mindspeed SRC OUT [--training ITER]
                            rewrites an OmniTune checkpoint written with `convert hf-to-mm --format safetensors` (SRC)
                            as MindSpeed-MM writes it: each rank's model_optim_rng.pt from torch.save, as a release
                            ({'model'|'model0'.., 'checkpoint_version'}) or, with --training, as Megatron's training
                            checkpoint iter_ITER (args, iteration, optimizer, RNG state, _extra_state entries), plus
                            OUT/expected.json (dtype, shape, sha256 of every rank tensor).
  describe ROOT_OR_FILE     torch.load every model_optim_rng.pt under ROOT (or the one file) and print, as JSON, per
                            file the top-level keys and per model chunk each tensor's dtype, shape and sha256.

The committed fixtures under tests/fixtures/pytorch/ come from the first two commands (see tests/fixtures/pytorch/README.md).
"""
import argparse
import enum
import hashlib
import json
import os
import random
import struct
import sys
import types
from collections import OrderedDict

import numpy as np
import torch


def digest(t):
    t = t.detach().contiguous().cpu()
    raw = t.reshape(-1).view(torch.uint8) if t.dtype != torch.bool else t.reshape(-1).to(torch.uint8)
    return hashlib.sha256(raw.numpy().tobytes()).hexdigest()


def describe_tensor(t):
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "sha256": digest(t)}


def fake_megatron_enum():
    """An enum whose class lives in a megatron module, as Megatron's AttnBackend does (pickled as a global + value)."""
    module = types.ModuleType("megatron.core.transformer.enums")

    class AttnBackend(enum.Enum):
        flash = 1
        fused = 2
        unfused = 3
        local = 4
        auto = 5

    AttnBackend.__module__ = module.__name__
    AttnBackend.__qualname__ = "AttnBackend"
    module.AttnBackend = AttnBackend
    for name in ("megatron", "megatron.core", "megatron.core.transformer", "megatron.core.transformer.enums"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["megatron.core.transformer.enums"] = module
    return AttnBackend


def training_extras(iteration, model_keys):
    attn = fake_megatron_enum()
    random.seed(1234)
    np.random.seed(1234)
    torch.manual_seed(1234)
    args = argparse.Namespace(
        num_layers=2, hidden_size=64, params_dtype=torch.bfloat16, bf16=True, lr=1e-5, seq_length=1024,
        tensor_model_parallel_size=1, pipeline_model_parallel_size=1, consumed_train_samples=iteration * 8,
        consumed_valid_samples=0, attention_backend=attn.auto, data_path=None, lora_target_modules=[],
        mm_model="examples/qwen2.5omni/model_7b.json", iteration=iteration)
    state = {i: {"exp_avg": torch.zeros(4), "exp_avg_sq": torch.zeros(4), "step": torch.tensor(float(iteration))} for i in range(2)}
    optimizer = {
        "optimizer": {"state": state, "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "params": [0, 1]}]},
        "fp32_from_fp16_params": [[torch.ones(4), torch.ones(4)]],
    }
    return {
        "args": args,
        "checkpoint_version": 3.0,
        "iteration": iteration,
        "optimizer": optimizer,
        "opt_param_scheduler": {"max_lr": 1e-5, "min_lr": 0.0, "num_steps": iteration * 8, "decay_style": "cosine"},
        "rng_state": [{
            "random_rng_state": random.getstate(),
            "np_rng_state": np.random.get_state(),
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_state": torch.get_rng_state(),
            "rng_tracker_states": {},
        }],
        "rerun_state_machine": {"mode": "disabled", "rerun_requested": False},
        "num_floating_point_operations_so_far": 123456789,
    }


class Refused:
    """Pickles as a call of os.system: a loader must refuse the file naming that global, and run nothing."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def structures(out):
    os.makedirs(out, exist_ok=True)
    expected = {}
    torch.manual_seed(0)
    whole = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    release = {
        "model": {
            "text_decoder.embedding.word_embeddings.weight": torch.randn(8, 4).to(torch.bfloat16),
            "rows_view": whole[1:3],                      # a view: storage offset 6, shares the storage below
            "transposed_view": whole.t(),                 # non-contiguous strides
            "whole": whole,
            "ids": torch.tensor([1, -2, 3], dtype=torch.int64),
            "flag": torch.tensor([True, False]),
            "half": torch.randn(3).to(torch.float16),
            "scalar": torch.tensor(2.5, dtype=torch.float64),
            "layer._extra_state": None,
        },
        "checkpoint_version": 3.0,
    }
    torch.save(release, os.path.join(out, "release.pt"))
    expected["release.pt"] = {k: describe_tensor(v) for k, v in release["model"].items() if v is not None}

    vpp = {"model0": {"a.weight": torch.randn(2, 3).to(torch.bfloat16)}, "model1": {}, "checkpoint_version": 3.0}
    torch.save(vpp, os.path.join(out, "vpp.pt"))
    expected["vpp.pt"] = {"model0." + k: describe_tensor(v) for k, v in vpp["model0"].items()}

    model = OrderedDict([("w.weight", torch.randn(4, 4)), ("w._extra_state", None)])
    model._metadata = OrderedDict([("", {"version": 1})])
    training = training_extras(7, list(model))
    training["model"] = model
    torch.save(training, os.path.join(out, "training.pt"))
    expected["training.pt"] = {"w.weight": describe_tensor(model["w.weight"])}

    torch.save({"model": {"x": torch.zeros(1)}, "payload": Refused()}, os.path.join(out, "refused.pt"))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"BF16": torch.bfloat16, "F32": torch.float32, "F16": torch.float16, "F64": torch.float64, "I64": torch.int64}
    tensors = OrderedDict()
    for key, info in header.items():
        if key == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        buffer = bytearray(data[begin:end]) or bytearray(1)
        t = torch.frombuffer(buffer, dtype=dtypes[info["dtype"]])[: (end - begin) // torch.tensor([], dtype=dtypes[info["dtype"]]).element_size()]
        tensors[key] = t.reshape(info["shape"]).clone()
    return tensors, header.get("__metadata__", {})


def mindspeed(src, out, training_iteration):
    with open(os.path.join(src, "latest_checkpointed_iteration.txt")) as f:
        assert f.read().strip() == "release", "expected a release written by convert hf-to-mm --format safetensors"
    folder = "release" if training_iteration is None else f"iter_{training_iteration:07d}"
    expected = {}
    for rank in sorted(os.listdir(os.path.join(src, "release"))):
        tensors, meta = read_safetensors(os.path.join(src, "release", rank, "model_optim_rng.safetensors"))
        layout = json.loads(meta["parallel_layout"])
        chunks = len(layout["llm_pp_layers"])
        if chunks == 1:
            state = {"model": dict(tensors)}
        else:
            state = {f"model{v}": {k[len(f"model{v}."):]: t for k, t in tensors.items() if k.startswith(f"model{v}.")} for v in range(chunks)}
        for name, chunk in state.items():
            if training_iteration is not None:   # Megatron linear layers save an _extra_state entry, None for these
                for key in [k for k in chunk if k.endswith(".weight") and ("linear" in k or "output_layer" in k)]:
                    chunk[key[: -len("weight")] + "_extra_state"] = None
                state[name] = OrderedDict(sorted(chunk.items()))
        if training_iteration is None:
            state["checkpoint_version"] = 3.0
        else:
            state.update(training_extras(training_iteration, []))
        os.makedirs(os.path.join(out, folder, rank), exist_ok=True)
        torch.save(state, os.path.join(out, folder, rank, "model_optim_rng.pt"))
        expected[rank] = {k: describe_tensor(t) for k, t in tensors.items()}
    with open(os.path.join(out, "latest_checkpointed_iteration.txt"), "w") as f:
        f.write("release" if training_iteration is None else str(training_iteration))
    if training_iteration is None:   # MindSpeed's converter copies the HF config next to the release; a training save has none
        for name in ("config.json",):
            with open(os.path.join(src, name)) as a, open(os.path.join(out, name), "w") as b:
                b.write(a.read())
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)


def describe(path):
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f == "model_optim_rng.pt")
    result = {}
    for file in files:
        state = torch.load(file, map_location="cpu")
        entry = {"keys": sorted(state.keys()), "checkpoint_version": state.get("checkpoint_version")}
        for name, value in state.items():
            if name == "model" or (name.startswith("model") and name[5:].isdigit()):
                entry[name] = {k: describe_tensor(t) for k, t in value.items() if t is not None}
                entry[name + ".type"] = type(value).__name__
        result[os.path.relpath(file, path) if os.path.isdir(path) else os.path.basename(file)] = entry
    json.dump(result, sys.stdout, indent=1, sort_keys=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("structures")
    p.add_argument("out")
    p = sub.add_parser("mindspeed")
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--training", type=int)
    p = sub.add_parser("describe")
    p.add_argument("path")
    a = parser.parse_args()
    if a.command == "structures":
        structures(a.out)
    elif a.command == "mindspeed":
        mindspeed(a.src, a.out, a.training)
    else:
        describe(a.path)


if __name__ == "__main__":
    main()
