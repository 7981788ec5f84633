using System.CommandLine;
using OmniTune.Cli.Demo;

namespace OmniTune.Cli.Commands;

/// <summary><c>omnitune demo</c>: the README's main job on an embedded default.</summary>
static class DemoCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Working folder", DefaultValueFactory = _ => Path.Combine("runs", "demo") };
        var steps = new Option<int>("--steps") { Description = "Training iterations", DefaultValueFactory = _ => 200 };
        var seed = new Option<int>("--seed") { Description = "Seed of weights and training", DefaultValueFactory = _ => 0 };
        var command = new Command("demo", "Build a tiny Qwen2.5-Omni, synthesize multimodal data, fine-tune on CPU, reload and generate") { output, steps, seed };
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            DemoResult result = MultimodalDemo.Run(parse.GetValue(output)!, parse.GetValue(steps), parse.GetValue(seed), Console.Out);
            return result.LastLoss < result.FirstLoss ? 0 : 1;
        }));
        return command;
    }
}
