using OmniTune.Core.Safetensors;
using OmniTune.Data.Datasets;
using OmniTune.Data.Media;
using OmniTune.Models.Qwen25Omni.Loading;

namespace OmniTune.Cli.Commands;

/// <summary>Runs a command body and turns expected failures into one clear message and exit code 1.</summary>
static class CommandErrors
{
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
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
