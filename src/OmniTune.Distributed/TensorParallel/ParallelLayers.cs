using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Distributed.TensorParallel;

/// <summary>Part <paramref name="Part"/> of <paramref name="Parts"/> equal contiguous blocks of dimension <paramref name="Dim"/>.</summary>
public sealed record TensorShard(int Dim, int Part, int Parts)
{
    /// <summary>This shard of <paramref name="full"/> (a view).</summary>
    public Tensor Of(Tensor full)
    {
        if (full.shape[Dim] % Parts != 0)
            throw new ArgumentException($"dimension {Dim} of [{string.Join(", ", full.shape)}] does not split into {Parts} equal tensor-parallel parts");
        long size = full.shape[Dim] / Parts;
        return full.narrow(Dim, Part * size, size);
    }

    /// <summary>The shape of this shard of a tensor of shape <paramref name="full"/>.</summary>
    public long[] ShapeOf(long[] full)
    {
        long[] shape = (long[])full.Clone();
        shape[Dim] /= Parts;
        return shape;
    }
}

/// <summary>A layer whose parameters are cut across a tensor-parallel group.</summary>
public interface IParallelLayer
{
    /// <summary>The group the layer is cut across.</summary>
    IProcessGroup Group { get; }

    /// <summary>How each parameter (by its name in the layer, e.g. "weight") is cut; parameters not listed are whole on every rank.</summary>
    IReadOnlyDictionary<string, TensorShard> Shards { get; }
}

/// <summary>A linear layer of a tensor-parallel group, as a LoRA adapter needs it: local weight, and the mappings around it.</summary>
public interface IParallelLinear : IParallelLayer
{
    /// <summary>This rank's weight [out, in] (one of the two dimensions cut).</summary>
    Parameter Weight { get; }

    /// <summary>Full input features.</summary>
    long InFeatures { get; }

    /// <summary>Full output features.</summary>
    long OutFeatures { get; }

    /// <summary>
    /// Runs a low-rank adapter in the same parallel style: <paramref name="down"/> (in → r) and <paramref name="up"/> (r → out)
    /// are cut as this layer is (column: up by rows; row: down by columns), <paramref name="input"/> is what the layer received.
    /// </summary>
    Tensor Adapter(Tensor input, Func<Tensor, Tensor> down, Func<Tensor, Tensor> up);
}

/// <summary>
/// A linear layer cut across a group: this rank's weight, the bias (cut with the rows, or whole), and the mapping its
/// input or output passes through (the concrete styles below).
/// </summary>
public abstract class ParallelLinear : nn.Module<Tensor, Tensor>, IParallelLinear
{
    readonly Parameter weight;
    readonly Parameter? bias;

    /// <summary>Cuts <paramref name="full"/>'s weight along <paramref name="weightDim"/>; the bias is cut with the rows or kept whole.</summary>
    protected ParallelLinear(string name, Linear full, IProcessGroup group, int weightDim, int? sequenceDim) : base(name)
    {
        Group = group;
        SequenceDim = sequenceDim;
        var shard = new TensorShard(weightDim, group.Rank, group.Size);
        (InFeatures, OutFeatures) = (full.in_features, full.out_features);
        weight = Cut(full.weight!, shard);
        register_parameter("weight", weight);
        var shards = new Dictionary<string, TensorShard> { ["weight"] = shard };
        if (full.bias is { } b)
        {
            bool cut = weightDim == 0;
            bias = cut ? Cut(b, shard) : new Parameter(b.detach().clone(), b.requires_grad);
            register_parameter("bias", bias);
            if (cut) shards["bias"] = shard;
        }
        Shards = shards;
    }

    /// <inheritdoc/>
    public IProcessGroup Group { get; }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, TensorShard> Shards { get; }

    /// <inheritdoc/>
    public Parameter Weight => weight;

    /// <summary>The bias (this rank's rows, or whole), or null.</summary>
    protected Parameter? Bias => bias;

    /// <summary>The sequence dimension under sequence parallel, else null.</summary>
    protected int? SequenceDim { get; }

