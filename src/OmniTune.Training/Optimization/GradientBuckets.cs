using System.Diagnostics;
using System.Text.RegularExpressions;
using OmniTune.Distributed;
using OmniTune.Models.Common;
using OmniTune.Training.Arguments;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Training.Optimization;

/// <summary>
/// The data-parallel gradients in contiguous fp32 buckets of at least <c>--ddp-bucket-size</c> elements, as Megatron's
/// gradient buffers: filled in the order backward produces them (the decoder's LM head and final norm, then its layers
/// from the last; the vision merger and blocks from the last; the audio tower's head and layers from the last; then
/// everything else), and reduced bucket by bucket. With <c>--overlap-grad-reduce</c> the reduction overlaps the step's
/// last backward: each tower <see cref="Watch"/>ed reports its passes and layers (<see cref="ILayerProgress"/>); once
/// backward has passed a layer's input in every pass of the micro-batch (the vision encoder runs images and videos in
/// separate passes), that layer's gradients and those of the layers after it are final, and the buckets whose gradients
/// are all final start their all-reduce (non-blocking MPI, progressed at every later layer) while backward goes on —
/// always in bucket order, so that every rank starts the same collectives in the same order whatever its data.
/// <see cref="Finish"/> starts the rest (all of them when nothing was armed), waits, averages as
/// <see cref="GradientSynchronizer"/> does and writes the gradients back — the same sums, element by element, as its one
/// bucket. The buckets are the gradients: each fp32 parameter's <c>.grad</c> is a view into
/// its bucket, which backward accumulates into in place and <see cref="ZeroGradients"/> zeroes in place — no second
/// gradient-sized copy, and no fresh gradient memory each step. Parameters of another dtype (a bf16 model's, whose fp32
/// masters step) are copied into their bucket and written back instead. Under the distributed optimizer (<c>scatter</c>,
/// overlapped or not) each bucket is padded to a multiple of the group size and reduce-scattered instead, as Megatron's
/// distributed optimizer does: each rank receives the sums of its 1/Size slice of every bucket (<see cref="Segments"/>),
/// which <see cref="DistributedAdamW"/> owns and averages; the gradients are not written back.
/// </summary>
public sealed partial class GradientBuckets : IDisposable
{
    /// <summary>Megatron's default bucket size: max(40M, 1M × data-parallel size) elements.</summary>
    public static long DefaultBucketSize(int dataParallel) => Math.Max(40_000_000L, 1_000_000L * dataParallel);

    /// <summary>The towers whose layers report their progress in backward.</summary>
    public enum Tower
    {
        /// <summary>The text decoder (model.layers.N).</summary>
        Decoder,

        /// <summary>The vision encoder (visual.blocks.N).</summary>
        Vision,

        /// <summary>The audio encoder (audio_tower.layers.N).</summary>
        Audio,
    }

    /// <summary>Layer of the parameters after a tower's layers (LM head, final norm, merger, projection): final once any layer is.</summary>
    const int Head = int.MaxValue;

    /// <summary>
    /// A segment of the distributed optimizer's layout: parameters laid end to end (padded to a multiple of the group
    /// size) and where this rank's summed slice of them lands (on one rank: the bucket itself; null for the embedding on
    /// one rank). <paramref name="InGradient"/>: the parameter's own gradient holds the sums (the row-reduced embedding);
    /// the optimizer copies its slice into <paramref name="Reduced"/>.
    /// </summary>
    public sealed record ShardSegment(IReadOnlyList<Parameter> Parameters, Tensor? Reduced, bool InGradient);

    sealed class Bucket(List<Parameter> parameters, IReadOnlyList<(Tower Tower, int Lowest)>? waits, Tensor buffer)
    {
        public List<Parameter> Parameters { get; } = parameters;

        /// <summary>Whether each parameter's gradient is a view into <see cref="Buffer"/> (fp32, same device).</summary>
        public bool[] Viewed { get; } = parameters.Select(p => p.dtype == ScalarType.Float32 && p.device_type == buffer.device_type && p.device_index == buffer.device_index).ToArray();

        /// <summary>Per tower, the lowest layer whose gradients it holds; null when some are final only after backward.</summary>
        public IReadOnlyList<(Tower Tower, int Lowest)>? Waits { get; } = waits;

        public Tensor Buffer { get; } = buffer;

