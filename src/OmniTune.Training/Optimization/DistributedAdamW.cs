using OmniTune.Core.Safetensors;
using OmniTune.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Training.Optimization;

/// <summary>
/// ZeRO-1 AdamW (Megatron's --use-distributed-optimizer): the trainable parameters are laid end to end in flat fp32
/// segments, each padded to a multiple of the data-parallel size and cut into equal contiguous slices, one per rank: the
/// gradient buckets (<see cref="GradientBuckets"/>, as Megatron shards each bucket), whose reduce-scatters ran after or,
/// with <c>--overlap-grad-reduce</c>, during backward; or, built without buckets, one segment of everything, flattened and
/// reduce-scattered here. Each rank keeps the Adam moments of its slices only, and their fp32 master values where the model
/// is not fp32 (an fp32 model's own values are the masters: its slices are stepped in place, as Megatron steps the views
/// of an fp32 parameter buffer); the slices are updated (same formulas as torch's AdamW: decoupled weight decay,
/// bias-corrected moments) and all-gathered back into the model segment by segment. The optimizer state is saved gathered
/// and by parameter name, so it resumes at any data-parallel size and either layout.
/// </summary>
public sealed class DistributedAdamW : IDisposable
{
    /// <summary>File of the optimizer state in a checkpoint folder.</summary>
    public const string FileName = "distrib_optim.safetensors";

    /// <summary>
    /// Parameters laid end to end and padded to <see cref="Length"/>; this rank owns elements
    /// [rank × <see cref="ShardLength"/>, +<see cref="ShardLength"/>), at <see cref="ShardOffset"/> of its state.
    /// <see cref="Reduced"/>: the gradient bucket's reduce-scattered slice of it (summed over ranks), or null. <see cref="WholeReduced"/>:
    /// the parameter's own gradient already holds the sums (its slice is copied into <see cref="Reduced"/> when there is one).
    /// </summary>
    sealed record Segment(IReadOnlyList<(string Name, Parameter Parameter)> Parameters, long Length, long ShardLength, long ShardOffset, Tensor? Reduced, bool WholeReduced);

    /// <summary>
    /// A run of this rank's state that lies in one parameter: state elements [<see cref="Start"/>, +<see cref="Length"/>)
    /// are the parameter's flat elements [<see cref="From"/>, +<see cref="Length"/>).
    /// </summary>
    sealed record Piece(long Start, long Length, string Name, Parameter Parameter, long From);

    readonly List<(string Name, Parameter Parameter)> parameters;
    readonly List<Segment> segments = [];
    readonly IProcessGroup group, collectives;
    readonly Device device;
    readonly long shardSize;
    readonly List<Piece> pieces;   // in state order: end to end within a segment's slice, its padding after the last
    readonly Tensor? master;       // fp32 masters of this rank's slices; null when the parameters are fp32 and contiguous (they are their own masters)
    readonly Tensor expAvg, expAvgSq;
    readonly Tensor? shards;   // the buckets' reduced slices end to end, when they lie so: stepped on in place
    readonly List<(long Start, long Length)> counted, partial;   // runs of this rank's state: counts in the norm, summed over tensor-parallel ranks
    readonly double beta1, beta2, eps, weightDecay;
    long step;

