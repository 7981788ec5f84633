namespace OmniTune.Distributed;

/// <summary>
/// One tower's parallel layout and this rank's process group on each axis, named "tower.axis" ("vision.dp",
/// "decoder.tp", …). Each tower gets its own, so the encoders and the LLM can use different TP/DP layouts over the same
/// world (heterogeneous parallel); the model code receives these handles and never looks groups up.
/// </summary>
public sealed class TowerGroups : IDisposable
{
    TowerGroups(string tower, ParallelDims dims, IProcessGroup tp, IProcessGroup cp, IProcessGroup dp, IProcessGroup pp)
    {
        Tower = tower;
        Dims = dims;
        Tp = tp;
        Cp = cp;
        Dp = dp;
        Pp = pp;
    }

    /// <summary>"vision", "audio" or "decoder".</summary>
    public string Tower { get; }

    /// <summary>The tower's sizes on each axis.</summary>
    public ParallelDims Dims { get; }

    /// <summary>Tensor-parallel group.</summary>
    public IProcessGroup Tp { get; }

    /// <summary>Context-parallel group.</summary>
    public IProcessGroup Cp { get; }

    /// <summary>Data-parallel group.</summary>
    public IProcessGroup Dp { get; }

    /// <summary>Pipeline group.</summary>
    public IProcessGroup Pp { get; }

    /// <summary>The four axis groups in Megatron's order.</summary>
    public IReadOnlyList<IProcessGroup> All => [Tp, Cp, Dp, Pp];

    /// <summary>Builds this rank's groups for <paramref name="tower"/> laid out as <paramref name="dims"/> over <paramref name="world"/>.</summary>
    public static TowerGroups Build(IProcessGroup world, string tower, ParallelDims dims)
    {
        if (dims.World != world.Size)
            throw new ArgumentException($"the {tower} layout covers {dims.World} ranks but the world has {world.Size}");
        IProcessGroup Axis(string axis) => world switch
        {
            MpiProcessGroup mpi => dims.Group(mpi, tower, axis),
            _ when world.Size == 1 => new SingleRankGroup($"{tower}.{axis}"),
            _ => throw new NotSupportedException($"groups for the {tower} tower need an MPI world (got '{world.Name}' of {world.Size} ranks)"),
        };
        return new TowerGroups(tower, dims, Axis("tp"), Axis("cp"), Axis("dp"), Axis("pp"));
    }

    /// <summary>
    /// A group of <paramref name="size"/> consecutive ranks of <see cref="Tp"/> (a collective over it), named
    /// "<paramref name="owner"/>.tp": a tower cut into fewer tensor-parallel parts than this one, so that TP rank r holds part
    /// r mod size (MindSpeed-MM's per-module TP sizes, <c>split_by_tp</c>). The caller owns it.
    /// </summary>
    public IProcessGroup TensorSubgroup(string owner, int size)
    {
        if (size < 1 || Tp.Size % size != 0) throw new ArgumentException($"{owner}: tensor-parallel size {size} must divide the {Tower} tensor-parallel size {Tp.Size}");
        if (size == 1) return new SingleRankGroup($"{owner}.tp");
        return Tp is MpiProcessGroup mpi ? mpi.Split($"{owner}.tp", Tp.Rank / size, Tp.Rank % size)
            : throw new NotSupportedException($"sub-groups of '{Tp.Name}' need an MPI group");
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var group in All) group.Dispose();
    }
}
