using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Distributed.TensorParallel;

/// <summary>
/// Checks every mapping and parallel layer of a tensor-parallel group, forward and backward, against the single-process
/// maths that each rank also computes on the whole tensors (float64, the same random draws on every rank): the first
/// thing to run when the group or the vocabulary changes. Fails naming the check and the rank.
/// </summary>
public static class TensorParallelCheck
{
    /// <summary>Runs the checks over <paramref name="group"/>; returns how many passed (all, or it throws).</summary>
    public static int Run(IProcessGroup group, TextWriter log)
    {
        int rank = group.Rank, size = group.Size, checks = 0;
        using var scope = NewDisposeScope();
        var g = new Generator(1234);
        Tensor Draw(params long[] shape) => randn(shape, ScalarType.Float64, generator: g);
        Tensor[] PerRank(params long[] shape) => Enumerable.Range(0, size).Select(_ => Draw(shape)).ToArray();
        Tensor Slice(Tensor t, int dim, int part) => t.narrow(dim, part * (t.shape[dim] / size), t.shape[dim] / size);
        Tensor Leaf(Tensor t) => t.detach().clone().requires_grad_(true);

        void Expect(string what, Tensor actual, Tensor expected)
        {
            checks++;
            double worst = actual.shape.SequenceEqual(expected.shape) ? (actual - expected).abs().max().item<double>() : double.PositiveInfinity;
            if (!(worst <= 1e-10))
            {
                throw new InvalidOperationException($"group '{group.Name}' rank {rank}: tensor-parallel check '{what}' failed " +
                    $"(shape [{string.Join(", ", actual.shape)}] against [{string.Join(", ", expected.shape)}], largest difference {worst})");
            }
        }

        // Mappings: forward and backward, upstream gradients different on every rank.
        {
            Tensor x = Leaf(Draw(2, 4 * size, 3));
            Tensor[] grads = PerRank(2, 4 * size, 3);
            Tensor y = TensorParallelRegion.Copy(x, group);
            Expect("copy forward", y, x);
            y.backward([grads[rank]]);
            Expect("copy backward (all-reduce)", x.grad!, grads.Aggregate((a, b) => a + b));
        }
        {
            Tensor[] xs = PerRank(2, 3);
            Tensor x = Leaf(xs[rank]);
            Tensor upstream = Draw(2, 3);
            Tensor y = TensorParallelRegion.Reduce(x, group);
            Expect("reduce forward (all-reduce)", y, xs.Aggregate((a, b) => a + b));
            y.backward([upstream]);
            Expect("reduce backward (identity)", x.grad!, upstream);
        }
        {
            Tensor x = Leaf(Draw(2, 4 * size, 3));
            Tensor[] grads = PerRank(2, 4, 3);
            Tensor y = TensorParallelRegion.Scatter(x, group, 1);
            Expect("scatter forward (slice)", y, Slice(x, 1, rank));
            y.backward([grads[rank]]);
            Expect("scatter backward (all-gather)", x.grad!, cat(grads, 1));
        }
        foreach (bool reduce in new[] { true, false })
        {
            Tensor[] parts = PerRank(2, 4, 3);
            Tensor x = Leaf(parts[rank]);
            Tensor[] grads = PerRank(2, 4 * size, 3);
            Tensor y = TensorParallelRegion.Gather(x, group, 1, reduce);
            Expect("gather forward (all-gather)", y, cat(parts, 1));
            y.backward([grads[rank]]);
            Expect(reduce ? "gather backward (reduce-scatter)" : "gather backward (slice)", x.grad!,
                Slice(reduce ? grads.Aggregate((a, b) => a + b) : grads[rank], 1, rank));
        }
        {
            Tensor[] xs = PerRank(2, 4 * size, 3);
            Tensor x = Leaf(xs[rank]);
            Tensor[] grads = PerRank(2, 4, 3);
            Tensor y = TensorParallelRegion.ReduceScatter(x, group, 1);
            Expect("reduce-scatter forward", y, Slice(xs.Aggregate((a, b) => a + b), 1, rank));
            y.backward([grads[rank]]);
            Expect("reduce-scatter backward (all-gather)", x.grad!, cat(grads, 1));
        }

        // Layers against nn.Linear / nn.Embedding / cross-entropy on the whole tensors.
        foreach (int? sequence in new int?[] { null, 1 })
        {
            string sp = sequence is null ? "" : " with sequence parallel";
            using Linear first = nn.Linear(6, 4 * size, hasBias: true, dtype: ScalarType.Float64), second = nn.Linear(4 * size, 6, hasBias: true, dtype: ScalarType.Float64);
            using (no_grad())
            {
                foreach (Parameter p in first.parameters().Concat(second.parameters())) p.copy_(Draw(p.shape));
            }
            Tensor input = Draw(2, 2 * size, 6), upstream = Draw(2, 2 * size, 6);
            Tensor x = Leaf(input);
            Tensor expected = second.call(nn.functional.gelu(first.call(x)));
            expected.backward([upstream]);
            using var column = new ColumnParallelLinear(first, group, sequence);
            using var row = new RowParallelLinear(second, group, sequence);
            Tensor xp = Leaf(sequence is int d ? Slice(input, d, rank) : input);
            Tensor y = row.call(nn.functional.gelu(column.call(xp)));
            Expect("column → row forward" + sp, y, sequence is int d2 ? Slice(expected, d2, rank) : expected);
            y.backward([sequence is int d3 ? Slice(upstream, d3, rank) : upstream]);
            Expect("column → row input gradient" + sp, xp.grad!, sequence is int d4 ? Slice(x.grad!, d4, rank) : x.grad!);
            Expect("column weight gradient" + sp, column.Weight.grad!, Slice(first.weight!.grad!, 0, rank));
            Expect("row weight gradient" + sp, row.Weight.grad!, Slice(second.weight!.grad!, 1, rank));
            Tensor rowBias = row.named_parameters().First(p => p.name == "bias").parameter.grad!;
            if (sequence is not null) group.AllReduce(rowBias = rowBias.clone());   // sequence-partial: summed before the step
            Expect("row bias gradient" + sp, rowBias, second.bias!.grad!);
        }
        {
            using Embedding full = nn.Embedding(8 * size, 5, dtype: ScalarType.Float64);
            using (no_grad()) full.weight!.copy_(Draw(8 * size, 5));
            Tensor ids = randint(0, 8 * size, [3, 7], generator: g);
            Tensor upstream = Draw(3, 7, 5);
            full.call(ids).backward([upstream]);
            using var vocab = new VocabParallelEmbedding(full, group);
            Tensor y = vocab.call(ids);
            Expect("vocabulary-parallel embedding forward", y, full.call(ids));
            y.backward([upstream]);
            Expect("vocabulary-parallel embedding gradient", vocab.named_parameters().First().parameter.grad!, Slice(full.weight!.grad!, 0, rank));
        }
        {
            Tensor logits = Draw(9, 4 * size);
            Tensor labels = randint(0, 4 * size, [9], generator: g);
            labels[2] = -100;
            Tensor upstream = Draw(9);
            Tensor x = Leaf(logits);
            Tensor expected = nn.functional.cross_entropy(x, labels, ignore_index: -100, reduction: nn.Reduction.None);
            expected.backward([upstream]);
            Tensor xp = Leaf(Slice(logits, 1, rank));
            Tensor losses = VocabParallelCrossEntropy.Losses(xp, labels, group);
            Expect("vocabulary-parallel cross-entropy forward", losses, expected);
            losses.backward([upstream]);
            Expect("vocabulary-parallel cross-entropy gradient", xp.grad!, Slice(x.grad!, 1, rank));
        }
        log.WriteLine($"tensor-parallel mappings and layers over '{group.Name}' ({size} ranks): {checks} checks of forward and backward against the single-process maths passed");
        return checks;
    }
}