    /// <summary>
    /// Creates the optimizer over <paramref name="trainable"/> for <paramref name="dataParallel"/>; <paramref name="countsInNorm"/>
    /// says which parameters this rank counts in the global gradient norm (all when null; under tensor parallel a whole
    /// parameter counts on one rank of the group). The state lives on the parameters' device; <paramref name="deviceGroup"/>
    /// (the same ranks over NCCL when the parameters are on CUDA) carries the reduce-scatter and all-gathers, the
    /// data-parallel group the scalar reductions. With <paramref name="buckets"/> (its scatter mode) the segments are its
    /// buckets and their gradients arrive reduce-scattered by it. <paramref name="sequencePartial"/> names the parameters
    /// whose gradients are partial over the tensor-parallel ranks (sequence parallel's norms): <see cref="Step"/> sums this
    /// rank's slices of them over the tensor-parallel group.
    /// </summary>
    public DistributedAdamW(List<(string Name, Parameter Parameter)> trainable, IProcessGroup dataParallel, double beta1, double beta2, double eps, double weightDecay,
        Func<string, bool>? countsInNorm = null, IProcessGroup? deviceGroup = null, GradientBuckets? buckets = null, Func<string, bool>? sequencePartial = null)
    {
        parameters = trainable;
        group = dataParallel;
        collectives = deviceGroup ?? dataParallel;
        device = trainable.Count > 0 ? trainable[0].Parameter.device : CPU;
        (this.beta1, this.beta2, this.eps, this.weightDecay) = (beta1, beta2, eps, weightDecay);
        long offset = 0;
        void Add(IReadOnlyList<(string Name, Parameter Parameter)> members, Tensor? reduced, bool wholeReduced)
        {
            long length = PaddedLength(members.Sum(p => p.Parameter.numel()), group.Size);
            segments.Add(new Segment(members, length, length / group.Size, offset, reduced, wholeReduced));
            offset += length / group.Size;
        }
        if (buckets is null || trainable.Count == 0) Add(trainable, null, false);   // one segment (of padding alone on a stage without trainable parameters)
        else
        {
            var names = trainable.ToDictionary(p => p.Parameter.Handle, p => p.Name);
            foreach (GradientBuckets.ShardSegment segment in buckets.Segments)
            {
                if (segment.InGradient && segment.Parameters.Count != 1) throw new ArgumentException("a segment whose sums are in the gradient holds one parameter");
                Add(segment.Parameters.Select(p => (names.TryGetValue(p.Handle, out string? name) ? name : throw new ArgumentException("the gradient buckets hold a parameter the optimizer does not step"), p)).ToList(),
                    segment.Reduced, segment.InGradient);
            }
            if (segments.Sum(s => s.Parameters.Count) != trainable.Count)
                throw new ArgumentException($"the gradient buckets hold {segments.Sum(s => s.Parameters.Count)} of the optimizer's {trainable.Count} parameters");
            shards = buckets.Shards;   // the segments' slices end to end (more than one rank)
            if (shards is not null && shards.numel() != offset) throw new ArgumentException($"the buckets' shards hold {shards.numel()} elements, the layout {offset}");
        }
        shardSize = offset;
        using var scope = NewDisposeScope();
        pieces = OwnPieces();
        // Parameters that cannot be stepped in place as flat views (not fp32, or not contiguous) get fp32 masters.
        if (trainable.Any(p => p.Parameter.dtype != ScalarType.Float32 || !p.Parameter.is_contiguous()))
            master = OwnSlices(p => p.detach().to(ScalarType.Float32)).DetachFromDisposeScope();
        expAvg = zeros(shardSize, device: device).DetachFromDisposeScope();
        expAvgSq = zeros(shardSize, device: device).DetachFromDisposeScope();
        counted = OwnRuns(p => countsInNorm?.Invoke(p.Name) ?? true);
        partial = OwnRuns(p => sequencePartial?.Invoke(p.Name) ?? false);
    }

    /// <summary>Where this rank's state lies in each parameter, in state order.</summary>
    List<Piece> OwnPieces()
    {
        var found = new List<Piece>();
        foreach (Segment segment in segments)
        {
            long from = group.Rank * segment.ShardLength, to = from + segment.ShardLength, offset = 0;
            foreach (var (name, p) in segment.Parameters)
            {
                long start = Math.Max(offset, from), end = Math.Min(offset + p.numel(), to);
                if (end > start) found.Add(new Piece(segment.ShardOffset + start - from, end - start, name, p, start - offset));
                offset += p.numel();
            }
        }
        return found;
    }

    /// <summary>Where this rank's state holds parameters that are <paramref name="selected"/>, as runs (adjacent ones merged).</summary>
    List<(long Start, long Length)> OwnRuns(Func<(string Name, Parameter Parameter), bool> selected)
    {
        var runs = new List<(long Start, long Length)>();
        foreach (Piece piece in pieces.Where(p => selected((p.Name, p.Parameter))))
        {
            if (runs.Count > 0 && runs[^1].Start + runs[^1].Length == piece.Start) runs[^1] = (runs[^1].Start, runs[^1].Length + piece.Length);
            else runs.Add((piece.Start, piece.Length));
        }
        return runs;
    }

