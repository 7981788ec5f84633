using System.Diagnostics;
using System.Text.RegularExpressions;
using OmniTune.Distributed;
using OmniTune.Training.Arguments;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Training.Optimization;

/// <summary>
/// Data-parallel gradient reduction overlapped with backward (Megatron's <c>--overlap-grad-reduce</c>): the gradients go
/// into contiguous fp32 buckets of at least <c>--ddp-bucket-size</c> elements, filled in the order backward produces them
/// (LM head and final norm, then the decoder layers from the last, then everything else); once backward has passed a
/// decoder layer's input, that layer's gradients are final, and each bucket whose gradients are all final starts its
/// all-reduce (non-blocking MPI, progressed at every later layer) while backward goes on. <see cref="Finish"/> starts the
/// rest (encoders, embedding), waits, averages as <see cref="GradientSynchronizer"/> does and writes the gradients back —
/// the same sums, element by element, as its one bucket. Only the last micro-batch's backward counts (<see cref="Armed"/>):
/// the earlier ones only accumulate. As Megatron's gradient buffers, the buckets are the gradients: each fp32 parameter's
/// <c>.grad</c> is a view into its bucket, which backward accumulates into in place and <see cref="ZeroGradients"/> zeroes
/// in place — no second gradient-sized copy, and no fresh gradient memory each step. Parameters of another dtype (a bf16
/// model's, whose fp32 masters step) are copied into their bucket and written back instead. Under the distributed
/// optimizer (<c>scatter</c>) each bucket is padded to a multiple of the group size and reduce-scattered instead, as
/// Megatron's distributed optimizer does: each rank receives the sums of its 1/Size slice of every bucket
/// (<see cref="Segments"/>), which <see cref="DistributedAdamW"/> owns and averages; the gradients are not written back.
/// </summary>
public sealed partial class OverlappedGradientReduce : IDisposable
{
    /// <summary>Megatron's default bucket size: max(40M, 1M × data-parallel size) elements.</summary>
    public static long DefaultBucketSize(int dataParallel) => Math.Max(40_000_000L, 1_000_000L * dataParallel);

    sealed class Bucket(List<Parameter> parameters, int lowestLayer, Tensor buffer, Tensor? shard)
    {
        public List<Parameter> Parameters { get; } = parameters;

        /// <summary>Whether each parameter's gradient is a view into <see cref="Buffer"/> (fp32, same device).</summary>
        public bool[] Viewed { get; } = parameters.Select(p => p.dtype == ScalarType.Float32 && p.device_type == buffer.device_type && p.device_index == buffer.device_index).ToArray();

        /// <summary>The lowest decoder layer whose gradients it holds (int.MinValue: gradients final only after backward).</summary>
        public int LowestLayer { get; } = lowestLayer;

        public Tensor Buffer { get; } = buffer;

        /// <summary>This rank's reduce-scattered slice of the buffer (scatter mode).</summary>
        public Tensor? Shard { get; } = shard;

        public PendingOperation? Pending { get; set; }
    }

    readonly IProcessGroup dataParallel;
    readonly LossMode mode;
    readonly List<Bucket> buckets = [];
    readonly Parameter? rowSparse;
    readonly bool scatter;
    readonly int averageOver;
    int doneDownTo = int.MaxValue;

    /// <summary>
    /// Buckets of <paramref name="parameters"/> (the ones the data-parallel group synchronises) of at least
    /// <paramref name="bucketElements"/> elements. <paramref name="rowSparse"/> names a parameter whose gradient is zero
    /// outside the rows of the step's tokens (an untied token embedding): it is reduced apart, only the rows some rank
    /// touched (<see cref="ReduceRows"/>) — the 7B's embedding is 2.2 GB of fp32 gradient, nearly all zeros. With
    /// <paramref name="scatter"/> the buckets are reduce-scattered for the distributed optimizer and nothing is averaged.
    /// Sums are averaged over <paramref name="averageOver"/> ranks (default: the group's; the data-parallel size when the
    /// group also spans context-parallel ranks, whose parts of one sample's gradient add up).
    /// </summary>
    public OverlappedGradientReduce(IProcessGroup dataParallel, LossMode mode, IReadOnlyList<(string Name, Parameter Parameter)> parameters, long bucketElements,
        string? rowSparse = null, bool scatter = false, int? averageOver = null)
    {
        this.dataParallel = dataParallel;
        this.mode = mode;
        this.scatter = scatter;
        this.averageOver = averageOver ?? dataParallel.Size;
        this.rowSparse = parameters.FirstOrDefault(p => p.Name == rowSparse && p.Parameter.dim() == 2).Parameter;
        var ordered = parameters.Where(p => !ReferenceEquals(p.Parameter, this.rowSparse)).Select((p, i) => (p.Parameter, Layer: LayerOf(p.Name), Index: i))
            .OrderByDescending(p => p.Layer).ThenBy(p => p.Index).ToList();
        var current = new List<(Parameter Parameter, int Layer)>();
        long size = 0;
        void Close()
        {
            if (current.Count == 0) return;
            Device device = current[0].Parameter.device;
            long length = scatter ? DistributedAdamW.PaddedLength(size, dataParallel.Size) : size;
            buckets.Add(new Bucket(current.Select(c => c.Parameter).ToList(), current.Min(c => c.Layer), zeros(length, ScalarType.Float32, device).DetachFromDisposeScope(),
                scatter ? zeros(length / dataParallel.Size, ScalarType.Float32, device).DetachFromDisposeScope() : null));
            current = [];
            size = 0;
        }
        foreach (var (parameter, layer, _) in ordered)
        {
            current.Add((parameter, layer));
            size += parameter.numel();
            if (size >= bucketElements) Close();
        }
        Close();
        ZeroGradients();
    }

