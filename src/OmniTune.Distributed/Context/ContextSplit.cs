using OmniTune.Distributed.TensorParallel;
using static TorchSharp.torch;

namespace OmniTune.Distributed.Context;

/// <summary>
/// A sequence of <see cref="Length"/> tokens split over a context-parallel group with Megatron's load balancing: cut into
/// 2·CP equal chunks, rank r holds chunks r and 2·CP−1−r, so every rank gets the same share of the causal attention's
/// work (an early chunk attends to little, a late one to much). Token tensors are cut with <see cref="Take"/>; keys and
/// values come back whole, in sequence order, with <see cref="Gather"/> (all-gather forward, reduce-scatter backward);
/// <see cref="Mask"/> is the causal mask of this rank's queries against every key by their global positions.
/// </summary>
public sealed class ContextSplit
{
    readonly long[] local;
    readonly Tensor localIndex, order;

    /// <summary>Splits <paramref name="length"/> tokens over <paramref name="group"/>; the length must be a multiple of 2·CP.</summary>
    public ContextSplit(IProcessGroup group, long length)
    {
        Group = group;
        Length = length;
        int cp = group.Size;
        if (length % (2 * cp) != 0)
            throw new ArgumentException($"context parallel: a sequence of {length} tokens does not split into 2 × {cp} = {2 * cp} equal chunks (pad to a multiple of {2 * cp})");
        long chunk = length / (2 * cp);
        long[] Held(int r) => [.. Range(r * chunk, chunk), .. Range((2 * cp - 1 - r) * chunk, chunk)];
        local = Held(group.Rank);
        long[] gathered = Enumerable.Range(0, cp).SelectMany(Held).ToArray();   // the order an all-gather concatenates in
        long[] inverse = new long[length];
        for (int i = 0; i < gathered.Length; i++) inverse[gathered[i]] = i;
        localIndex = tensor(local);
        order = tensor(inverse);
    }

    static IEnumerable<long> Range(long start, long count)
    {
        for (long i = 0; i < count; i++) yield return start + i;
    }

    /// <summary>The group.</summary>
    public IProcessGroup Group { get; }

    /// <summary>Tokens of the whole sequence.</summary>
    public long Length { get; }

    /// <summary>Global positions this rank holds, in the order it holds them.</summary>
    public IReadOnlyList<long> Local => local;

    /// <summary>This rank's tokens of <paramref name="x"/> along <paramref name="dim"/> (the whole sequence); gradients flow back to those positions.</summary>
    public Tensor Take(Tensor x, int dim) => Group.Size == 1 ? x : x.index_select(dim, localIndex.to(x.device));

    /// <summary>
    /// The whole sequence along <paramref name="dim"/> from every rank's tokens, in sequence order: all-gathered forward,
    /// and backward each rank gets the sum over the group of the gradients of its own tokens (reduce-scatter).
    /// </summary>
    public Tensor Gather(Tensor x, int dim)
    {
        if (Group.Size == 1) return x;
        Tensor gathered = TensorParallelRegion.Gather(x, Group, dim, reduceGradient: true);
        return gathered.index_select(dim, order.to(x.device));
    }

    /// <summary>Queries per block of <see cref="Attend"/>: bounds the scores a block makes ([B, heads, block, keys]).</summary>
    public const long QueryBlock = 1024;

