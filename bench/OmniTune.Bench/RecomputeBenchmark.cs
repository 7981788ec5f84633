using System.Diagnostics;
using OmniTune.Core.Native;
using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>Peak memory and time of a text-decoder training step with and without full recompute (uniform, 1 layer).</summary>
static class RecomputeBenchmark
{
    public static void Run(int layers, int seq, TextWriter log)
    {
        var text = TextDecoderBenchmark.BenchConfig(layers);
        using var model = new Qwen25OmniThinkerForConditionalGeneration(new Qwen25OmniThinkerConfig { Text = text }, tiedLmHead: false);
        Tensor ids = randint(0, text.VocabSize, [1, seq], generator: new Generator(3));
        foreach (RecomputeSettings? settings in new RecomputeSettings?[] { null, new("uniform", 1), null, new("uniform", 1) })
        {
            model.TextModel.Recompute = settings;
            GC.Collect();
            long before = ProcessMemory.Rss();
            ProcessMemory.ResetPeak();
            var clock = Stopwatch.StartNew();
            using (var scope = NewDisposeScope())
            {
                CausalLmLoss.Mean(model.Forward(ids), ids).backward();
                model.zero_grad();
            }
            double ms = clock.Elapsed.TotalMilliseconds;
            long peak = ProcessMemory.Peak();
            log.WriteLine($"RESULT recompute {(settings is null ? "off" : "uniform/1")}: step {ms:F0} ms, peak RSS above the pre-step level {(peak - before) / (1 << 20)} MiB " +
                          $"(text decoder, {layers} layers, hidden {text.HiddenSize}, seq {seq}, vocab {text.VocabSize})");
        }
    }
}
