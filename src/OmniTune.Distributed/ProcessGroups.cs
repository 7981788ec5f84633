namespace OmniTune.Distributed;

/// <summary>The world group of this process: MPI under mpirun, a single rank otherwise.</summary>
public static class ProcessGroups
{
    /// <summary>Creates the world group (MPI only when mpirun started more than one process).</summary>
    public static IProcessGroup World() => OpenMpi.WorldSizeFromEnvironment > 1 ? MpiProcessGroup.World() : new SingleRankGroup("world");
}
