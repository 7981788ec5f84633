namespace OmniTune.Distributed;

/// <summary>A rank's coordinates on the parallel axes.</summary>
/// <param name="Tp">Tensor-parallel rank.</param>
/// <param name="Cp">Context-parallel rank.</param>
/// <param name="Dp">Data-parallel rank.</param>
/// <param name="Pp">Pipeline stage.</param>
public readonly record struct ParallelCoordinates(int Tp, int Cp, int Dp, int Pp)
{
    /// <inheritdoc/>
    public override string ToString() => $"tp {Tp} cp {Cp} dp {Dp} pp {Pp}";
}

/// <summary>
/// The parallel decomposition of the world in Megatron's order (TP fastest, then CP, DP, PP slowest):
/// rank = tp + TP·(cp + CP·(dp + DP·pp)). DP is derived as world / (TP·CP·PP); sizes are validated once.
/// </summary>
public sealed record ParallelDims
{
    /// <summary>Validates and derives the data-parallel size.</summary>
    public ParallelDims(int world, int tp = 1, int cp = 1, int pp = 1)
    {
        if (world < 1 || tp < 1 || cp < 1 || pp < 1) throw new ArgumentException("parallel sizes must be positive");
        if (world % (tp * cp * pp) != 0)
            throw new ArgumentException($"world size {world} is not divisible by TP {tp} × CP {cp} × PP {pp} = {tp * cp * pp}");
        (World, Tp, Cp, Pp) = (world, tp, cp, pp);
        Dp = world / (tp * cp * pp);
    }

    /// <summary>Processes.</summary>
    public int World { get; }

    /// <summary>Tensor-parallel size.</summary>
    public int Tp { get; }

    /// <summary>Context-parallel size.</summary>
    public int Cp { get; }

    /// <summary>Data-parallel size (derived).</summary>
    public int Dp { get; }

    /// <summary>Pipeline stages.</summary>
    public int Pp { get; }

    /// <summary>Coordinates of <paramref name="rank"/>.</summary>
    public ParallelCoordinates Of(int rank)
    {
        if (rank < 0 || rank >= World) throw new ArgumentOutOfRangeException(nameof(rank));
        int tp = rank % Tp, rest = rank / Tp;
        int cp = rest % Cp;
        rest /= Cp;
        return new ParallelCoordinates(tp, cp, rest % Dp, rest / Dp);
    }

    /// <summary>Rank of given coordinates.</summary>
    public int RankOf(ParallelCoordinates c) => c.Tp + Tp * (c.Cp + Cp * (c.Dp + Dp * c.Pp));

    /// <summary>
    /// Ranks of the group along <paramref name="axis"/> ("tp", "cp", "dp", "pp", or "dp_cp": data and context parallel
    /// together, Megatron's group for the gradient reduction under context parallel) that contains <paramref name="rank"/>.
    /// </summary>
    public int[] GroupOf(string axis, int rank)
    {
        var c = Of(rank);
        return axis switch
        {
            "tp" => Enumerable.Range(0, Tp).Select(i => RankOf(c with { Tp = i })).ToArray(),
            "cp" => Enumerable.Range(0, Cp).Select(i => RankOf(c with { Cp = i })).ToArray(),
            "dp" => Enumerable.Range(0, Dp).Select(i => RankOf(c with { Dp = i })).ToArray(),
            "pp" => Enumerable.Range(0, Pp).Select(i => RankOf(c with { Pp = i })).ToArray(),
            "dp_cp" => Enumerable.Range(0, Dp * Cp).Select(i => RankOf(c with { Cp = i % Cp, Dp = i / Cp })).ToArray(),
            _ => throw new ArgumentException($"unknown axis '{axis}' (tp, cp, dp, pp, dp_cp)"),
        };
    }

    /// <summary>Splits <paramref name="world"/> into this rank's group along <paramref name="axis"/>, named "<paramref name="owner"/>.<paramref name="axis"/>".</summary>
    public MpiProcessGroup Group(MpiProcessGroup world, string owner, string axis)
    {
        int[] members = GroupOf(axis, world.Rank);
        return world.Split($"{owner}.{axis}", members[0], Array.IndexOf(members, world.Rank));
    }
}
