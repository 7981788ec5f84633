using OmniTune.Data.Media;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Data;

/// <summary>A fact skipped, with the reason shown, unless Debian's python3 with Pillow is installed (python3-pil).</summary>
public sealed class PillowFactAttribute : FactAttribute
{
    public PillowFactAttribute()
    {
        if (!PillowParityTests.PillowAvailable) Skip = "Pillow is not installed (apt-get install python3-pil): cannot compare the bicubic resize with it";
    }
}

/// <summary>Compares <see cref="PillowBicubic"/> byte for byte with Pillow's own <c>Image.resize(BICUBIC)</c>.</summary>
public sealed class PillowParityTests
{
    const string Python = "/usr/bin/python3";

    internal static bool PillowAvailable { get; } = File.Exists(Python) && RunPython("import PIL", out _) == 0;

    static int RunPython(string code, out string output)
    {
        var (exit, stdout, stderr) = ChildProcess.Run(Python, ["-c", code]);
        output = stdout + stderr;
        return exit;
    }

    [PillowFact]
    public void Bicubic_resizes_equal_pillow_byte_for_byte()
    {
        using var dir = new TempFolder();
        var random = new Random(5);
        var pixels = new byte[173 * 91 * 3];
        random.NextBytes(pixels);
        // Smooth areas and edges as well as noise: draw a few bands over the noise.
        for (int y = 0; y < 91; y++)
        {
            for (int x = 0; x < 60; x++) pixels[(y * 173 + x) * 3 + 1] = (byte)(x * 4);
        }
        var image = new RgbImage(173, 91, pixels);
        string raw = dir.File("in.rgb");
        File.WriteAllBytes(raw, pixels);
        (int W, int H)[] sizes = [(86, 45), (340, 200), (173, 28), (56, 91), (1000, 13), (29, 301)];
        foreach (var (w, h) in sizes)
        {
            string output = dir.File($"out-{w}x{h}.rgb");
            int code = RunPython($"from PIL import Image; im = Image.frombytes('RGB', (173, 91), open('{raw}', 'rb').read()); " +
                                 $"open('{output}', 'wb').write(im.resize(({w}, {h}), Image.BICUBIC).tobytes())", out string message);
            Assert.True(code == 0, message);
            byte[] expected = File.ReadAllBytes(output);
            byte[] actual = PillowBicubic.Resize(image, w, h).Pixels;
            int differing = expected.Zip(actual).Count(p => p.First != p.Second);
            Assert.True(differing == 0, $"{w}×{h}: {differing} of {expected.Length} bytes differ from Pillow");
        }
    }
    [PillowFact]
    public void Nearest_resizes_equal_pillow_byte_for_byte()
    {
        using var dir = new TempFolder();
        var random = new Random(7);
        var pixels = new byte[173 * 91 * 3];
        random.NextBytes(pixels);
        var image = new RgbImage(173, 91, pixels);
        string raw = dir.File("in.rgb");
        File.WriteAllBytes(raw, pixels);
        foreach (var (w, h) in new[] { (86, 45), (340, 200), (57, 30), (173, 28), (29, 301) })
        {
            string output = dir.File($"nearest-{w}x{h}.rgb");
            int code = RunPython($"from PIL import Image; im = Image.frombytes('RGB', (173, 91), open('{raw}', 'rb').read()); " +
                                 $"open('{output}', 'wb').write(im.resize(({w}, {h}), Image.NEAREST).tobytes())", out string message);
            Assert.True(code == 0, message);
            byte[] expected = File.ReadAllBytes(output);
            byte[] actual = PillowNearest.Resize(image, w, h).Pixels;
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"{w}×{h}: {expected.Zip(actual).Count(p => p.First != p.Second)} bytes differ from Pillow");
        }
    }

    [Fact]
    public void Video_frames_are_pre_resized_with_nearest_as_mindspeed_does_and_images_with_bicubic()
    {
        using var dir = new TempFolder();
        string video = MediaFixtures.Video(dir.Path, "bars.mp4", seconds: 1, width: 160, height: 120, fps: 4, audio: false);
        var settings = new ProcessorSettings { VideoMaxPixels = 64 * 48, ProcessorVideoMinPixels = 56 * 56 };
        VisionInput processed = VideoPreprocessor.Process(video, settings);
        var frames = new List<RgbImage>();
        FFmpeg.DecodeVideoFrames(video, 160, 120, (_, frame) => frames.Add(frame));
        Assert.Equal(PillowNearest.Resize(frames[0], 64, 48).Pixels, ImagePreprocessor.Regularize(frames[0], 64 * 48, 0, nearest: true).Pixels);
        Assert.Equal(PillowBicubic.Resize(frames[0], 64, 48).Pixels, ImagePreprocessor.Regularize(frames[0], 64 * 48, 0).Pixels);
        // The processed video's patches are those of its sampled frames shrunk with nearest, not with bicubic.
        var probe = FFmpeg.ProbeFile(video);
        var sampled = VideoPreprocessor.SampleIndices(probe.FrameCount, probe.Duration, settings.VideoFps, settings.VideoMaxLen).Select(i => frames[i]).ToList();
        if (sampled.Count % 2 == 1) sampled.Add(sampled[^1]);
        TorchSharp.torch.Tensor Rows(Func<RgbImage, RgbImage> shrink) =>
            VisionPatches.From(sampled.Select(f => ImagePreprocessor.Fit(shrink(f), settings.ProcessorVideoMinPixels, settings.ProcessorVideoMaxPixels, settings, video)).ToList(), settings).Rows;
        using var withNearest = Rows(f => PillowNearest.Resize(f, 64, 48));
        using var withBicubic = Rows(f => PillowBicubic.Resize(f, 64, 48));
        Assert.True(processed.PixelValues.shape.SequenceEqual(withNearest.shape) && processed.PixelValues.eq(withNearest).all().item<bool>(), "the video's patches are not those of nearest-shrunk frames");
        Assert.False(processed.PixelValues.eq(withBicubic).all().item<bool>());
    }

}

/// <summary>Compares SkiaSharp's JPEG/PNG decoding with Pillow's.</summary>
public sealed class DecoderParityTests
{
    [PillowFact]
    public void Png_and_jpeg_decode_to_the_same_bytes_as_pillow()
    {
        using var dir = new TempFolder();
        var files = new List<string> { MediaFixtures.Image(dir.Path, "a.png", 97, 64), MediaFixtures.Image(dir.Path, "b.jpg", 97, 64) };
        string demo = Path.Combine(RepositoryPaths.Shared, "assets/llamafactory-demo/mllm_demo_data/1.jpg");
        if (File.Exists(demo)) files.Add(demo);
        foreach (string file in files)
        {
            string raw = dir.File(Path.GetFileName(file) + ".rgb");
            var (code, _, error) = ChildProcess.Run("/usr/bin/python3", ["-c", $"from PIL import Image; open('{raw}', 'wb').write(Image.open('{file}').convert('RGB').tobytes())"]);
            Assert.True(code == 0, error);
            byte[] expected = File.ReadAllBytes(raw), actual = ImageDecoder.Decode(file).Pixels;
            Assert.Equal(expected.Length, actual.Length);
            int maxDiff = expected.Zip(actual).Max(p => Math.Abs(p.First - p.Second));
            int differing = expected.Zip(actual).Count(p => p.First != p.Second);
            Console.WriteLine($"decoder parity {Path.GetFileName(file)}: max |diff| {maxDiff}, {differing} of {expected.Length} bytes differ");
            Assert.True(maxDiff == 0, $"{file}: max |diff| {maxDiff}, {differing} bytes differ");
        }
    }

}