        /// <summary>This rank's reduce-scattered slice of the buffer (scatter mode, more than one rank: a part of <see cref="Shards"/>).</summary>
        public Tensor? Shard { get; set; }

        /// <summary>Where the reduce-scatter lands: <see cref="Shard"/>, or the buffer when the group has one rank.</summary>
        public Tensor Reduced => Shard ?? Buffer;

        public PendingOperation? Pending { get; set; }
    }

    readonly IProcessGroup dataParallel;
    readonly LossMode mode;
    readonly List<Bucket> buckets = [];
    readonly Parameter? rowSparse;
    readonly Tensor? rowSparseShard;
    readonly bool scatter;
    readonly int averageOver;
    readonly HashSet<Tower> watched = [];
    readonly HashSet<Tower> layered;   // towers with layers among the buckets
    readonly Dictionary<(int MicroBatch, Tower Tower, int Layer), int> passes = [];   // this step's forward passes per layer
    readonly Dictionary<(Tower Tower, int Layer), int> fired = [];                    // the armed backward's layer signals
    readonly Dictionary<Tower, int> doneDownTo = [];                                  // every layer from there up is final
    int forwardMicroBatch;
    int? armedMicroBatch;

    /// <summary>
    /// Buckets of <paramref name="parameters"/> (the ones the data-parallel group synchronises) of at least
    /// <paramref name="bucketElements"/> elements. <paramref name="rowSparse"/> names a parameter whose gradient is zero
    /// outside the rows of the step's tokens (an untied token embedding): it is reduced apart, only the rows some rank
    /// touched (<see cref="ReduceRows"/>) — the 7B's embedding is 2.2 GB of fp32 gradient, nearly all zeros. With
    /// <paramref name="scatter"/> the buckets are reduce-scattered for the distributed optimizer and nothing is averaged.
    /// Sums are averaged over <paramref name="averageOver"/> ranks (default: the group's; the data-parallel size when the
    /// group also spans context-parallel ranks, whose parts of one sample's gradient add up).
    /// </summary>
    public GradientBuckets(IProcessGroup dataParallel, LossMode mode, IReadOnlyList<(string Name, Parameter Parameter)> parameters, long bucketElements,
        string? rowSparse = null, bool scatter = false, int? averageOver = null)
    {
        this.dataParallel = dataParallel;
        this.mode = mode;
        this.scatter = scatter;
        this.averageOver = averageOver ?? dataParallel.Size;
        this.rowSparse = parameters.FirstOrDefault(p => p.Name == rowSparse && p.Parameter.dim() == 2).Parameter;
        var positions = parameters.Where(p => !ReferenceEquals(p.Parameter, this.rowSparse)).Select((p, i) => (p.Parameter, Position: PositionOf(p.Name), Index: i)).ToList();
        layered = positions.Where(p => p.Position is { Layer: < Head } q && q.Tower is not null).Select(p => p.Position.Tower!.Value).ToHashSet();
        // A tower's head without its layers here (another pipeline stage runs them) is final only after backward.
        (Tower? Tower, int Layer) afterBackward = (null, 0);
        var ordered = positions.Select(p => (p.Parameter, Position: p.Position.Tower is Tower t && layered.Contains(t) ? p.Position : afterBackward, p.Index))
            .OrderBy(p => p.Position.Tower is Tower t ? (int)t : int.MaxValue).ThenByDescending(p => p.Position.Layer).ThenBy(p => p.Index).ToList();
        var current = new List<(Parameter Parameter, (Tower? Tower, int Layer) Position)>();
        long size = 0;
        void Close()
        {
            if (current.Count == 0) return;
            Device device = current[0].Parameter.device;
            long length = scatter ? DistributedAdamW.PaddedLength(size, dataParallel.Size) : size;
            var waits = current.Any(c => c.Position.Tower is null) ? null
                : current.GroupBy(c => c.Position.Tower!.Value).Select(g => (g.Key, g.Min(c => c.Position.Layer))).ToList();
            buckets.Add(new Bucket(current.Select(c => c.Parameter).ToList(), waits, zeros(length, ScalarType.Float32, device).DetachFromDisposeScope()));
            current = [];
            size = 0;
        }
        foreach (var (parameter, position, _) in ordered)
        {
            current.Add((parameter, position));
            size += parameter.numel();
            if (size >= bucketElements) Close();
        }
        Close();
        if (scatter && dataParallel.Size > 1)
        {
            // Every segment's slice end to end in one tensor, the layout of the optimizer's state: it steps on them in place.
            long Slice(long elements) => DistributedAdamW.PaddedLength(elements, dataParallel.Size) / dataParallel.Size;
            long total = buckets.Sum(b => b.Buffer.numel() / dataParallel.Size) + (this.rowSparse is null ? 0 : Slice(this.rowSparse.numel()));
            Device device = buckets.Count > 0 ? buckets[0].Buffer.device : this.rowSparse?.device ?? CPU;
            Shards = zeros(total, ScalarType.Float32, device).DetachFromDisposeScope();
            long offset = 0;
            foreach (Bucket bucket in buckets)
            {
                bucket.Shard = Shards.narrow(0, offset, bucket.Buffer.numel() / dataParallel.Size).DetachFromDisposeScope();
                offset += bucket.Shard.numel();
            }
            if (this.rowSparse is not null) rowSparseShard = Shards.narrow(0, offset, total - offset).DetachFromDisposeScope();
        }
        ZeroGradients();
    }

