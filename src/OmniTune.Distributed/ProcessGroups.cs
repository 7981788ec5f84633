namespace OmniTune.Distributed;

/// <summary>The world group of this process: MPI under mpirun, a single rank otherwise.</summary>
public static class ProcessGroups
{
    /// <summary>Creates the world group (MPI only when mpirun started more than one process); a call waiting longer than <paramref name="timeout"/> ends the job.</summary>
    public static IProcessGroup World(TimeSpan? timeout = null) =>
        OpenMpi.WorldSizeFromEnvironment > 1 ? MpiProcessGroup.World(timeout: timeout) : new SingleRankGroup("world");
}
