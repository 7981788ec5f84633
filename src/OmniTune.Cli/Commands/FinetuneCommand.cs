using System.CommandLine;
using OmniTune.Training.Arguments;
using OmniTune.Training.Loop;

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
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            var flags = MegatronFlags.Parse(parse.UnmatchedTokens);
            var result = Trainer.Run(TrainingArguments.FromFlags(flags), Console.Out);
            Console.WriteLine($"finished at iteration {result.Iteration}" + (result.LastCheckpoint is null ? "" : $"; last checkpoint {result.LastCheckpoint}"));
            return 0;
        }));
        return command;
    }
}
