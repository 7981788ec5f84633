using System.Diagnostics;
using OmniTune.Data.Media;
using OmniTune.Data.Text;
using OmniTune.Models.Qwen25Omni.Tiny;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>Throughput of the processor: images/s, audio seconds/s, video seconds/s, tokenizer tokens/s.</summary>
static class PreprocessingBenchmark
{
    public static void Run(TextWriter log)
    {
        string dir = Path.Combine(Path.GetTempPath(), "omnitune-bench-media");
        Directory.CreateDirectory(dir);
        var settings = new ProcessorSettings();
        string image = Make(dir, "image.png", ["-f", "lavfi", "-i", "testsrc=size=640x480", "-frames:v", "1"]);
        string audio = Make(dir, "audio.wav", ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=30", "-ac", "2"]);
        string video = Make(dir, "video.mp4", ["-f", "lavfi", "-i", "testsrc=size=640x360:rate=25:duration=10", "-f", "lavfi", "-i", "sine=duration=10",
            "-c:v", "mpeg4", "-q:v", "4", "-c:a", "aac", "-shortest"]);

        double imageSeconds = Time(() => { using var s = NewDisposeScope(); ImagePreprocessor.Process(image, settings); }, 20);
        log.WriteLine($"RESULT preprocess-image: {1 / imageSeconds:F1} images/s (640×480 PNG → decode, LF regularise, smart_resize, Pillow bicubic, patches)");
        double audioSeconds = Time(() => { using var s = NewDisposeScope(); WhisperFeatures.FromFile(audio, settings); }, 5);
        log.WriteLine($"RESULT preprocess-audio: {30 / audioSeconds:F1} audio s/s (30 s 44.1 kHz stereo WAV → ffmpeg 16 kHz mono → log-mel)");
        double videoSeconds = Time(() => { using var s = NewDisposeScope(); VideoPreprocessor.Process(video, settings); }, 3);
        log.WriteLine($"RESULT preprocess-video: {10 / videoSeconds:F1} video s/s (10 s 640×360 25 fps mpeg4 → 20 frames → grid (10,14,24))");

        string shared = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../../shared/assets/qwen2-tokenizer"));
        string which = Directory.Exists(shared) ? "real Qwen2 vocabulary" : "tiny vocabulary (../shared absent)";
        if (!Directory.Exists(shared))
        {
            shared = Path.Combine(dir, "tiny-tokenizer");
            Directory.CreateDirectory(shared);
            TinyTokenizerBuilder.Write(TinyTokenizerBuilder.Build(), shared);
        }
        var tokenizer = Qwen2Tokenizer.Load(shared);
        string corpus = string.Concat(Enumerable.Range(0, 4000).Select(i =>
            $"Sample {i}: The quick brown fox jumps over the lazy dog, while résumé café naïve 你好世界 {i * 37 % 1000} times.\n"));
        int tokens = tokenizer.Encode(corpus).Count;
        double tokenizeSeconds = Time(() => tokenizer.Encode(corpus), 5);
        log.WriteLine($"RESULT tokenizer: {tokens / tokenizeSeconds / 1e6:F2} M tokens/s on one thread ({which}, {tokens} tokens per pass)");
    }

    static double Time(Action action, int repeats)
    {
        action();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < repeats; i++) action();
        return clock.Elapsed.TotalSeconds / repeats;
    }

    static string Make(string dir, string name, string[] args)
    {
        string path = Path.Combine(dir, name);
        if (File.Exists(path)) return path;
        var start = new ProcessStartInfo("ffmpeg") { RedirectStandardError = true };
        foreach (string a in new[] { "-nostdin", "-v", "error", "-y" }.Concat(args).Append(path)) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"ffmpeg: {errors}");
        return path;
    }
}
