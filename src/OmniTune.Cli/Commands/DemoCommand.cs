using System.CommandLine;
using OmniTune.Cli.Demo;
using OmniTune.Core.Tensors;

namespace OmniTune.Cli.Commands;

/// <summary><c>omnitune demo</c>: the README's main job on an embedded default.</summary>
static class DemoCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Working folder", DefaultValueFactory = _ => Path.Combine("runs", "demo") };
        var steps = new Option<int>("--steps") { Description = "Training steps", DefaultValueFactory = _ => 60 };
        var seed = new Option<int>("--seed") { Description = "Seed of weights and training", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or cuda:N", DefaultValueFactory = _ => "auto" };
        var command = new Command("demo", "Build a tiny Qwen2.5-Omni, load it, fine-tune it on CPU and generate") { output, steps, seed, device };
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            DemoResult result = TextOverfitDemo.Run(parse.GetValue(output)!, parse.GetValue(steps), parse.GetValue(seed), Console.Out,
                DeviceSelection.Resolve(parse.GetValue(device)!));
            Console.WriteLine($"loss {result.InitialLoss:F4} -> {result.FinalLoss:F4}; answer reproduced exactly: {(result.Reproduced ? "yes" : "no")}");
            return result.FinalLoss < result.InitialLoss / 4 ? 0 : 1;
        }));
        return command;
    }
}