    /// <summary>The master values of <paramref name="piece"/>: a view of the master slice, or of the fp32 parameter itself.</summary>
    Tensor MasterOf(Piece piece) =>
        master?.narrow(0, piece.Start, piece.Length) ?? piece.Parameter.detach().view(-1).narrow(0, piece.From, piece.Length);

    /// <summary>
    /// This rank's master values of <paramref name="segment"/>, padding included (what its all-gather sends): a view of the
    /// master slice, or the fp32 parameters' slices copied into the segment's place in <paramref name="spent"/> (laid out as
    /// the state, and free once the update has read it: the reduced gradients) — no allocation.
    /// </summary>
    Tensor OwnMasterSlice(Segment segment, Tensor spent)
    {
        if (master is not null) return master.narrow(0, segment.ShardOffset, segment.ShardLength);
        Tensor own = spent.narrow(0, segment.ShardOffset, segment.ShardLength);
        long used = 0;
        foreach (Piece piece in pieces.Where(p => p.Start >= segment.ShardOffset && p.Start < segment.ShardOffset + segment.ShardLength))
        {
            using Tensor values = MasterOf(piece);
            own.narrow(0, piece.Start - segment.ShardOffset, piece.Length).copy_(values);
            used += piece.Length;
        }
        if (used < segment.ShardLength) own.narrow(0, used, segment.ShardLength - used).zero_();   // the padding after the segment's last parameter
        return own;
    }

    /// <summary>
    /// Elements of a segment of <paramref name="elements"/> over <paramref name="ranks"/>: a multiple of the ranks, at least
    /// one per rank (a stage without trainable parameters keeps one padding element per rank).
    /// </summary>
    public static long PaddedLength(long elements, int ranks) => Math.Max(ranks, (elements + ranks - 1) / ranks * ranks);

    /// <summary>Elements owned by this rank.</summary>
    public long ShardSize => shardSize;

    /// <summary>
    /// Values this rank holds as state: both moments of its slices, and their fp32 master values when the model is not fp32
    /// (2 or 3 × <see cref="ShardSize"/>).
    /// </summary>
    public long StateValues => (master?.numel() ?? 0) + expAvg.numel() + expAvgSq.numel();

    /// <summary>Whether this rank keeps fp32 masters of its slices (the model is not fp32, or a parameter is not contiguous).</summary>
    public bool KeepsMasters => master is not null;

    /// <summary>Segments the state is cut into (1 without gradient buckets).</summary>
    public int SegmentCount => segments.Count;

    /// <summary>A segment's parameters' <paramref name="part"/> laid end to end and padded with zeros.</summary>
    Tensor Flatten(Segment segment, Func<Parameter, Tensor> part)
    {
        var pieces = new List<Tensor>();
        foreach (var (_, p) in segment.Parameters)
        {
            using Tensor whole = part(p);
            pieces.Add(whole.reshape(-1));
        }
        long used = segment.Parameters.Sum(p => p.Parameter.numel());
        if (segment.Length > used) pieces.Add(zeros(segment.Length - used, device: device));
        Tensor flat = cat(pieces.ToArray());
        foreach (Tensor piece in pieces) piece.Dispose();   // no handle keeps a gradient's storage alive once the caller lets it go
        return flat;
    }

    /// <summary>This rank's slices of every segment of <paramref name="part"/>, end to end (the layout of the state).</summary>
    Tensor OwnSlices(Func<Parameter, Tensor> part) =>
        Concatenate(segments.Select(s =>
        {
            using Tensor flat = Flatten(s, part);
            return flat.narrow(0, group.Rank * s.ShardLength, s.ShardLength).clone();
        }));

    static Tensor Concatenate(IEnumerable<Tensor> pieces)
    {
        var list = pieces.ToList();
        if (list.Count == 1) return list[0];
        Tensor all = cat(list.ToArray());
        foreach (Tensor piece in list) piece.Dispose();
        return all;
    }

