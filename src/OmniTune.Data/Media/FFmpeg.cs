using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace OmniTune.Data.Media;

/// <summary>Runs the ffmpeg and ffprobe command-line tools (Debian package <c>ffmpeg</c>).</summary>
public static class FFmpeg
{
    /// <summary>Facts about a media file's first video and first audio stream.</summary>
    /// <param name="Width">Video width (0 without video).</param>
    /// <param name="Height">Video height.</param>
    /// <param name="FrameCount">Container frame count of the video stream (0 when unknown).</param>
    /// <param name="Duration">Video stream duration in seconds (container duration when the stream has none).</param>
    /// <param name="HasVideo">Whether a video stream exists.</param>
    /// <param name="HasAudio">Whether an audio stream exists.</param>
    /// <param name="SampleRate">The first audio stream's sample rate (0 without audio).</param>
    /// <param name="Channels">Its channels.</param>
    public sealed record Probe(int Width, int Height, long FrameCount, double Duration, bool HasVideo, bool HasAudio, int SampleRate = 0, int Channels = 0);

    /// <summary>Probes by file (path, length, last write): a video is probed when its sample is encoded and again each time it is decoded.</summary>
    static readonly System.Collections.Concurrent.ConcurrentDictionary<(string Path, long Length, DateTime Written), Probe> Probes = new();

    /// <summary>
    /// Reads stream facts with ffprobe — once per file and process (an ffprobe process costs more than the facts: it was a
    /// sixth of the CPU of a packed training run on the demo mix, which decodes each video again at every epoch).
    /// </summary>
    public static Probe ProbeFile(string path)
    {
        var file = new FileInfo(path);
        if (!file.Exists) throw new MediaException(path, "file not found");
        var key = (file.FullName, file.Length, file.LastWriteTimeUtc);
        if (Probes.TryGetValue(key, out Probe? known)) return known;
        if (Probes.Count >= 100_000) Probes.Clear();   // bounded: a few MB of facts
        return Probes[key] = ProbeUncached(path);
    }

    static Probe ProbeUncached(string path)
    {
        byte[] output = Run("ffprobe", ["-v", "error", "-show_entries", "stream=codec_type,width,height,nb_frames,duration,sample_rate,channels:format=duration", "-of", "json", path], path);
        using var document = JsonDocument.Parse(output);
        JsonElement? video = null, audio = null;
        foreach (JsonElement stream in document.RootElement.GetProperty("streams").EnumerateArray())
        {
            string type = stream.TryGetProperty("codec_type", out var t) ? t.GetString() ?? "" : "";
            if (type == "video" && video is null) video = stream;
            if (type == "audio" && audio is null) audio = stream;
        }
        double formatDuration = document.RootElement.TryGetProperty("format", out var f) ? Number(f, "duration") : 0;
        var (rate, channels) = audio is JsonElement a ? ((int)Number(a, "sample_rate"), (int)Number(a, "channels")) : (0, 0);
        if (video is not JsonElement v) return new Probe(0, 0, 0, formatDuration, false, audio is not null, rate, channels);
        double duration = Number(v, "duration");
        return new Probe((int)Number(v, "width"), (int)Number(v, "height"), (long)Number(v, "nb_frames"),
            duration > 0 ? duration : formatDuration, true, audio is not null, rate, channels);
    }