    /// <summary>
    /// This rank's slices of every segment end to end (scatter mode, more than one rank; else null): the buckets'
    /// reduce-scatters land in their parts of it, and the distributed optimizer steps on it as it is.
    /// </summary>
    public Tensor? Shards { get; }

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
            Tensor part = grad.index_select(0, union).to(ScalarType.Float32);   // summed in fp32, as the buckets sum a bf16 model's gradients
            dataParallel.AllReduce(part);
            if (mode != LossMode.PerToken && !scatter) part.div_(averageOver);
            grad.index_copy_(0, union, part.to(grad.dtype));
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
    /// embedding, whose whole gradient holds the sums. Their slices lie end to end in <see cref="Shards"/>.
    /// </summary>
    public IReadOnlyList<ShardSegment> Segments =>
        [.. buckets.Select(b => new ShardSegment(b.Parameters, b.Reduced, false)), .. rowSparse is null ? [] : new[] { new ShardSegment([rowSparse], rowSparseShard, true) }];

    /// <summary>The collective each bucket gets: "all-reduce", or "reduce-scatter" for the distributed optimizer.</summary>
    public string Collective => scatter ? "reduce-scatter" : "all-reduce";

    /// <summary>Buckets and their element counts, for the log.</summary>
    public string Describe() => $"{buckets.Count} bucket{(buckets.Count == 1 ? "" : "s")} of {string.Join(", ", buckets.Select(b => $"{b.Buffer.numel():N0}"))} elements" +
                                (rowSparse is null ? "" : $", the token embedding ({rowSparse.numel():N0}) by the rows the step's tokens touched");

    /// <summary>Whether the backward now running is the step's last (its layer signals start reductions).</summary>
    public bool Armed { get; private set; }

    /// <summary>Milliseconds <see cref="Finish"/> waited for communication (the exposed share).</summary>
    public double ExposedMilliseconds { get; private set; }

    /// <summary>Bucket reductions started during backward, and in all, so far.</summary>
    public (long Early, long All) Started { get; private set; }