    /// <summary>
    /// Every rank's <paramref name="own"/>(segment) slices all-gathered segment by segment and copied into
    /// <paramref name="target"/>(parameter) — each parameter's values, or nothing where it returns null (the ranks that only
    /// take part). One segment's gathered copy exists at a time: no model-sized buffer.
    /// </summary>
    void Unshard(Func<Segment, Tensor> own, Func<(string Name, Parameter Parameter), Tensor?> target)
    {
        foreach (Segment segment in segments)
        {
            using var scope = NewDisposeScope();
            Tensor gathered = collectives.AllGather(own(segment));   // the segment, padding included
            long offset = 0;   // of the parameter in the segment
            foreach (var p in segment.Parameters)
            {
                long n = p.Parameter.numel();
                target(p)?.copy_(gathered.narrow(0, offset, n).view(p.Parameter.shape));   // into any layout of the parameter
                offset += n;
            }
        }
    }

    /// <summary>
    /// Reduce-scatters the gradients (averaged over ranks unless <paramref name="average"/> is false), returns the global
    /// gradient norm, clips to <paramref name="clip"/> (0 = no clipping), updates this rank's shard with
    /// <paramref name="lr"/> and all-gathers the new parameters into the model. A non-finite norm skips the update.
    /// With <paramref name="pipeline"/> and <paramref name="tensor"/>, the squares of every stage's and every tensor-parallel
    /// rank's gradients count in the norm. Sums of the reduced slices — the same slices on every rank of those groups, whose
    /// layouts match — complete what backward left partial, at 1/DP of the traffic of summing whole gradients first
    /// (a sum commutes with the reduce-scatter): the whole shard over <paramref name="context"/> (context parallel: each
    /// rank back-propagated its share of the tokens), the sequence-partial runs over <paramref name="tensor"/>.
    /// </summary>
    public double Step(double lr, double clip, bool average, IProcessGroup? pipeline = null, IProcessGroup? tensor = null, IProcessGroup? context = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (Segment s in segments.Where(s => s.WholeReduced && s.Reduced is not null)) CopyOwnSlice(s);
        Tensor shard = shards?.alias() ?? Concatenate(segments.Select(s =>
        {
            if (s.Reduced is not null) return s.Reduced.alias();   // reduce-scattered by bucket (rewritten each step: free to scale in place)
            using Tensor grads = Flatten(s, p => p.grad is null ? zeros_like(p, dtype: ScalarType.Float32) : p.grad.to(ScalarType.Float32));
            return s.WholeReduced ? grads.narrow(0, group.Rank * s.ShardLength, s.ShardLength).clone() : collectives.ReduceScatter(grads);
        }));
        // The model's gradients are spent (their sums are in the shard): let go before the all-gathers.
        foreach (var (_, p) in parameters) p.grad = null;
        if (context is { Size: > 1 }) context.AllReduce(shard);
        if (tensor is { Size: > 1 } && partial.Count > 0)
        {
            Tensor parts = cat(partial.Select(r => shard.narrow(0, r.Start, r.Length)).ToArray());
            tensor.AllReduce(parts);
            long at = 0;
            foreach (var (start, n) in partial)
            {
                shard.narrow(0, start, n).copy_(parts.narrow(0, at, n));
                at += n;
            }
        }
        if (average) shard.div_(group.Size);
        double sum = 0;
        if (counted.Count > 0)
        {
            using var sums = NewDisposeScope();
            sum = stack(counted.Select(r => SquaredNorm.Of(shard.narrow(0, r.Start, r.Length))).ToArray()).sum().item<double>();   // one host synchronisation
        }
        using Tensor squares = torch.tensor(new[] { sum });
        group.AllReduce(squares);
        tensor?.AllReduce(squares);     // the other tensor-parallel parts
        pipeline?.AllReduce(squares);   // the other stages' parameters count in the global norm
        double norm = Math.Sqrt(squares.item<double>());
        if (!double.IsFinite(norm)) return norm;
        if (clip > 0 && norm > clip) shard.mul_(clip / (norm + 1e-6));
        step++;
        double correction1 = 1 - Math.Pow(beta1, step), correction2 = 1 - Math.Pow(beta2, step);
        // Piece by piece (each in one parameter, whose values are the masters of an fp32 model) and slice by slice
        // (FlatSlices): the same element-wise operations, with temporaries one slice long, not shard-sized.
        foreach (Piece piece in pieces)
        {
            using var pieceScope = NewDisposeScope();
            Tensor weights = MasterOf(piece);
            if (TrainableParameters.Decays(piece.Name, piece.Parameter)) weights.mul_(1 - lr * weightDecay);   // torch's AdamW: decoupled decay, before the update
            foreach (var (start, n) in FlatSlices.Of(piece.Length))
            {
                using var slice = NewDisposeScope();
                long at = piece.Start + start;
                Tensor w = weights.narrow(0, start, n), g = shard.narrow(0, at, n), m = expAvg.narrow(0, at, n), v = expAvgSq.narrow(0, at, n);
                m.mul_(beta1).add_(g, alpha: 1 - beta1);
                v.mul_(beta2).addcmul_(g, g, value: 1 - beta2);
                w.addcdiv_(m, v.sqrt().div_(Math.Sqrt(correction2)).add_(eps), value: -lr / correction1);
            }
        }
        Unshard(s => OwnMasterSlice(s, shard), p => p.Parameter.alias());
        return norm;
    }

