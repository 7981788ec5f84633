using System.CommandLine;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Models.Qwen25Omni.Tiny;
using static TorchSharp.torch;

namespace OmniTune.Cli.Commands;

/// <summary><c>omnitune init-tiny --out DIR [--seed N] [--dtype fp32|bf16]</c>: writes a tiny random Qwen2.5-Omni folder.</summary>
static class InitTinyCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Folder to write (created; existing model files are replaced)", Required = true };
        var seed = new Option<int>("--seed") { Description = "Random seed of the weights", DefaultValueFactory = _ => 0 };
        var dtype = new Option<string>("--dtype") { Description = "Stored weight dtype: fp32 or bf16", DefaultValueFactory = _ => "fp32" };
        dtype.AcceptOnlyFromAmong("fp32", "bf16");
        var command = new Command("init-tiny", "Write a tiny random Qwen2.5-Omni (all towers, real key names, byte-level BPE tokenizer) as a Hugging Face folder")
        {
            output, seed, dtype,
        };
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            string folder = parse.GetValue(output)!;
            ScalarType type = parse.GetValue(dtype) == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;
            Qwen25OmniConfig config = TinyQwen25Omni.Write(folder, parse.GetValue(seed), type);
            var weights = ThinkerWeightLayout.For(config.Thinker);
            Console.WriteLine($"wrote {folder}: {weights.Count} tensors, {weights.Sum(w => w.ElementCount):N0} parameters " +
                              $"(text {config.Thinker.Text.NumHiddenLayers} layers × {config.Thinker.Text.HiddenSize}, vocab {config.Thinker.Text.VocabSize}), {type}");
            return 0;
        }));
        return command;
    }
}
