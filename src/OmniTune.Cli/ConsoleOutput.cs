using Microsoft.Win32.SafeHandles;
using Spectre.Console;

namespace OmniTune.Cli;

/// <summary>
/// Standard output of the <c>omnitune</c> process. Under mpirun Open MPI gives each rank a pseudo-terminal, so .NET
/// would take it for a terminal (writing the keypad-mode codes <c>ESC[?1h ESC=</c> at its first write) and Spectre
/// would draw live progress bars into the job's log. There, both streams are plain writers on the file descriptors.
/// </summary>
static class ConsoleOutput
{
    /// <summary>Whether this process runs as one rank of an MPI job.</summary>
    static bool UnderMpi => Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null
                            || Environment.GetEnvironmentVariable("PMI_SIZE") is not null;

    /// <summary>Whether live progress bars may be drawn: a real terminal, not an MPI rank.</summary>
    public static bool IsInteractive => !UnderMpi && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;

    /// <summary>Call first in Main: under MPI, replaces Console.Out and Console.Error before .NET initialises the terminal.</summary>
    public static void Configure()
    {
        if (!UnderMpi) return;
        Console.SetOut(Plain(1));
        Console.SetError(Plain(2));
    }

    static TextWriter Plain(int descriptor) =>
        TextWriter.Synchronized(new StreamWriter(new FileStream(new SafeFileHandle(descriptor, ownsHandle: false), FileAccess.Write, 1), new System.Text.UTF8Encoding(false))
        {
            AutoFlush = true,
        });
}
