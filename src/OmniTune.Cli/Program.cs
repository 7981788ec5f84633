using System.CommandLine;
using OmniTune.Cli.Commands;
using OmniTune.Core.Native;

namespace OmniTune.Cli;

/// <summary>The <c>omnitune</c> command line: composition root.</summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static int Main(string[] args)
    {
        // First, and only when this is the program that runs (tests call Main inside their host): it may start the
        // program again with jemalloc preloaded.
        if (System.Reflection.Assembly.GetEntryAssembly() == typeof(Program).Assembly) CachingAllocator.Use();
        ConsoleOutput.Configure();
        MallocTuning.Apply();
        var root = new RootCommand("OmniTune: fine-tuning Qwen2.5-Omni in .NET")
        {
            InitTinyCommand.Create(),
            InspectCommand.Create(),
            DataCommand.Create(),
            FinetuneCommand.Create(),
            GenerateCommand.Create(),
            ConvertCommand.Create(),
            LaunchCommand.Create(),
            CommCheckCommand.Create(),
            ConvertCommand.CreateMmConvertAlias(),
            DemoCommand.Create(),
        };
        return root.Parse(args).Invoke();
    }
}
