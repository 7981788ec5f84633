using System.Diagnostics;
using OmniTune.Checkpoints.Conversion;
using OmniTune.Core.Native;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Tiny;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>hf → mm → hf on a 7B-shaped checkpoint with fewer layers: throughput and peak RSS (bounded-memory check).</summary>
static class ConversionBenchmark
{
    public static void Run(int textLayers, TextWriter log)
    {
        string dir = Path.Combine(Path.GetTempPath(), "omnitune-bench-convert");
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        string hf = Path.Combine(dir, "hf"), mm = Path.Combine(dir, "mm"), back = Path.Combine(dir, "back");
        Directory.CreateDirectory(hf);
        var seven = new Qwen25OmniThinkerConfig();
        var config = new Qwen25OmniConfig
        {
            Thinker = seven with
            {
                Text = seven.Text with { NumHiddenLayers = textLayers },
                Vision = seven.Vision with { Depth = 2, FullAttBlockIndexes = [1] },
                Audio = seven.Audio with { EncoderLayers = 2 },
            },
        };
        Qwen25OmniConfigLoader.Save(config, hf);
        var clock = Stopwatch.StartNew();
        TinyQwen25Omni.WriteRandomWeights(Path.Combine(hf, "model.safetensors"), config.Thinker, seed: 1, ScalarType.BFloat16);
        long bytes = new FileInfo(Path.Combine(hf, "model.safetensors")).Length;
        log.WriteLine($"synthesized a 7B-shaped thinker with {textLayers} text, 2 ViT, 2 audio layers: {bytes / 1e9:F2} GB bf16 in {clock.Elapsed.TotalSeconds:F0} s");
        GC.Collect();
        ProcessMemory.ResetPeak();
        long before = ProcessMemory.Rss();
        clock.Restart();
        using (var source = new HfTensorSource(hf))
            CheckpointConverter.ToMm(source, new ParallelLayout([[textLayers - 1, 1]], [[2, 0]], [[2, 0]], TpSize: 2), mm);
        double toMm = clock.Elapsed.TotalSeconds;
        long peakToMm = ProcessMemory.Peak() - before;
        ProcessMemory.ResetPeak();
        clock.Restart();
        using (var source = new MmCheckpoint(mm)) CheckpointConverter.ToHf(source, back, hf);
        double toHf = clock.Elapsed.TotalSeconds;
        long peakToHf = ProcessMemory.Peak() - before;
        log.WriteLine($"RESULT convert hf→mm (TP 2, PP 2): {bytes / 1e6 / toMm:F0} MB/s, peak RSS +{peakToMm >> 20} MiB for a {bytes >> 20} MiB checkpoint");
        log.WriteLine($"RESULT convert mm→hf: {bytes / 1e6 / toHf:F0} MB/s, peak RSS +{peakToHf >> 20} MiB (largest tensor: the 152064×3584 embedding, {152064L * 3584 * 2 >> 20} MiB)");
        Directory.Delete(dir, recursive: true);
    }
}
