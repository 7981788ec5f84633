using static TorchSharp.torch;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>The merge, split and tensor-parallel operations of the conversion (mindspeed_mm.md §1.4–1.5), exact and reversible.</summary>
public static class TensorOps
{
    /// <summary>Combines the Hugging Face sources of <paramref name="t"/> into the MindSpeed-MM tensor.</summary>
    public static Tensor Merge(MmTensor t, Tensor[] sources) => t.Merge switch
    {
        MergeKind.Rename => sources[0].alias(),
        MergeKind.UpGate => cat([sources[0], sources[1]], 0),
        MergeKind.Qkv => Interleave(sources[0], sources[1], sources[2], t.Groups),
        MergeKind.QkvZeroK => Interleave(sources[0], zeros_like(sources[0]), sources[1], t.Groups),
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>Shape of one of <paramref name="parts"/> tensor-parallel parts of <paramref name="t"/>, from its sources' shapes.</summary>
    public static long[] PartShape(MmTensor t, long[][] sourceShapes, int parts)
    {
        long[] shape = (long[])sourceShapes[0].Clone();
        shape[0] = t.Merge switch
        {
            MergeKind.Rename => shape[0],
            MergeKind.UpGate => sourceShapes[0][0] + sourceShapes[1][0],
            MergeKind.Qkv => sourceShapes[0][0] + sourceShapes[1][0] + sourceShapes[2][0],
            _ => 2 * sourceShapes[0][0] + sourceShapes[1][0],
        };
        if (parts > 1)
        {
            if (t.Split is SplitKind.Row or SplitKind.Glu) shape[0] /= parts;
            else if (t.Split == SplitKind.Column) shape[1] /= parts;
        }
        return shape;
    }

    /// <summary>Recovers source <paramref name="index"/> (in <see cref="MmTensor.Sources"/> order) from the merged tensor.</summary>
    public static Tensor Unmerge(MmTensor t, Tensor merged, int index, long[][] sourceShapes)
    {
        switch (t.Merge)
        {
            case MergeKind.Rename:
                return merged.alias();
            case MergeKind.UpGate:
                return merged.narrow(0, index == 0 ? 0 : sourceShapes[0][0], sourceShapes[index][0]).contiguous();
            case MergeKind.Qkv:
            case MergeKind.QkvZeroK:
                long q = sourceShapes[0][0] / t.Groups;
                long k = t.Merge == MergeKind.Qkv ? sourceShapes[1][0] / t.Groups : q;
                long v = sourceShapes[^1][0] / t.Groups;
                long offset = t.Merge == MergeKind.QkvZeroK && index == 1 ? q + k : index == 0 ? 0 : index == 1 ? q : q + k;
                long size = index == 0 ? q : (t.Merge == MergeKind.Qkv && index == 1) ? k : v;
                long per = q + k + v;
                var pieces = Enumerable.Range(0, t.Groups).Select(g => merged.narrow(0, g * per + offset, size)).ToArray();
                return cat(pieces, 0);
            default:
                throw new ArgumentOutOfRangeException(nameof(t));
        }
    }

    /// <summary>[q₀, k₀, v₀, q₁, k₁, v₁, …] with the rows of each tensor cut into <paramref name="groups"/> equal pieces.</summary>
    public static Tensor Interleave(Tensor q, Tensor k, Tensor v, int groups)
    {
        if (q.shape[0] % groups != 0 || k.shape[0] % groups != 0 || v.shape[0] % groups != 0)
            throw new ArgumentException($"q/k/v rows {q.shape[0]}/{k.shape[0]}/{v.shape[0]} do not split into {groups} groups");
        Tensor[] qs = q.chunk(groups), ks = k.chunk(groups), vs = v.chunk(groups);
        return cat(Enumerable.Range(0, groups).SelectMany(g => new[] { qs[g], ks[g], vs[g] }).ToArray(), 0);
    }

    /// <summary>Part <paramref name="rank"/> of <paramref name="parts"/> of a MindSpeed-MM tensor.</summary>
    public static Tensor SplitPart(Tensor t, SplitKind split, int rank, int parts)
    {
        if (parts == 1 || split == SplitKind.Replicated) return t.alias();
        switch (split)
        {
            case SplitKind.Row:
                return t.narrow(0, rank * (t.shape[0] / parts), t.shape[0] / parts).contiguous();
            case SplitKind.Column:
                return t.narrow(1, rank * (t.shape[1] / parts), t.shape[1] / parts).contiguous();
            case SplitKind.Glu:
                long half = t.shape[0] / 2, s = half / parts;
                return cat([t.narrow(0, rank * s, s), t.narrow(0, half + rank * s, s)], 0);
            default:
                throw new ArgumentOutOfRangeException(nameof(split));
        }
    }

    /// <summary>Joins the parts of a split tensor.</summary>
    public static Tensor MergeParts(IReadOnlyList<Tensor> parts, SplitKind split)
    {
        if (parts.Count == 1 || split == SplitKind.Replicated) return parts[0].alias();
        return split switch
        {
            SplitKind.Row => cat(parts.ToArray(), 0),
            SplitKind.Column => cat(parts.ToArray(), 1),
            SplitKind.Glu => cat(parts.Select(p => p.narrow(0, 0, p.shape[0] / 2)).Concat(parts.Select(p => p.narrow(0, p.shape[0] / 2, p.shape[0] / 2))).ToArray(), 0),
            _ => throw new ArgumentOutOfRangeException(nameof(split)),
        };
    }
}
