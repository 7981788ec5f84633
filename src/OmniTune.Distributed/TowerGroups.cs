namespace OmniTune.Distributed;

/// <summary>
/// One tower's parallel layout and this rank's process group on each axis, named "tower.axis" ("vision.dp",
/// "decoder.tp", …). Each tower gets its own, so the encoders and the LLM can use different TP/DP layouts over the same
/// world (heterogeneous parallel); the model code receives these handles and never looks groups up.
/// </summary>
public sealed class TowerGroups : IDisposable
{
    TowerGroups(string tower, ParallelDims dims, IProcessGroup tp, IProcessGroup cp, IProcessGroup dp, IProcessGroup pp, IProcessGroup? share, IProcessGroup dpCp)
    {
        DpCp = dpCp;
        Tower = tower;
        Share = share;
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

    /// <summary>
    /// Data- and context-parallel ranks together (the ranks holding the same parameters): <see cref="Dp"/> itself without
    /// context parallel.
    /// </summary>
    public IProcessGroup DpCp { get; }

    /// <summary>Pipeline group.</summary>
    public IProcessGroup Pp { get; }

    /// <summary>
    /// Heterogeneous parallel: the ranks of this tower's data-parallel group that read the same micro-batch of the tower
    /// given as <c>readers</c> to <see cref="Build"/> (same data-parallel rank, context-parallel rank and stage there) — they
    /// split that micro-batch's media items among them. Null when no readers were given.
    /// </summary>
    public IProcessGroup? Share { get; }

    /// <summary>The four axis groups in Megatron's order.</summary>
    public IReadOnlyList<IProcessGroup> All => [Tp, Cp, Dp, Pp];

    /// <summary>
    /// Builds this rank's groups for <paramref name="tower"/> laid out as <paramref name="dims"/> over <paramref name="world"/>,
    /// and with <paramref name="readers"/> (the layout of the tower that consumes this one's output) its <see cref="Share"/>
    /// group. Collective over the world.
    /// </summary>
    public static TowerGroups Build(IProcessGroup world, string tower, ParallelDims dims, ParallelDims? readers = null)
    {
        if (dims.World != world.Size)
            throw new ArgumentException($"the {tower} layout covers {dims.World} ranks but the world has {world.Size}");
        IProcessGroup Axis(string axis) => world switch
        {
            MpiProcessGroup mpi => dims.Group(mpi, tower, axis),
            _ when world.Size == 1 => new SingleRankGroup($"{tower}.{axis}"),
            _ => throw new NotSupportedException($"groups for the {tower} tower need an MPI world (got '{world.Name}' of {world.Size} ranks)"),
        };
        IProcessGroup dp = Axis("dp");
        IProcessGroup? share = null;
        if (readers is not null)
        {
            if (readers.World != dims.World) throw new ArgumentException($"the {tower} layout covers {dims.World} ranks but its readers' covers {readers.World}");
            // One colour per micro-batch of the readers: their rank with tensor-parallel coordinate 0.
            int batch = readers.RankOf(readers.Of(world.Rank) with { Tp = 0 });
            share = dp switch
            {
                MpiProcessGroup mpi => mpi.Split($"{tower}.share", batch, dp.Rank),
                _ => new SingleRankGroup($"{tower}.share"),
            };
        }
        return new TowerGroups(tower, dims, Axis("tp"), Axis("cp"), dp, Axis("pp"), share, dims.Cp == 1 ? dp : Axis("dp_cp"));
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var group in All) group.Dispose();
        Share?.Dispose();
        if (!ReferenceEquals(DpCp, Dp)) DpCp.Dispose();
    }
}
