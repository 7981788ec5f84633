using OmniTune.Distributed;
using OmniTune.Distributed.Context;
using OmniTune.Models.Common;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>
/// Context-parallel attention by ring exchange, for the measurement against the all-gather that OmniTune keeps
/// (<see cref="ContextSplit.Attend"/>): keys and values travel once around the group, each step's partial attention
/// (queries in blocks, each recomputed in backward) returns its output and log-sum-exp, and the partials are merged by
/// log-sum-exp (flash-attention's rule) — written out by hand because TorchSharp's attention returns no log-sum-exp.
/// </summary>
static class RingAttention
{
    public static Tensor Attend(ContextSplit split, Tensor q, Tensor k, Tensor v, long queryBlock = ContextSplit.QueryBlock)
    {
        IProcessGroup group = split.Group;
        int size = group.Size, rank = group.Rank;
        long b = q.shape[0], heads = q.shape[1], d = q.shape[3], kvHeads = k.shape[1], groups = heads / kvHeads, local = q.shape[2];
        long chunk = split.Length / (2 * size);
        double scale = 1 / Math.Sqrt(d);
        long[] Held(int r) => [.. Enumerable.Range(0, (int)chunk).Select(i => r * chunk + i), .. Enumerable.Range(0, (int)chunk).Select(i => (2 * size - 1 - r) * chunk + i)];
        Tensor queries = tensor(split.Local.ToArray());
        var outputs = new List<Tensor>();
        var logSums = new List<Tensor>();
        Tensor kv = cat([k, v], 1);   // [B, 2·kv heads, local, D]: one message per step
        for (int step = 0; step < size; step++)
        {
            int owner = ((rank - step) % size + size) % size;
            Tensor keys = tensor(Held(owner));
            var blockOutputs = new List<Tensor>();
            for (long offset = 0; offset < local; offset += queryBlock)
            {
                long n = Math.Min(queryBlock, local - offset);
                Tensor visible = keys.unsqueeze(0).le(queries.narrow(0, offset, n).unsqueeze(1)).unsqueeze(0).unsqueeze(0);   // [1, 1, n, local]
                long qSize = b * heads * n * d;
                Tensor packed = cat([q.narrow(2, offset, n).reshape(-1), kv.reshape(-1)]);
                blockOutputs.Add(ActivationCheckpoint.Run((x, c) =>
                {
                    Tensor qs = x.narrow(0, 0, qSize).view(b, heads, n, d);
                    Tensor both = x.narrow(0, qSize, x.shape[0] - qSize).view(b, 2 * kvHeads, local, d);
                    Tensor ks = both.narrow(1, 0, kvHeads).repeat_interleave(groups, 1), vs = both.narrow(1, kvHeads, kvHeads).repeat_interleave(groups, 1);
                    Tensor scores = qs.matmul(ks.transpose(2, 3)).mul(scale).masked_fill(c[0].logical_not(), double.NegativeInfinity);
                    Tensor top = scores.amax([-1], keepdim: true).clamp_min(-1e30).detach();
                    Tensor p = (scores - top).exp();
                    Tensor sum = p.sum(-1, keepdim: true);
                    Tensor o = p.matmul(vs) / sum.clamp_min(1e-30);
                    return cat([o, top + sum.log()], -1);   // [B, h, n, D + 1]: output and log-sum-exp
                }, packed, [visible]));
            }
            Tensor partial = cat(blockOutputs.ToArray(), 2);
            outputs.Add(partial.narrow(-1, 0, d));
            logSums.Add(partial.narrow(-1, d, 1));
            if (step < size - 1) kv = Shift.Next(kv, group);
        }
        Tensor all = stack(logSums.ToArray());                 // [steps, B, h, local, 1]
        Tensor weights = (all - all.logsumexp(0, keepdim: true)).exp();
        return (stack(outputs.ToArray()) * weights).sum([0L]);
    }

    /// <summary>Passes a tensor to the next rank of the ring and takes the previous one's; backward the other way.</summary>
    sealed class Shift : autograd.SingleTensorFunction<Shift>
    {
        public override string Name => "OmniTuneRingShift";

        public static Tensor Next(Tensor x, IProcessGroup group) => apply(x, group);

        static Tensor Pass(Tensor x, IProcessGroup group, int to, int from)
        {
            using Tensor sent = x.contiguous().clone();
            using (group.SendAsync(sent, to, channel: 7))
            {
                Tensor got = group.Receive(from, channel: 7);
                if (got.dtype != x.dtype) throw new InvalidOperationException($"ring: sent {x.dtype}{string.Join(",", x.shape)} got {got.dtype}{string.Join(",", got.shape)}");
                return got;
            }
        }

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var group = (IProcessGroup)vars[1];
            ctx.save_data("group", group);
            return Pass((Tensor)vars[0], group, (group.Rank + 1) % group.Size, (group.Rank - 1 + group.Size) % group.Size);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            var group = (IProcessGroup)ctx.get_data("group");
            return [Pass(grad, group, (group.Rank - 1 + group.Size) % group.Size, (group.Rank + 1) % group.Size), null!];
        }
    }
}