    /// <summary>This rank's slice of a one-parameter segment whose gradient holds the sums, into its place (zeros past the end).</summary>
    void CopyOwnSlice(Segment segment)
    {
        using var scope = NewDisposeScope();
        Parameter p = segment.Parameters[0].Parameter;
        Tensor into = segment.Reduced!;
        long from = group.Rank * segment.ShardLength, n = Math.Clamp(p.numel() - from, 0, segment.ShardLength);
        into.zero_();
        if (n > 0 && p.grad is not null) into.narrow(0, 0, n).copy_(p.grad.reshape(-1).narrow(0, from, n));
    }

    /// <summary>Writes the gathered optimizer state by parameter name (rank 0 writes; every rank takes part).</summary>
    public void Save(string path)
    {
        using var scope = NewDisposeScope();
        var (first, second) = (new Dictionary<string, Tensor>(), new Dictionary<string, Tensor>());   // in this method's scope
        bool writes = group.Rank == 0;
        foreach (var (name, p) in writes ? parameters : [])
        {
            first[name] = empty(p.shape, ScalarType.Float32, device);
            second[name] = empty(p.shape, ScalarType.Float32, device);
        }
        Unshard(s => expAvg.narrow(0, s.ShardOffset, s.ShardLength), p => writes ? first[p.Name].alias() : null);
        Unshard(s => expAvgSq.narrow(0, s.ShardOffset, s.ShardLength), p => writes ? second[p.Name].alias() : null);
        if (!writes) return;
        var tensors = new List<TensorToWrite>();
        foreach (var (name, _) in parameters)
        {
            tensors.Add(TensorToWrite.Of("exp_avg." + name, first[name]));
            tensors.Add(TensorToWrite.Of("exp_avg_sq." + name, second[name]));
        }
        tensors.Add(TensorToWrite.Of("step", tensor(new[] { step })));
        SafetensorsWriter.WriteFile(path, tensors);
    }

    /// <summary>Loads a state written by <see cref="Save"/> at any data-parallel size; the masters come from the model.</summary>
    public void Load(string path)
    {
        using var file = SafetensorsFile.Open(path);
        using var scope = NewDisposeScope();
        Tensor Read(string prefix, Parameter p)
        {
            string key = prefix + parameters.First(x => ReferenceEquals(x.Parameter, p)).Name;
            if (!file.Tensors.ContainsKey(key)) throw new InvalidDataException($"{path}: no {key}; the checkpoint was trained with other parameters");
            return file.Read(key).to(device);
        }
        expAvg.copy_(OwnSlices(p => Read("exp_avg.", p)));
        expAvgSq.copy_(OwnSlices(p => Read("exp_avg_sq.", p)));
        step = file.Read("step").item<long>();
        using var noGrad = no_grad();
        master?.copy_(OwnSlices(p => p.detach().to(ScalarType.Float32)));   // an fp32 model's masters are its parameters, loaded with it
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        master?.Dispose();
        expAvg.Dispose();
        expAvgSq.Dispose();
    }
}
