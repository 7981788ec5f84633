using OmniTune.Distributed;
using OmniTune.Training.Arguments;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Training.Optimization;

/// <summary>
/// Gradient synchronisation over one data-parallel group: every trainable gradient (zeros where none) goes into one flat
/// bucket, summed across the replicas and averaged (default and per-sample modes; per-token losses are already divided by
/// the global token count, so their gradients are only summed); and the check that the replicas hold identical parameters.
/// </summary>
public sealed class GradientSynchronizer(IProcessGroup dataParallel, LossMode mode)
{
    /// <summary>The group the replicas form.</summary>
    public IProcessGroup Group => dataParallel;

    /// <summary>All-reduces the gradients of <paramref name="parameters"/> in place (nothing with one replica).</summary>
    public void Synchronize(IReadOnlyList<(string Name, Parameter Parameter)> parameters)
    {
        if (dataParallel.Size == 1 || parameters.Count == 0) return;
        using var scope = NewDisposeScope();
        using (no_grad())
        {
            var grads = parameters.Select(p => p.Parameter.grad ?? zeros_like(p.Parameter)).ToList();
            Tensor bucket = cat(grads.Select(g => g.to(ScalarType.Float32).reshape(-1)).ToArray());
            dataParallel.AllReduce(bucket);
            if (mode != LossMode.PerToken) bucket.div_(dataParallel.Size);
            WriteBack(bucket, parameters.Select(p => p.Parameter));
        }
    }

    /// <summary>Copies a flat fp32 <paramref name="bucket"/> back into the gradients of <paramref name="parameters"/>, in order (creating those that are missing).</summary>
    public static void WriteBack(Tensor bucket, IEnumerable<Parameter> parameters)
    {
        long offset = 0;
        foreach (Parameter p in parameters)
        {
            long n = p.numel();
            Tensor slice = bucket.narrow(0, offset, n).view(p.shape).to(p.dtype);
            if (p.grad is null) p.grad = slice.clone().DetachFromDisposeScope();
            else p.grad.copy_(slice);
            offset += n;
        }
    }

    /// <summary>
    /// Fails fast, naming the group, when the replicas do not hold identical parameters: at the start (every rank must load
    /// the same weights) and, with --check-weight-hash-across-dp-replicas-interval, after every N-th step.
    /// </summary>
    public void CheckReplicasAgree(IReadOnlyList<(string Name, Parameter Parameter)> parameters, int? afterIteration = null)
    {
        if (dataParallel.Size == 1) return;
        double checksum = 0;
        using (NewDisposeScope())
        using (no_grad())
        {
            // Slice by slice in float64 (a float64 copy of every parameter at once would double the model's memory).
            foreach (var (_, p) in parameters)
            {
                using var scope = NewDisposeScope();
                Tensor flat = p.detach().reshape(-1), sum = zeros([], ScalarType.Float64, p.device), absolute = zeros([], ScalarType.Float64, p.device);
                foreach (var (start, n) in FlatSlices.Of(flat.shape[0]))
                {
                    using var part = NewDisposeScope();
                    Tensor d = flat.narrow(0, start, n).to(ScalarType.Float64);
                    sum.add_(d.sum());
                    absolute.add_(d.abs().sum());
                }
                checksum += sum.item<double>() + absolute.item<double>() * 1e-3;
            }
        }
        using Tensor max = tensor(new[] { checksum }), min = tensor(new[] { -checksum });
        dataParallel.AllReduce(max, ReduceOp.Max);
        dataParallel.AllReduce(min, ReduceOp.Max);
        if (max.item<double>() == checksum && -min.item<double>() == checksum) return;
        throw new InvalidOperationException(afterIteration is int at
            ? $"group '{dataParallel.Name}': after iteration {at}, rank {dataParallel.Rank}'s parameters differ from another replica's (checksum {checksum:R}); the replicas have diverged"
            : $"group '{dataParallel.Name}': rank {dataParallel.Rank}'s parameters differ from another replica's (checksum {checksum:R}); every rank must load the same weights");
    }

    /// <summary>Sum of a scalar over a group.</summary>
    public static double SumOver(IProcessGroup group, double value)
    {
        if (group.Size == 1) return value;
        using Tensor t = tensor(new[] { value });
        group.AllReduce(t);
        return t.item<double>();
    }
}