    /// <summary>
    /// Zeroes the buckets in place and (re)makes each fp32 parameter's gradient its view into them; the others' gradients
    /// are cleared. In place of the optimizer's <c>zero_grad</c>, which would drop the views.
    /// </summary>
    public void ZeroGradients()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (Bucket bucket in buckets)
        {
            bucket.Buffer.zero_();
            long offset = 0;
            for (int i = 0; i < bucket.Parameters.Count; i++)
            {
                Parameter p = bucket.Parameters[i];
                p.grad = bucket.Viewed[i] ? bucket.Buffer.narrow(0, offset, p.numel()).view(p.shape) : null;
                offset += p.numel();
            }
        }
        if (rowSparse is not null) rowSparse.grad = null;
    }

    /// <summary>
    /// Sums <paramref name="parameter"/>'s gradient over the group by its rows that are non-zero on some rank: each rank's
    /// non-zero rows are all-gathered (padded to the longest list), their union is gathered from the gradient, all-reduced
    /// and written back (averaged as the buckets are). Every other row is zero on every rank, so its sum is zero: the same
    /// result as the dense all-reduce, for a few rows' traffic.
    /// </summary>
    void ReduceRows(Parameter parameter)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Tensor grad = parameter.grad ?? zeros_like(parameter);
        Tensor rows = grad.ne(0).any(1).nonzero().reshape(-1).to(ScalarType.Int64);
        using Tensor most = tensor(new[] { rows.shape[0] }, device: grad.device);   // on the gradient's device: the group may be NCCL
        dataParallel.AllReduce(most, ReduceOp.Max);
        long longest = most.item<long>();
        if (longest > 0)
        {
            Tensor padded = full(longest, -1L, ScalarType.Int64, grad.device);
            padded.narrow(0, 0, rows.shape[0]).copy_(rows);
            Tensor all = dataParallel.AllGather(padded);
            Tensor union = all.masked_select(all.ge(0)).unique(sorted: true).Item1;
            Tensor part = grad.index_select(0, union);
            dataParallel.AllReduce(part);
            if (mode != LossMode.PerToken && !scatter) part.div_(averageOver);
            grad.index_copy_(0, union, part);
        }
        if (parameter.grad is null) parameter.grad = grad.DetachFromDisposeScope();
    }

    /// <summary>Whether <paramref name="parameter"/>'s gradient is (still) the view into its bucket.</summary>
    public bool IsView(Parameter parameter)
    {
        foreach (Bucket bucket in buckets)
        {
            long offset = 0;
            for (int i = 0; i < bucket.Parameters.Count; i++)
            {
                Parameter p = bucket.Parameters[i];
                if (ReferenceEquals(p, parameter))
                {
                    using Tensor? grad = p.grad;
                    return bucket.Viewed[i] && grad is not null &&
                           OmniTune.Core.Tensors.TensorMemory.DataPointer(grad) == OmniTune.Core.Tensors.TensorMemory.DataPointer(bucket.Buffer) + (nint)(offset * sizeof(float));
                }
                offset += p.numel();
            }
        }
        return false;
    }

    /// <summary>
    /// The reduction's layout for the distributed optimizer (scatter mode): the buckets in order, each with this rank's
    /// reduce-scattered slice (summed over ranks, not averaged; valid after <see cref="Finish"/>), then the row-reduced
    /// embedding, whose whole gradient holds the sums (no slice).
    /// </summary>
    public IReadOnlyList<(IReadOnlyList<Parameter> Parameters, Tensor? Shard)> Segments =>
        [.. buckets.Select(b => ((IReadOnlyList<Parameter>)b.Parameters, b.Shard)), .. rowSparse is null ? [] : new[] { ((IReadOnlyList<Parameter>)[rowSparse], (Tensor?)null) }];

    /// <summary>The collective each bucket gets: "all-reduce", or "reduce-scatter" for the distributed optimizer.</summary>
    public string Collective => scatter ? "reduce-scatter" : "all-reduce";

    /// <summary>Buckets and their element counts, for the log.</summary>
    public string Describe() => $"{buckets.Count} bucket{(buckets.Count == 1 ? "" : "s")} of {string.Join(", ", buckets.Select(b => $"{b.Buffer.numel():N0}"))} elements" +
                                (rowSparse is null ? "" : $", the token embedding ({rowSparse.numel():N0}) by the rows the step's tokens touched");

    /// <summary>Whether the backward now running is the step's last (its layer signals start reductions).</summary>
    public bool Armed { get; set; }

    /// <summary>Milliseconds <see cref="Finish"/> waited for communication (the exposed share).</summary>
    public double ExposedMilliseconds { get; private set; }

    /// <summary>Bucket reductions started during backward, and in all, so far.</summary>
    public (long Early, long All) Started { get; private set; }

    /// <summary>Decoder layer of a parameter: its index, int.MaxValue for the final norm and LM head (backward's first), int.MinValue otherwise.</summary>
    static int LayerOf(string name)
    {
        var match = LayerPattern().Match(name);
        if (match.Success) return int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        string key = name.StartsWith("lora:", StringComparison.Ordinal) ? name[5..] : name;
        return key.StartsWith("model.norm.", StringComparison.Ordinal) || key.StartsWith("lm_head.", StringComparison.Ordinal) ? int.MaxValue : int.MinValue;
    }

    [GeneratedRegex(@"^(?:lora:)?model\.layers\.(\d+)\.")]
    private static partial Regex LayerPattern();

    /// <summary>
    /// The decoder's per-layer input: passed through an identity whose backward reports that <paramref name="layer"/> is
    /// done (when <see cref="Armed"/>).
    /// </summary>
    public Tensor LayerInput(int layer, Tensor hidden) =>
        hidden.requires_grad && is_grad_enabled() ? LayerDoneSignal.apply(hidden, (Action)(() => LayerDone(layer))) : hidden;

    void LayerDone(int layer)
    {
        if (!Armed || dataParallel.Size == 1) return;
        doneDownTo = Math.Min(doneDownTo, layer);
        foreach (Bucket bucket in buckets)
        {
            if (bucket.Pending is null && bucket.LowestLayer != int.MinValue && bucket.LowestLayer >= doneDownTo)
            {
                Start(bucket);
                Started = (Started.Early + 1, Started.All);
            }
            else bucket.Pending?.Test();   // lets MPI progress the ones in flight
        }
    }

    void Start(Bucket bucket)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long offset = 0;
        for (int i = 0; i < bucket.Parameters.Count; i++)
        {
            Parameter p = bucket.Parameters[i];
            if (!bucket.Viewed[i])
            {
                Tensor slice = bucket.Buffer.narrow(0, offset, p.numel());
                if (p.grad is null) slice.zero_();
                else slice.copy_(p.grad.reshape(-1));
            }
            offset += p.numel();
        }
        bucket.Pending = scatter ? dataParallel.ReduceScatterAsync(bucket.Buffer, bucket.Shard!) : dataParallel.AllReduceAsync(bucket.Buffer);
    }

    /// <summary>
    /// After the step's backward: starts the buckets not started yet, waits for all, averages and writes the gradients back
    /// (in scatter mode the shards are left summed for the distributed optimizer).
    /// </summary>
    public void Finish()
    {
        Armed = false;
        doneDownTo = int.MaxValue;
        if (dataParallel.Size == 1) return;
        foreach (Bucket bucket in buckets.Where(b => b.Pending is null)) Start(bucket);
        Started = (Started.Early, Started.All + buckets.Count);
        var clock = Stopwatch.StartNew();
        if (rowSparse is not null) ReduceRows(rowSparse);
        foreach (Bucket bucket in buckets)
        {
            bucket.Pending!.Dispose();
            bucket.Pending = null;
        }
        ExposedMilliseconds += clock.Elapsed.TotalMilliseconds;
        if (scatter) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (Bucket bucket in buckets)
        {
            if (mode != LossMode.PerToken) bucket.Buffer.div_(averageOver);
            if (bucket.Viewed.All(v => v)) continue;   // the gradients are the buffer
            long offset = 0;
            for (int i = 0; i < bucket.Parameters.Count; i++)
            {
                Parameter p = bucket.Parameters[i];
                if (!bucket.Viewed[i]) GradientSynchronizer.WriteBack(bucket.Buffer.narrow(0, offset, p.numel()), [p]);
                offset += p.numel();
            }
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (Bucket bucket in buckets)
        {
            bucket.Pending?.Dispose();
            bucket.Buffer.Dispose();
            bucket.Shard?.Dispose();
        }
    }

    /// <summary>Identity forward; backward calls the action (the layer's gradients are final by then) and passes the gradient on.</summary>
    sealed class LayerDoneSignal : autograd.SingleTensorFunction<LayerDoneSignal>
    {
        public override string Name => "OmniTuneLayerDone";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            ctx.save_data("done", vars[1]);
            return ((Tensor)vars[0]).alias();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            ((Action)ctx.get_data("done"))();
            return [grad, null!];
        }
    }
}