    /// <summary>
    /// Where a parameter's gradient becomes final in backward: its tower and layer, <see cref="Head"/> for what comes after
    /// the tower's layers (final norm and LM head, the vision merger, the audio tower's norm and projection), no tower for
    /// the rest (embeddings, the encoders' stems: final only after backward).
    /// </summary>
    static (Tower? Tower, int Layer) PositionOf(string name)
    {
        string key = name.StartsWith("lora:", StringComparison.Ordinal) ? name[5..] : name;
        var match = LayerPattern().Match(key);
        if (match.Success)
        {
            Tower tower = match.Groups[1].Value switch { "model.layers" => Tower.Decoder, "visual.blocks" => Tower.Vision, _ => Tower.Audio };
            return (tower, int.Parse(match.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
        }
        return key.StartsWith("model.norm.", StringComparison.Ordinal) || key.StartsWith("lm_head.", StringComparison.Ordinal) ? (Tower.Decoder, Head)
            : key.StartsWith("visual.merger.", StringComparison.Ordinal) ? (Tower.Vision, Head)
            : key.StartsWith("audio_tower.ln_post.", StringComparison.Ordinal) || key.StartsWith("audio_tower.proj.", StringComparison.Ordinal) ? (Tower.Audio, Head)
            : (null, 0);
    }

    [GeneratedRegex(@"^(model\.layers|visual\.blocks|audio_tower\.layers)\.(\d+)\.")]
    private static partial Regex LayerPattern();

    /// <summary>
    /// The progress watcher to hand <paramref name="tower"/> (its model's <c>Progress</c>): from now on its buckets start
    /// as soon as its layers are done. A tower not watched (its gradients are summed over other ranks after backward
    /// first: heterogeneous parallel's shared encoders) has its buckets started after backward.
    /// </summary>
    public ILayerProgress Watch(Tower tower)
    {
        watched.Add(tower);
        return new TowerProgress(this, tower);
    }

    /// <summary>The forward of <paramref name="microBatch"/> starts (its towers' passes are counted for it).</summary>
    public void Forwarding(int microBatch) => forwardMicroBatch = microBatch;

    /// <summary>
    /// The backward of <paramref name="microBatch"/> of <paramref name="count"/> starts: the last one arms the signals. A
    /// watched tower with layers here that made no pass in it (no images in the micro-batch) has final gradients already.
    /// </summary>
    public void Backwarding(int microBatch, int count)
    {
        Armed = microBatch == count - 1;
        if (!Armed || armedMicroBatch is not null) return;
        armedMicroBatch = microBatch;
        foreach (Tower tower in watched.Where(layered.Contains))
        {
            if (!passes.Keys.Any(k => k.MicroBatch == microBatch && k.Tower == tower)) doneDownTo[tower] = int.MinValue;
        }
        StartReady();
    }

    void PassStarted(Tower tower, int from, int to)
    {
        for (int layer = from; layer < to; layer++) passes[(forwardMicroBatch, tower, layer)] = passes.GetValueOrDefault((forwardMicroBatch, tower, layer)) + 1;
    }

    void LayerDone(Tower tower, int layer)
    {
        if (!Armed || dataParallel.Size == 1) return;
        int count = fired[(tower, layer)] = fired.GetValueOrDefault((tower, layer)) + 1;
        // Done in every pass: this layer and (each pass having gone through them first) every later one.
        if (count == passes.GetValueOrDefault((armedMicroBatch!.Value, tower, layer))) doneDownTo[tower] = Math.Min(doneDownTo.GetValueOrDefault(tower, int.MaxValue), layer);
        StartReady();
    }

    /// <summary>Starts, in bucket order, the buckets whose gradients are final; lets MPI progress those in flight.</summary>
    void StartReady()
    {
        if (dataParallel.Size == 1) return;
        foreach (Bucket bucket in buckets)
        {
            if (bucket.Pending is not null)
            {
                bucket.Pending.Test();
                continue;
            }
            if (bucket.Waits is null || !bucket.Waits.All(w => watched.Contains(w.Tower) && doneDownTo.TryGetValue(w.Tower, out int done) && w.Lowest >= done)) return;
            Start(bucket);
            Started = (Started.Early + 1, Started.All);
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
        bucket.Pending = dataParallel.Size == 1 ? PendingOperation.Completed   // one rank: the buffer is the sum
            : scatter ? dataParallel.ReduceScatterAsync(bucket.Buffer, bucket.Shard!) : dataParallel.AllReduceAsync(bucket.Buffer);
    }

    /// <summary>
    /// After the step's backward: starts the buckets not started yet, waits for all, averages and writes the gradients back
    /// (in scatter mode the shards are left summed for the distributed optimizer).
    /// </summary>
    public void Finish()
    {
        Armed = false;
        armedMicroBatch = null;
        passes.Clear();
        fired.Clear();
        doneDownTo.Clear();
        if (dataParallel.Size == 1 && !scatter) return;   // the distributed optimizer still needs the other dtypes' gradients in the buckets
        foreach (Bucket bucket in buckets.Where(b => b.Pending is null)) Start(bucket);
        Started = (Started.Early, Started.All + buckets.Count);
        var clock = Stopwatch.StartNew();
        if (rowSparse is not null && dataParallel.Size > 1) ReduceRows(rowSparse);
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
        rowSparseShard?.Dispose();
        Shards?.Dispose();
    }

    sealed class TowerProgress(GradientBuckets owner, Tower tower) : ILayerProgress
    {
        public void PassStarted(int from, int to) => owner.PassStarted(tower, from, to);

        public Tensor LayerInput(int layer, Tensor hidden) =>
            hidden.requires_grad && is_grad_enabled() ? LayerDoneSignal.apply(hidden, (Action)(() => owner.LayerDone(tower, layer))) : hidden;
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
