using static TorchSharp.torch;

namespace OmniTune.Distributed.Context;

/// <summary>
/// Checks context-parallel attention over a group against the single-process maths every rank also computes on the whole
/// sequence (float64, the same draws on every rank): the load-balanced split, gathered keys and values (grouped-query
/// heads), attention in query blocks against the causal prefix with padding, forward and the gradients of queries, keys
/// and values. Fails naming the check.
/// </summary>
public static class ContextParallelCheck
{
    /// <summary>Runs the checks over <paramref name="group"/>; returns how many passed (all, or it throws).</summary>
    public static int Run(IProcessGroup group, TextWriter log)
    {
        int checks = 0;
        using var scope = NewDisposeScope();
        var g = new Generator(4321);
        const long b = 2, heads = 3, dim = 4;
        long length = 4 * group.Size * 3;   // crosses chunk borders; 2·CP chunks of 6
        Tensor Draw(params long[] shape) => randn(shape, ScalarType.Float64, generator: g);
        var split = new ContextSplit(group, length);

        void Expect(string what, Tensor actual, Tensor expected)
        {
            checks++;
            double worst = actual.shape.SequenceEqual(expected.shape) ? (actual - expected).abs().max().item<double>() : double.PositiveInfinity;
            if (!(worst <= 1e-10))
            {
                throw new InvalidOperationException($"group '{group.Name}' rank {group.Rank}: context-parallel check '{what}' failed " +
                    $"(shape [{string.Join(", ", actual.shape)}] against [{string.Join(", ", expected.shape)}], largest difference {worst})");
            }
        }

        foreach (bool padded in new[] { false, true })
        {
            // Grouped-query heads (4 query, 2 key/value), blocks of 4 queries in chunks of 6 (a block ends at a chunk border).
            Tensor q = Draw(b, 2 * heads, length, dim), k = Draw(b, heads, length, dim), v = Draw(b, heads, length, dim), upstream = Draw(b, 2 * heads, length, dim);
            Tensor? keep = padded ? cat([ones(b, length - 5, ScalarType.Int64), zeros(b, 5, ScalarType.Int64)], 1) : null;
            keep?[1, ..3].fill_(0);   // left padding in one row too

            // One process: the whole sequence.
            Tensor qa = q.detach().clone().requires_grad_(true), ka = k.detach().clone().requires_grad_(true), va = v.detach().clone().requires_grad_(true);
            Tensor fullMask = new ContextSplit(new SingleRankGroup("single"), length).Mask(keep, b, q.device);
            Tensor expected = nn.functional.scaled_dot_product_attention(qa, ka.repeat_interleave(2, 1), va.repeat_interleave(2, 1), fullMask);
            expected.backward([upstream]);

            // This rank: its chunks of q, k, v; keys and values gathered; queries in blocks.
            Tensor ql = split.Take(q, 2).detach().clone().requires_grad_(true), kl = split.Take(k, 2).detach().clone().requires_grad_(true),
                vl = split.Take(v, 2).detach().clone().requires_grad_(true);
            Tensor actual = split.Attend(ql, kl, vl, keep, (segment, x, context) => segment(x, context), queryBlock: 4);
            actual.backward([split.Take(upstream, 2)]);
            string tag = padded ? " (padded)" : "";
            Expect("attention output" + tag, actual, split.Take(expected.detach(), 2));
            Expect("query gradient" + tag, ql.grad!, split.Take(qa.grad!, 2));
            Expect("key gradient" + tag, kl.grad!, split.Take(ka.grad!, 2));
            Expect("value gradient" + tag, vl.grad!, split.Take(va.grad!, 2));
        }
        Expect("chunk layout", tensor(split.Local.Select(i => (double)i).ToArray()), tensor(Enumerable.Range(0, 6).Select(i => (double)(group.Rank * 6 + i))
            .Concat(Enumerable.Range(0, 6).Select(i => (double)((2 * group.Size - 1 - group.Rank) * 6 + i))).ToArray()));
        try
        {
            _ = new ContextSplit(group, 2 * group.Size + 1);
            throw new InvalidOperationException($"group '{group.Name}': a length that does not split into 2·CP chunks was accepted");
        }
        catch (ArgumentException e) when (e.Message.Contains($"{2 * group.Size + 1} tokens", StringComparison.Ordinal))
        {
            checks++;
        }
        log.WriteLine($"context-parallel checks over {group.Size} ranks (group '{group.Name}'): {checks} passed");
        return checks;
    }
}