    static double Number(JsonElement element, string key)
    {
        if (!element.TryGetProperty(key, out var value)) return 0;
        if (value.ValueKind == JsonValueKind.Number) return value.GetDouble();
        return double.TryParse(value.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? d : 0;
    }

    /// <summary>
    /// Decodes the first audio stream to mono float32 samples at <paramref name="sampleRate"/> the way librosa.load(sr=…)
    /// does, which is MindSpeed-MM's audio path: decode at the file's own rate, average the channels, resample with
    /// libsoxr's HQ recipe, and cut or pad to ⌈n · sampleRate / rate⌉ samples. (ffmpeg's own <c>-ar</c> resampler gives
    /// other values and, on some files, another length, so another audio token count.)
    /// </summary>
    public static float[] DecodeAudio(string path, int sampleRate)
    {
        Probe probe = ProbeFile(path);
        if (!probe.HasAudio) throw new MediaException(path, "has no audio stream");
        var (rate, channels) = (probe.SampleRate, probe.Channels);
        if (rate <= 0 || channels <= 0) throw new MediaException(path, $"reports {channels} channel(s) at {rate} Hz");
        byte[] raw = Run("ffmpeg", ["-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-f", "f32le", "-"], path);
        var interleaved = new float[raw.Length / 4];
        Buffer.BlockCopy(raw, 0, interleaved, 0, interleaved.Length * 4);
        float[] mono = interleaved;
        if (channels > 1)
        {
            mono = new float[interleaved.Length / channels];
            for (int i = 0; i < mono.Length; i++)
            {
                float sum = 0;
                for (int c = 0; c < channels; c++) sum += interleaved[i * channels + c];
                mono[i] = sum / channels;
            }
        }
        return Soxr.Resample(mono, rate, sampleRate);
    }

    /// <summary>
    /// Decodes the first video stream as RGB, calling <paramref name="onFrame"/> with each frame and its ordinal — every
    /// frame, or only those of <paramref name="only"/>: ffmpeg then still decodes every frame but converts and sends only
    /// those (its <c>select</c> filter counts frames as the ordinals here do), instead of piping a full RGB copy of each.
    /// </summary>
    public static void DecodeVideoFrames(string path, int width, int height, Action<int, RgbImage> onFrame, IReadOnlyCollection<int>? only = null)
    {
        int[]? ordinals = only?.Distinct().Order().ToArray();
        var start = new ProcessStartInfo(Tool("ffmpeg"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { "-nostdin", "-v", "error", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough" })
            start.ArgumentList.Add(a);
        if (ordinals is not null)
        {
            start.ArgumentList.Add("-vf");
            start.ArgumentList.Add("select=" + string.Join("+", ordinals.Select(o => $"eq(n\\,{o.ToString(CultureInfo.InvariantCulture)})")));
        }
        foreach (string a in new[] { "-f", "rawvideo", "-pix_fmt", "rgb24", "-" })
            start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new MediaException(path, "could not start ffmpeg");
        var errors = process.StandardError.ReadToEndAsync();
        int frameBytes = width * height * 3, ordinal = 0;
        Stream stdout = process.StandardOutput.BaseStream;
        while (true)
        {
            var buffer = new byte[frameBytes];
            int read = 0;
            while (read < frameBytes)
            {
                int n = stdout.Read(buffer, read, frameBytes - read);
                if (n == 0) break;
                read += n;
            }
            if (read < frameBytes) break;
            if (ordinals is not null && ordinal >= ordinals.Length) throw new MediaException(path, "ffmpeg sent more frames than were selected");
            onFrame(ordinals is null ? ordinal : ordinals[ordinal], new RgbImage(width, height, buffer));
            ordinal++;
        }
        process.WaitForExit();
        if (process.ExitCode != 0) throw new MediaException(path, $"ffmpeg could not decode the video: {FirstLine(errors.Result)}");
        if (ordinal == 0) throw new MediaException(path, "the video has no decodable frames");
    }

    static byte[] Run(string tool, IReadOnlyList<string> arguments, string path)
    {
        var start = new ProcessStartInfo(Tool(tool))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in arguments) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new MediaException(path, $"could not start {tool}");
        var errors = process.StandardError.ReadToEndAsync();
        using var output = new MemoryStream();
        process.StandardOutput.BaseStream.CopyTo(output);
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            string all = errors.Result;
            if (all.Contains("matches no streams", StringComparison.Ordinal))
                throw new MediaException(path, "has no audio stream");
            throw new MediaException(path, $"{tool} could not read it: {FirstLine(all)}");
        }
        return output.ToArray();
    }

    static string Tool(string name)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':'))
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        throw new MediaException(name, $"{name} is not installed (Debian: apt-get install ffmpeg)");
    }

    static string FirstLine(string text)
    {
        string line = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? "unknown error";
        return line.Length > 300 ? line[..300] : line;
    }
}
