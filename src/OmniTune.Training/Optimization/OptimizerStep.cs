using System.Diagnostics;
using OmniTune.Distributed;
using OmniTune.Training.Arguments;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Training.Optimization;

/// <summary>
/// The optimizer step after backward, one implementation per kind: AdamW on the parameters (or on fp32 master copies of
/// a bf16 model), or the distributed optimizer (ZeRO-1). Each synchronises what it must over the data-parallel group,
/// takes the global gradient norm over every pipeline stage, clips and updates — or, when the loss or the norm is not
/// finite, updates nothing (the same decision on every rank, since both are global).
/// </summary>
public abstract class OptimizerStep
{
    /// <summary>Clears the gradients before a step's backward passes.</summary>
    public abstract void ZeroGradients();

    /// <summary>Updates with <paramref name="lr"/>; returns the global gradient norm before clipping (NaN when the loss was not finite).</summary>
    public abstract double Step(double lr, double clip, bool lossFinite);

    /// <summary>Milliseconds spent in data-parallel communication so far.</summary>
    public double CommunicationMilliseconds { get; protected set; }

    /// <summary>Clears the gradients of one step that was skipped.</summary>
    public void Skip() => ZeroGradients();
}

/// <summary>AdamW on this rank's trainable parameters, through fp32 master weights when the model is bf16.</summary>
/// With <paramref name="overlapped"/> the data-parallel reduction was started during backward; the step finishes it.
public sealed class AdamWStep(OptimizerHelper optimizer, IReadOnlyList<(string Name, Parameter Parameter)> modelParameters, MasterWeights? masters,
    GradientSynchronizer synchronizer, IProcessGroup pipeline, Parallel.ThinkerParallelism parallelism, GradientBuckets? overlapped = null) : OptimizerStep
{
    readonly IReadOnlyList<(string Name, Parameter Parameter)> stepped = masters?.Masters ?? modelParameters;

    /// <inheritdoc/>
    public override void ZeroGradients()
    {
        using var scope = NewDisposeScope();   // zero_grad makes a tensor wrapper per parameter; the scope releases them now
        optimizer.zero_grad();
        overlapped?.ZeroGradients();   // the model's gradients are views into the buckets again, zeroed in place
    }

    /// <inheritdoc/>
    public override double Step(double lr, double clip, bool lossFinite)
    {
        var clock = Stopwatch.StartNew();
        if (overlapped is not null) overlapped.Finish();
        else synchronizer.Synchronize(modelParameters);
        parallelism.ReduceSequencePartials(modelParameters);
        CommunicationMilliseconds += clock.Elapsed.TotalMilliseconds;
        masters?.GradientsToMasters();
        double norm = Math.Sqrt(GradientSynchronizer.SumOver(pipeline, GradientSynchronizer.SumOver(parallelism.Tensor, Squares(stepped, parallelism.CountsInNorm))));
        if (!lossFinite || !double.IsFinite(norm)) return norm;
        using (NewDisposeScope())
        using (no_grad())
        {
            if (clip > 0 && norm > clip)
            {
                double coefficient = clip / (norm + 1e-6);
                foreach (var (_, p) in stepped) p.grad?.mul_(coefficient);
            }
            // Every trainable parameter gets a gradient (zeros when no micro-batch reached it, e.g. the projector in a
            // text-only step), so that every step moves every parameter as Megatron's gradient buffers do, resumed or not.
            foreach (var (_, p) in stepped)
            {
                if (p.grad is null) p.grad = zeros_like(p).DetachFromDisposeScope();
            }
        }
        foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
        optimizer.step();
        masters?.MastersToModel();
        return norm;
    }

    /// <summary>Sum of the squared gradients (float64) of the <paramref name="parameters"/> this rank <paramref name="counts"/> in the norm.</summary>
    static double Squares(IReadOnlyList<(string Name, Parameter Parameter)> parameters, Func<string, bool> counts)
    {
        using (NewDisposeScope())
        using (no_grad())
        {
            // One host synchronisation for the whole norm (not one per tensor): the per-tensor sums stay on the device.
            var sums = parameters.Where(p => p.Parameter.grad is not null && counts(p.Name)).Select(p => SquaredNorm.Of(p.Parameter.grad!)).ToArray();
            return sums.Length == 0 ? 0 : stack(sums).sum().item<double>();
        }
    }
}

/// <summary>
/// The distributed optimizer (ZeRO-1): reduce-scatter, global norm, sharded AdamW, all-gather. The gradients are
/// reduce-scattered by <paramref name="buckets"/> (started during backward with <c>--overlap-grad-reduce</c>, else here);
/// the step waits for them. What context and sequence parallel leave partial is summed in the reduced shards
/// (<see cref="DistributedAdamW.Step"/>).
/// </summary>
public sealed class ShardedAdamWStep(DistributedAdamW optimizer, GradientBuckets buckets, LossMode mode, IProcessGroup pipeline,
    Parallel.ThinkerParallelism parallelism, IProcessGroup context) : OptimizerStep
{
    /// <inheritdoc/>
    public override void ZeroGradients() => buckets.ZeroGradients();   // the model's gradients are views into the buckets again, zeroed in place

    /// <inheritdoc/>
    public override double Step(double lr, double clip, bool lossFinite)
    {
        var clock = Stopwatch.StartNew();
        buckets.Finish();   // every rank started the same reductions: wait for them whatever the loss
        CommunicationMilliseconds += clock.Elapsed.TotalMilliseconds;
        if (!lossFinite) return double.NaN;
        clock.Restart();
        double norm = optimizer.Step(lr, clip, average: mode != LossMode.PerToken, pipeline, parallelism.Tensor, context);
        CommunicationMilliseconds += clock.Elapsed.TotalMilliseconds;
        return norm;
    }
}
