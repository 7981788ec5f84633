using System.CommandLine;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Models.Qwen25Omni.Tiny;
using static TorchSharp.torch;

namespace OmniTune.Cli.Commands;

/// <summary>
/// <c>omnitune init-tiny --out DIR [--seed N] [--dtype fp32|bf16] [--text-hidden-size H --text-layers L …]</c>: writes a
/// tiny random Qwen2.5-Omni folder (a wider or deeper text decoder for benchmarks).
/// </summary>
static class InitTinyCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Folder to write (created; existing model files are replaced)", Required = true };
        var seed = new Option<int>("--seed") { Description = "Random seed of the weights", DefaultValueFactory = _ => 0 };
        var dtype = new Option<string>("--dtype") { Description = "Stored weight dtype: fp32 or bf16", DefaultValueFactory = _ => "fp32" };
        dtype.AcceptOnlyFromAmong("fp32", "bf16");
        var hidden = new Option<int?>("--text-hidden-size") { Description = "Text decoder width (default 64; the encoders' outputs follow it)" };
        var layers = new Option<int?>("--text-layers") { Description = "Text decoder layers (default 2)" };
        var intermediate = new Option<int?>("--text-intermediate-size") { Description = "Text decoder MLP width (default 176)" };
        var heads = new Option<int?>("--text-heads") { Description = "Text decoder attention heads (default 4; key/value heads stay half, at least 1)" };
        var vocab = new Option<int?>("--vocab-size") { Description = "Vocabulary rows (default the tiny tokenizer's, rounded up to 64; more rows are unused ids, as in the 7B)" };
        var command = new Command("init-tiny", "Write a tiny random Qwen2.5-Omni (all towers, real key names, byte-level BPE tokenizer) as a Hugging Face folder")
        {
            output, seed, dtype, hidden, layers, intermediate, heads, vocab,
        };
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            string folder = parse.GetValue(output)!;
            ScalarType type = parse.GetValue(dtype) == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;
            Qwen25OmniConfig Adjust(Qwen25OmniConfig c)
            {
                var text = c.Thinker.Text;
                int width = parse.GetValue(hidden) ?? text.HiddenSize, h = parse.GetValue(heads) ?? text.NumAttentionHeads;
                if (width < 1 || h < 1 || width % h != 0 || (width / h) % 2 != 0)
                    throw new ArgumentException($"--text-hidden-size {width} must be a positive multiple of --text-heads {h} with an even head width");
                if (width / h < 8) throw new ArgumentException($"--text-hidden-size {width} / --text-heads {h}: heads must be at least 8 wide (TMRoPE cuts each into three sections)");
                text = text with
                {
                    HiddenSize = width,
                    NumHiddenLayers = parse.GetValue(layers) ?? text.NumHiddenLayers,
                    MaxWindowLayers = parse.GetValue(layers) ?? text.MaxWindowLayers,
                    IntermediateSize = parse.GetValue(intermediate) ?? text.IntermediateSize,
                    NumAttentionHeads = h,
                    NumKeyValueHeads = Math.Max(1, h / 2),
                    VocabSize = parse.GetValue(vocab) is int rows
                        ? rows >= text.VocabSize ? rows : throw new ArgumentException($"--vocab-size {rows} is below the tiny tokenizer's {text.VocabSize} rows")
                        : text.VocabSize,
                };
                int half = width / h / 2, temporal = half / 4, height = (half - temporal) / 2;   // the 7B's proportions (16, 24, 24 of 64)
                text = text with { RopeScaling = text.RopeScaling with { MropeSection = [temporal, height, half - temporal - height] } };
                return c with
                {
                    Thinker = c.Thinker with
                    {
                        Text = text,
                        Vision = c.Thinker.Vision with { OutHiddenSize = width },
                        Audio = c.Thinker.Audio with { OutputDim = width },
                    },
                };
            }
            Qwen25OmniConfig config = TinyQwen25Omni.Write(folder, parse.GetValue(seed), type, Adjust);
            var weights = ThinkerWeightLayout.For(config.Thinker);
            Console.WriteLine($"wrote {folder}: {weights.Count} tensors, {weights.Sum(w => w.ElementCount):N0} parameters " +
                              $"(text {config.Thinker.Text.NumHiddenLayers} layers × {config.Thinker.Text.HiddenSize}, vocab {config.Thinker.Text.VocabSize}), {type}");
            return 0;
        }));
        return command;
    }
}
