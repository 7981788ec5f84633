using OmniTune.Models.Qwen25Omni.Thinker;
using System.Diagnostics;
using OmniTune.Models.Qwen25Omni.Audio;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Vision;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>Forward+backward throughput of the vision and audio encoders at 7B widths with fewer layers.</summary>
static class EncoderBenchmarks
{
    public sealed record Result(string Unit, double UnitsPerSecond, double ModelGflopPerStep, double SecondsPerStep, double AchievedGflops);

    /// <summary>7B vision widths (1280 hidden, 16 heads, 3420 MLP) with <paramref name="depth"/> blocks, the last one full attention.</summary>
    public static Qwen25OmniVisionConfig VisionConfig(int depth) => new() { Depth = depth, FullAttBlockIndexes = [depth - 1], OutHiddenSize = 3584 };

    /// <summary>7B audio widths (1280 d_model, 20 heads, 5120 FFN) with <paramref name="layers"/> layers.</summary>
    public static Qwen25OmniAudioConfig AudioConfig(int layers) => new() { EncoderLayers = layers, OutputDim = 3584 };

    public static Result Vision(int depth, GridThw grid, int warmup, int steps, TextWriter log)
    {
        var config = VisionConfig(depth);
        using var encoder = new Qwen25OmniVisionEncoder(config, null, ScalarType.Float32);
        Tensor pixels = randn([grid.Patches, config.PatchDim], generator: new Generator(1));
        double seconds = Time(() => encoder.Forward(pixels, [grid]).square().mean(), warmup, steps, log);
        double gflop = ThinkerFlops.Vision(config, grid) / 1e9;
        return new Result("patches", grid.Patches * steps / seconds, gflop, seconds / steps, gflop * steps / seconds);
    }

    public static Result Audio(int layers, int frames, int warmup, int steps, TextWriter log)
    {
        var config = AudioConfig(layers);
        using var encoder = new Qwen25OmniAudioEncoder(config, null, ScalarType.Float32);
        Tensor mel = randn([config.NumMelBins, frames], generator: new Generator(2));
        double seconds = Time(() => encoder.Forward(mel, [frames]).square().mean(), warmup, steps, log);
        double gflop = ThinkerFlops.Audio(config, frames) / 1e9;
        return new Result("mel frames", (double)frames * steps / seconds, gflop, seconds / steps, gflop * steps / seconds);
    }

    static double Time(Func<Tensor> loss, int warmup, int steps, TextWriter log)
    {
        double total = 0;
        for (int i = 0; i < warmup + steps; i++)
        {
            using var scope = NewDisposeScope();
            var clock = Stopwatch.StartNew();
            loss().backward();
            double elapsed = clock.Elapsed.TotalSeconds;
            if (i >= warmup) total += elapsed;
            log.WriteLine($"  {(i < warmup ? "warm-up" : "step")} {i + 1}: {elapsed * 1000:F0} ms");
        }
        return total;
    }
}