    /// <inheritdoc/>
    public long InFeatures { get; }

    /// <inheritdoc/>
    public long OutFeatures { get; }

    /// <inheritdoc/>
    public abstract Tensor Adapter(Tensor input, Func<Tensor, Tensor> down, Func<Tensor, Tensor> up);

    internal static Parameter Cut(Parameter full, TensorShard shard) => new(shard.Of(full.detach()).clone(), full.requires_grad);
}

/// <summary>
/// y = x Aᵀ + b with A's rows (output features) cut across the group: each rank computes its slice of the outputs.
/// The input enters the region (identity forward, all-reduce backward); with sequence parallel it arrives cut along
/// the sequence and is all-gathered (reduce-scattered backward).
/// </summary>
public sealed class ColumnParallelLinear(Linear full, IProcessGroup group, int? sequenceDim = null)
    : ParallelLinear("column_parallel_linear", full, group, 0, sequenceDim)
{
    Tensor Enter(Tensor x) => SequenceDim is int dim ? TensorParallelRegion.Gather(x, Group, dim, reduceGradient: true) : TensorParallelRegion.Copy(x, Group);

    /// <inheritdoc/>
    public override Tensor forward(Tensor input) => nn.functional.linear(Enter(input), Weight, Bias);

    /// <inheritdoc/>
    public override Tensor Adapter(Tensor input, Func<Tensor, Tensor> down, Func<Tensor, Tensor> up) => up(Enter(down(input)));
}

/// <summary>
/// y = x Aᵀ + b with A's columns (input features) cut across the group: the input arrives cut by features (a
/// column-parallel layer's output), each rank's partial product is summed across the group (reduce-scattered along the
/// sequence with sequence parallel), then the bias, whole on every rank, is added once.
/// </summary>
public sealed class RowParallelLinear(Linear full, IProcessGroup group, int? sequenceDim = null)
    : ParallelLinear("row_parallel_linear", full, group, 1, sequenceDim)
{
    Tensor Leave(Tensor partial) => SequenceDim is int dim ? TensorParallelRegion.ReduceScatter(partial, Group, dim) : TensorParallelRegion.Reduce(partial, Group);

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        Tensor y = Leave(nn.functional.linear(input, Weight));
        return Bias is null ? y : y + Bias;
    }

    /// <inheritdoc/>
    public override Tensor Adapter(Tensor input, Func<Tensor, Tensor> down, Func<Tensor, Tensor> up) => up(Leave(down(input)));
}

/// <summary>
/// A token embedding with its rows (the vocabulary) cut across the group: each rank looks up the ids in its range,
/// zeros for the others, and the rows are summed across the group.
/// </summary>
public sealed class VocabParallelEmbedding : nn.Module<Tensor, Tensor>, IParallelLayer
{
    readonly Parameter weight;
    readonly long start, rows;

    /// <summary>Cuts <paramref name="full"/>'s vocabulary.</summary>
    public VocabParallelEmbedding(Embedding full, IProcessGroup group) : base("vocab_parallel_embedding")
    {
        Group = group;
        var shard = new TensorShard(0, group.Rank, group.Size);
        weight = ParallelLinear.Cut(full.weight!, shard);
        register_parameter("weight", weight);
        rows = weight.shape[0];
        start = group.Rank * rows;
        Shards = new Dictionary<string, TensorShard> { ["weight"] = shard };
    }

    /// <inheritdoc/>
    public IProcessGroup Group { get; }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, TensorShard> Shards { get; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        Tensor outside = ids.lt(start).logical_or(ids.ge(start + rows));
        Tensor local = (ids - start).masked_fill(outside, 0);
        Tensor rowsHere = weight.index_select(0, local.reshape(-1)).reshape([.. ids.shape, weight.shape[1]]).masked_fill(outside.unsqueeze(-1), 0);
        return TensorParallelRegion.Reduce(rowsHere, Group).MoveToOuterDisposeScope();
    }
}
