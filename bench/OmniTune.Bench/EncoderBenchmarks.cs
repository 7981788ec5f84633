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

    /// <summary>Model FLOPs (fwd+bwd = 3× forward) of the vision encoder on <paramref name="grid"/>.</summary>
    public static double VisionFlops(Qwen25OmniVisionConfig c, GridThw grid)
    {
        double d = c.HiddenSize, n = grid.Patches, unit = c.SpatialMergeSize * c.SpatialMergeSize;
        var windows = VisionWindowIndex.For([grid], c.WindowSize, c.SpatialMergeSize, c.PatchSize);
        double forward = 2 * n * c.PatchDim * d;
        for (int b = 0; b < c.Depth; b++)
        {
            int[] segments = c.FullAttBlockIndexes.Contains(b) ? windows.FullSegments : windows.WindowSegments;
            forward += 2 * n * (4 * d * d + 3 * d * c.IntermediateSize);
            forward += segments.Sum(s => 4.0 * s * s * d);   // QKᵀ and PV inside each segment
        }
        forward += 2 * (n / unit) * (unit * d * unit * d + unit * d * c.OutHiddenSize);
        return 3 * forward;
    }

    /// <summary>Model FLOPs (fwd+bwd) of the audio encoder on one audio of <paramref name="frames"/> mel frames.</summary>
    public static double AudioFlops(Qwen25OmniAudioConfig c, int frames)
    {
        double d = c.DModel;
        int[] chunks = Qwen25OmniAudioEncoder.ChunkLengths(frames, c.NWindow);
        double tokens = chunks.Sum(AudioLengths.AfterConv);
        double forward = 2 * frames * c.NumMelBins * 3 * d + 2 * tokens * d * 3 * d;
        forward += c.EncoderLayers * (2 * tokens * (4 * d * d + 2 * d * c.EncoderFfnDim) + chunks.Sum(ch => 4.0 * AudioLengths.AfterConv(ch) * AudioLengths.AfterConv(ch) * d));
        forward += 2 * AudioLengths.Tokens(frames) * d * c.OutputDim;
        return 3 * forward;
    }

    public static Result Vision(int depth, GridThw grid, int warmup, int steps, TextWriter log)
    {
        var config = VisionConfig(depth);
        using var encoder = new Qwen25OmniVisionEncoder(config, null, ScalarType.Float32);
        Tensor pixels = randn([grid.Patches, config.PatchDim], generator: new Generator(1));
        double seconds = Time(() => encoder.Forward(pixels, [grid]).square().mean(), warmup, steps, log);
        double gflop = VisionFlops(config, grid) / 1e9;
        return new Result("patches", grid.Patches * steps / seconds, gflop, seconds / steps, gflop * steps / seconds);
    }

    public static Result Audio(int layers, int frames, int warmup, int steps, TextWriter log)
    {
        var config = AudioConfig(layers);
        using var encoder = new Qwen25OmniAudioEncoder(config, null, ScalarType.Float32);
        Tensor mel = randn([config.NumMelBins, frames], generator: new Generator(2));
        double seconds = Time(() => encoder.Forward(mel, [frames]).square().mean(), warmup, steps, log);
        double gflop = AudioFlops(config, frames) / 1e9;
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
