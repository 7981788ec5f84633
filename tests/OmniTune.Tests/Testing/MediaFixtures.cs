using System.Diagnostics;
using SkiaSharp;

namespace OmniTune.Tests.Testing;

/// <summary>Media made in the tests: drawn images, synthesized tones, videos encoded with ffmpeg.</summary>
public static class MediaFixtures
{
    /// <summary>Writes a drawn picture (a red circle on blue) in the format of the extension (.png, .jpg, .webp, .bmp).</summary>
    public static string Image(string folder, string name, int width, int height, bool alpha = false)
    {
        using var surface = SKSurface.Create(new SKImageInfo(width, height, SKColorType.Rgba8888, alpha ? SKAlphaType.Unpremul : SKAlphaType.Opaque));
        SKCanvas canvas = surface.Canvas;
        canvas.Clear(alpha ? new SKColor(0, 0, 255, 128) : SKColors.Blue);
        using var paint = new SKPaint { Color = SKColors.Red, IsAntialias = true };
        canvas.DrawCircle(width / 2f, height / 2f, Math.Min(width, height) / 3f, paint);
        using SKImage image = surface.Snapshot();
        string extension = Path.GetExtension(name);
        SKEncodedImageFormat format = extension switch
        {
            ".jpg" or ".jpeg" => SKEncodedImageFormat.Jpeg,
            ".webp" => SKEncodedImageFormat.Webp,
            _ => SKEncodedImageFormat.Png,
        };
        using SKData data = image.Encode(format, 95) ?? throw new InvalidOperationException($"Skia cannot encode {format}");
        string path = Path.Combine(folder, name);
        if (extension is ".bmp" or ".gif")
        {
            // Skia encodes neither: convert a PNG with ffmpeg.
            string png = Path.Combine(folder, name + ".png");
            File.WriteAllBytes(png, data.ToArray());
            RunFFmpeg(["-nostdin", "-v", "error", "-y", "-i", png, path], name);
            File.Delete(png);
            return path;
        }
        File.WriteAllBytes(path, data.ToArray());
        return path;
    }

    /// <summary>
    /// A large black RGB PNG written row by row (never whole in memory); with <paramref name="rows"/> fewer than the
    /// height, only that many rows are stored: the header still claims the full size (how a decompression bomb looks
    /// before its pixels are read).
    /// </summary>
    public static string LargePng(string folder, string name, int width, int height, int? rows = null)
    {
        string path = Path.Combine(folder, name);
        using var file = File.Create(path);
        file.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header, width);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8;   // bit depth
        header[9] = 2;   // colour type RGB
        PngChunk(file, "IHDR", header);
        using (var compressed = new MemoryStream())
        {
            using (var zlib = new System.IO.Compression.ZLibStream(compressed, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
            {
                var row = new byte[1 + width * 3];   // filter byte 0, black pixels
                for (int y = 0; y < (rows ?? height); y++) zlib.Write(row);
            }
            PngChunk(file, "IDAT", compressed.ToArray());
        }
        PngChunk(file, "IEND", []);
        return path;
    }

    static void PngChunk(Stream stream, string type, byte[] data)
    {
        var length = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(length, data.Length);
        stream.Write(length);
        byte[] typeAndData = [.. System.Text.Encoding.ASCII.GetBytes(type), .. data];
        stream.Write(typeAndData);
        var crc = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(crc, System.IO.Hashing.Crc32.HashToUInt32(typeAndData));
        stream.Write(crc);
    }

    /// <summary>A sine tone as 16-bit PCM WAV.</summary>
    public static string Tone(string folder, string name, double seconds, double frequency = 440, int rate = 16000, int channels = 1)
    {
        int samples = (int)(seconds * rate);
        string path = Path.Combine(folder, name);
        using var writer = new BinaryWriter(File.Create(path));
        int dataBytes = samples * channels * 2;
        writer.Write("RIFF"u8); writer.Write(36 + dataBytes); writer.Write("WAVE"u8);
        writer.Write("fmt "u8); writer.Write(16); writer.Write((short)1); writer.Write((short)channels); writer.Write(rate);
        writer.Write(rate * channels * 2); writer.Write((short)(channels * 2)); writer.Write((short)16);
        writer.Write("data"u8); writer.Write(dataBytes);
        for (int i = 0; i < samples; i++)
        {
            short v = (short)(Math.Sin(2 * Math.PI * frequency * i / rate) * 12000);
            for (int c = 0; c < channels; c++) writer.Write(v);
        }
        return path;
    }

    /// <summary>Whether ffmpeg is installed (tests that need it report a clear failure otherwise).</summary>
    public static bool HasFFmpeg => File.Exists("/usr/bin/ffmpeg") || (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, "ffmpeg")));

    /// <summary>Encodes a test-pattern video (mpeg4) with an optional sine audio track (aac).</summary>
    public static string Video(string folder, string name, double seconds, int width = 128, int height = 96, int fps = 10, bool audio = true)
    {
        string path = Path.Combine(folder, name);
        var args = new List<string> { "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", $"testsrc=size={width}x{height}:rate={fps}:duration={seconds}" };
        if (audio) args.AddRange(["-f", "lavfi", "-i", $"sine=frequency=440:sample_rate=16000:duration={seconds}"]);
        args.AddRange(["-c:v", "mpeg4", "-q:v", "5"]);
        if (audio) args.AddRange(["-c:a", "aac", "-shortest"]);
        args.Add(path);
        RunFFmpeg(args, name);
        return path;
    }

    static void RunFFmpeg(IEnumerable<string> args, string name)
    {
        var start = new ProcessStartInfo("ffmpeg") { RedirectStandardError = true };
        foreach (string a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"ffmpeg failed to make {name}: {errors}");
    }
}
