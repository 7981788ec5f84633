using OmniTune.Core.Safetensors;
using OmniTune.Data.Datasets;
using OmniTune.Data.Media;
using OmniTune.Models.Qwen25Omni.Loading;

namespace OmniTune.Cli.Commands;

/// <summary>Runs a command body and turns expected failures into one clear message and exit code 1.</summary>
static class CommandErrors
{
    /// <summary>"[rank r/N] " under mpirun, so every rank's error says where it happened.</summary>
    static string RankPrefix() => OmniTune.Distributed.OpenMpi.WorldSizeFromEnvironment > 1
        ? $"[rank {Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_RANK")}/{OmniTune.Distributed.OpenMpi.WorldSizeFromEnvironment}] "
        : "";

    /// <summary>A failed rank ends the whole job at once instead of leaving the others waiting in a collective.</summary>
    static void AbortOtherRanks()
    {
        if (OmniTune.Distributed.OpenMpi.WorldSizeFromEnvironment <= 1) return;
        Console.Error.Flush();
        OmniTune.Distributed.MpiProcessGroup.World().Abort(1);
    }

    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is SafetensorsFormatException or CheckpointMismatchException or InvalidDataException
                                       or FileNotFoundException or DirectoryNotFoundException or ArgumentException
                                       or NotSupportedException or KeyNotFoundException or MediaException
                                       or InvalidSampleException or IOException)
        {
            Console.Error.WriteLine($"error: {RankPrefix()}{e.Message}");
            AbortOtherRanks();
            return 1;
        }
        catch (Exception e) when (OmniTune.Distributed.OpenMpi.WorldSizeFromEnvironment > 1 && e is not OutOfMemoryException)
        {
            // A bug, not a bad input: the whole trace, then the job ends instead of leaving the other ranks waiting.
            Console.Error.WriteLine($"error: {RankPrefix()}internal error (please report it): {e}");
            AbortOtherRanks();
            return 2;
        }
    }
}
