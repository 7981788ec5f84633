using System.CommandLine;
using OmniTune.Core.Safetensors;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Models.Qwen25Omni.Thinker;

namespace OmniTune.Cli.Commands;

/// <summary><c>omnitune inspect --model DIR</c>: checks a Hugging Face Qwen2.5-Omni folder without loading the weights.</summary>
static class InspectCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face Qwen2.5-Omni folder", Required = true };
        var command = new Command("inspect", "Check a Hugging Face Qwen2.5-Omni folder: config, keys, shapes, parameter counts") { model };
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            string folder = parse.GetValue(model)!;
            var (config, report) = Qwen25OmniConfigLoader.Load(folder);
            if (report.Describe() is { } unknown) Console.WriteLine(unknown);
            var t = config.Thinker;
            Console.WriteLine($"text: {t.Text.NumHiddenLayers} layers, hidden {t.Text.HiddenSize}, heads {t.Text.NumAttentionHeads}/{t.Text.NumKeyValueHeads}, vocab {t.Text.VocabSize}");
            Console.WriteLine($"vision: {t.Vision.Depth} blocks, hidden {t.Vision.HiddenSize}; audio: {t.Audio.EncoderLayers} layers, d_model {t.Audio.DModel}");
            using var checkpoint = SafetensorsCheckpoint.Open(folder);
            string prefix = ThinkerCheckpointLoader.DetectPrefix(checkpoint);
            bool tied = !checkpoint.Contains(prefix + ThinkerWeightLayout.LmHeadKey);
            var layout = ThinkerWeightLayout.For(t, tied);
            var comparison = ThinkerCheckpointLoader.Compare(checkpoint, layout);
            Console.WriteLine($"checkpoint: {checkpoint.Files.Count} file(s), {checkpoint.Keys.Count} tensors, thinker prefix '{prefix}', lm_head {(tied ? "tied" : "separate")}" +
                              (comparison.SpeechTensors > 0 ? $", {comparison.SpeechTensors} talker/token2wav tensors (not used)" : ""));
            Console.WriteLine($"thinker: {layout.Count} tensors, {layout.Sum(w => w.ElementCount):N0} parameters; missing {comparison.Missing.Count}, " +
                              $"unexpected {comparison.Unexpected.Count}, wrong shape {comparison.ShapeErrors.Count}");
            if (!comparison.Matches)
                throw new CheckpointMismatchException(ThinkerCheckpointLoader.DescribeMismatch(checkpoint.Location, comparison.Missing, comparison.Unexpected, comparison.ShapeErrors));
            return 0;
        }));
        return command;
    }
}
