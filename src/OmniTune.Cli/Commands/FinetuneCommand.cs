using System.CommandLine;
using OmniTune.Training.Arguments;
using OmniTune.Training.Loop;
using Spectre.Console;

namespace OmniTune.Cli.Commands;

/// <summary>
/// <c>omnitune finetune --mm-model model.json --mm-data data.json [Megatron flags]</c>: the replacement for
/// <c>torchrun pretrain_vlm.py $GPT_ARGS $MM_ARGS $OUTPUT_ARGS</c>.
/// </summary>
static class FinetuneCommand
{
    public static Command Create()
    {
        var command = new Command("finetune", "Fine-tune the Qwen2.5-Omni thinker with MindSpeed-MM's model.json / data.json and Megatron flags " +
                                              "(--micro-batch-size, --global-batch-size, --seq-length, --lr, --lr-decay-style, --train-iters, --save, --load, …)")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        command.Options.Add(new System.CommandLine.Help.HelpOption { Action = new FlagsHelp() });   // finetune --help: the usual help, then every flag
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            var flags = MegatronFlags.Parse(parse.UnmatchedTokens);
            var arguments = TrainingArguments.FromFlags(flags);
            TrainingResult result;
            if (ConsoleOutput.IsInteractive)
            {
                // On a terminal: a progress bar below the step lines (which go through Spectre so they print above it).
                result = null!;
                AnsiConsole.Progress().AutoClear(false).Start(context =>
                {
                    var task = context.AddTask("training", maxValue: arguments.TrainIters);
                    result = Trainer.Run(arguments, new SpectreLineWriter(), new Progress<(int Iteration, int Total)>(p => task.Value = p.Iteration));
                });
            }
            else
            {
                result = Trainer.Run(arguments, Console.Out);
            }
            if (result.LogsHere)
                Console.WriteLine($"finished at iteration {result.Iteration}" + (result.LastCheckpoint is null ? "" : $"; last checkpoint {result.LastCheckpoint}"));
            return 0;
        }));
        return command;
    }

    /// <summary>The usual help followed by every Megatron / MindSpeed-MM flag with its default and meaning.</summary>
    sealed class FlagsHelp : System.CommandLine.Invocation.SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            new System.CommandLine.Help.HelpAction().Invoke(parseResult);
            Console.Out.Write(MegatronFlags.Help());
            return 0;
        }
    }

    /// <summary>Writes whole lines through Spectre.Console so they appear above a live progress bar.</summary>
    sealed class SpectreLineWriter : TextWriter
    {
        readonly System.Text.StringBuilder line = new();

        public override System.Text.Encoding Encoding => System.Text.Encoding.UTF8;

        public override void Write(char value)
        {
            if (value == '\n')
            {
                AnsiConsole.WriteLine(line.ToString());
                line.Clear();
            }
            else if (value != '\r')
            {
                line.Append(value);
            }
        }
    }
}