    /// <summary>
    /// Causal attention of this rank's queries <paramref name="q"/> [B, heads, S/CP, D] against the whole sequence's keys
    /// and values, gathered from the group (<paramref name="k"/>, <paramref name="v"/>: this rank's [B, kv heads, S/CP, D],
    /// grouped-query heads repeated after the exchange). Queries go in blocks of at most <see cref="QueryBlock"/>, each
    /// against the keys up to its last position only (the causal prefix: no work on keys it cannot see) with its mask,
    /// and each block runs through <paramref name="recompute"/> (the model's activation checkpoint: recomputed in
    /// backward), so no [queries, keys] score matrix larger than one block's ever exists — the memory a masked attention
    /// over the whole [S/CP, S] would need and that CPU attention kernels make for an explicit mask.
    /// <paramref name="keyKeep"/> [B, S] (1 = token) masks padding as <see cref="Mask"/> does; numbering packed samples
    /// 1, 2, … (neat packing) it also keeps each query to its own sample's keys.
    /// </summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? keyKeep, Func<Func<Tensor, Tensor[], Tensor>, Tensor, Tensor[], Tensor> recompute,
        long queryBlock = QueryBlock)
    {
        Tensor keys = Gather(k, 2), values = Gather(v, 2);
        long b = q.shape[0], heads = q.shape[1], d = q.shape[3], kvHeads = keys.shape[1];
        long groups = heads / kvHeads, chunk = Length / (2 * Group.Size);
        Tensor? keep = keyKeep?.to(ScalarType.Bool).to(q.device);
        Tensor? samples = keyKeep is not null && keyKeep.max().to(ScalarType.Int64).item<long>() > 1 ? keyKeep.to(ScalarType.Int64).to(q.device) : null;
        var outputs = new List<Tensor>();
        for (long offset = 0; offset < local.Length; offset += Math.Min(queryBlock, chunk - offset % chunk))
        {
            long n = Math.Min(queryBlock, chunk - offset % chunk), first = local[offset], end = first + n;   // a block never crosses a chunk
            Tensor qb = q.narrow(2, offset, n), kb = keys.narrow(2, 0, end), vb = values.narrow(2, 0, end);
            Tensor mask;
            using (var scope = NewDisposeScope())
            {
                Tensor rows = arange(first, end, ScalarType.Int64, q.device).unsqueeze(1), columns = arange(end, ScalarType.Int64, q.device).unsqueeze(0);
                Tensor visible = columns.le(rows).unsqueeze(0).expand(b, -1, -1);
                if (keep is not null) visible = visible & keep.narrow(1, 0, end).unsqueeze(1);
                if (samples is not null) visible = visible & samples.narrow(1, first, n).unsqueeze(2).eq(samples.narrow(1, 0, end).unsqueeze(1));
                visible = visible | (columns.eq(rows).unsqueeze(0) & visible.any(-1, keepdim: true).logical_not());
                mask = visible.unsqueeze(1).contiguous().MoveToOuterDisposeScope();   // [B, 1, n, end]
            }
            long qSize = qb.numel(), kvSize = kb.numel();
            Tensor packed = cat([qb.reshape(-1), kb.reshape(-1), vb.reshape(-1)]);
            outputs.Add(recompute((x, c) =>
            {
                Tensor qs = x.narrow(0, 0, qSize).view(b, heads, n, d);
                Tensor ks = x.narrow(0, qSize, kvSize).view(b, kvHeads, end, d), vs = x.narrow(0, qSize + kvSize, kvSize).view(b, kvHeads, end, d);
                if (groups > 1)
                {
                    ks = ks.repeat_interleave(groups, 1);
                    vs = vs.repeat_interleave(groups, 1);
                }
                return nn.functional.scaled_dot_product_attention(qs, ks, vs, c[0]);
            }, packed, [mask]));
        }
        return cat(outputs.ToArray(), 2);
    }

    /// <summary>
    /// [B, 1, S/CP, S] boolean mask (True = attend): query at global position i sees keys j ≤ i that are not padding
    /// (<paramref name="keyKeep"/> [B, S], 1 = token; numbering packed samples, also of the query's sample); a query
    /// without any such key attends to itself (as
    /// <c>AttentionMask</c> does for padded queries on one device).
    /// </summary>
    public Tensor Mask(Tensor? keyKeep, long batch, Device device)
    {
        using var scope = NewDisposeScope();
        Tensor queries = localIndex.to(device).unsqueeze(1), keys = arange(Length, ScalarType.Int64, device).unsqueeze(0);
        Tensor causal = keys.le(queries).unsqueeze(0).expand(batch, -1, -1);                       // [B, S/CP, S]
        Tensor mask = keyKeep is null ? causal : causal & keyKeep.to(ScalarType.Bool).to(device).unsqueeze(1);
        if (keyKeep is not null && keyKeep.max().to(ScalarType.Int64).item<long>() > 1)
        {
            Tensor samples = keyKeep.to(ScalarType.Int64).to(device);   // neat packing: each query to its own sample's keys
            mask = mask & Take(samples, 1).unsqueeze(2).eq(samples.unsqueeze(1));
        }
        Tensor self = keys.eq(queries).unsqueeze(0);                                                 // [1, S/CP, S]
        mask = mask | (self & mask.any(-1, keepdim: true).logical_not());
        return mask.unsqueeze(1).contiguous().MoveToOuterDisposeScope();
    }
}
