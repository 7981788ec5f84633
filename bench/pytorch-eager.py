#!/usr/bin/env python3
"""The bench's text-decoder training step in PyTorch eager, for a side-by-side with `OmniTune.Bench --only train`.

Same model as TextDecoderBenchmark.BenchConfig (Qwen2 decoder: hidden 1024, 16/4 heads, head 64, intermediate 2816, vocab
151,936, RMSNorm, SwiGLU, rotary, untied head), fp32, AdamW, batch 1 × seq tokens; prints tokens/s, the model FLOPs rate
(ThinkerFlops' count: 6·P·T + 12·T²·q per layer), MFU against a 1024³ fp32 GEMM measured here, and the peak RSS.
Usage: /usr/bin/python3 bench/pytorch-eager.py [--layers 8] [--seq 1024] [--steps 3]
(Debian: python3-torch and libopenblas0-pthread. Without the latter, Debian's torch multiplies through the reference
BLAS, libblas3, about a hundred times slower: the script says so and stops.)
"""
import argparse, math, resource, time
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, default=8)
p.add_argument("--seq", type=int, default=1024)
p.add_argument("--steps", type=int, default=3)
a = p.parse_args()
H, NH, KV, HD, I, V = 1024, 16, 4, 64, 2816, 151936
torch.manual_seed(0)


class Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.n1, self.n2 = torch.nn.Parameter(torch.ones(H)), torch.nn.Parameter(torch.ones(H))
        self.q, self.k, self.v = torch.nn.Linear(H, NH * HD), torch.nn.Linear(H, KV * HD), torch.nn.Linear(H, KV * HD)
        self.o = torch.nn.Linear(NH * HD, H, bias=False)
        self.g, self.u, self.d = (torch.nn.Linear(H, I, bias=False), torch.nn.Linear(H, I, bias=False), torch.nn.Linear(I, H, bias=False))

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.n1
        q = self.q(h).view(b, s, NH, HD).transpose(1, 2)
        k = self.k(h).view(b, s, KV, HD).transpose(1, 2)
        v = self.v(h).view(b, s, KV, HD).transpose(1, 2)
        rot = lambda t: torch.cat([-t[..., HD // 2:], t[..., :HD // 2]], -1)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = k.repeat_interleave(NH // KV, 1), v.repeat_interleave(NH // KV, 1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(HD)   # torch 1.13 (Debian 12) has no scaled_dot_product_attention
        scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
        o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, -1)
        x = x + self.o(o)
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.n2
        return x + self.d(F.silu(self.g(h)) * self.u(h))


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.e = torch.nn.Embedding(V, H)
        self.layers = torch.nn.ModuleList(Layer() for _ in range(a.layers))
        self.n = torch.nn.Parameter(torch.ones(H))
        self.head = torch.nn.Linear(H, V, bias=False)

    def forward(self, ids):
        s = ids.shape[1]
        inv = 1.0 / (1e6 ** (torch.arange(0, HD, 2).float() / HD))
        f = torch.outer(torch.arange(s).float(), inv)
        emb = torch.cat([f, f], -1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        x = self.e(ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.head(x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.n)


def gemm_rate(n=1024, repeats=5):
    """As GemmRate.Measure: best of at least `repeats` products (more within a quarter of a second) into one output."""
    x, y, out = torch.randn(n, n), torch.randn(n, n), torch.zeros(n, n)
    torch.mm(x, y, out=out)
    best, start, i = 0.0, time.perf_counter(), 0
    while i < repeats or (time.perf_counter() - start < 0.25 and i < 1000):
        t = time.perf_counter(); torch.mm(x, y, out=out); best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
        i += 1
    return best


def blas_library():
    """The BLAS library this process mapped for its GEMMs (Debian's torch links libblas.so.3, an alternative)."""
    torch.randn(64, 64) @ torch.randn(64, 64)
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "blas" in line.split()[-1]}
    return sorted(paths)


blas = blas_library()
if any("/blas/libblas" in path for path in blas):
    raise SystemExit(f"pytorch-eager: torch multiplies through the reference BLAS ({', '.join(blas)}), about a hundred times "
                     "slower than an optimized one: apt-get install libopenblas0-pthread, then run again")
model = Model()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
ids = torch.randint(0, V, (1, a.seq))
q = NH * HD
P = a.layers * (H * q + 2 * H * KV * HD + q * H + 3 * H * I) + V * H
flops = 6 * P * a.seq + 12 * a.seq * a.seq * q * a.layers
rate = gemm_rate()
times = []
for step in range(a.steps + 1):
    t = time.perf_counter()
    logits = model(ids)
    loss = F.cross_entropy(logits[0, :-1], ids[0, 1:])
    loss.backward()
    opt.step(); opt.zero_grad(set_to_none=True)
    del logits, loss
    if step > 0:
        times.append(time.perf_counter() - t)
sec = sum(times) / len(times)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
print(f"RESULT pytorch-eager train-step: {a.seq / sec:.0f} tokens/s, {sec * 1000:.0f} ms/step, {flops / sec / 1e9:.1f} GFLOP/s, "
      f"MFU {100 * flops / sec / 1e9 / rate:.1f} % (1024³ GEMM {rate:.1f} GFLOP/s), peak RSS {peak:.2f} GiB, torch {torch.__version__}, {torch.get_num_threads()} threads, BLAS {', '.join(blas) or 'linked in'}")
