using System.Diagnostics;
using System.Text.Json.Nodes;
using SkiaSharp;

namespace OmniTune.Cli.Demo;

/// <summary>One demo conversation: media, question, expected answer.</summary>
/// <param name="Question">User text with placeholders.</param>
/// <param name="Answer">What the model should learn to say.</param>
/// <param name="Images">Image paths (relative to the data folder).</param>
/// <param name="Videos">Video paths (relative).</param>
/// <param name="Audios">Audio paths (relative).</param>
public sealed record DemoSample(string Question, string Answer, string[] Images, string[] Videos, string[] Audios);

/// <summary>
/// Synthesizes a small multimodal dataset whose answers depend on the media: drawn shapes (colour and form), tones of
/// three pitches, two short videos with their own audio tracks, and two text-only questions.
/// </summary>
public static class DemoDataset
{
    /// <summary>
    /// A MindSpeed-MM data.json for the samples <see cref="Write"/> put in <paramref name="data"/> (the demo's media
    /// settings: audio in video, 512² images, 128² video frames), with <paramref name="model"/> as model_name_or_path.
    /// </summary>
    public static void WriteDataJson(string path, string model, string data, string cache) =>
        File.WriteAllText(path, System.Text.Json.JsonSerializer.Serialize(new
        {
            dataset_param = new
            {
                dataset_type = "huggingface",
                preprocess_parameters = new { model_name_or_path = model, use_audio_in_video = true, image_max_pixels = 262144, video_max_pixels = 16384 },
                basic_parameters = new { template = "qwen2_omni", dataset_dir = data, dataset = Path.Combine(data, "demo.json"), cache_dir = cache },
                attr = new { images = "images", videos = "videos", audios = "audios", messages = "messages", role_tag = "role", content_tag = "content", user_tag = "user", assistant_tag = "assistant" },
            },
            dataloader_param = new { dataloader_mode = "sampler", drop_last = true, shuffle = true },
        }));

    /// <summary>Writes media and <c>demo.json</c> (mllm format) into <paramref name="folder"/>; returns the samples.</summary>
    public static List<DemoSample> Write(string folder)
    {
        string media = Path.Combine(folder, "media");
        Directory.CreateDirectory(media);
        var samples = new List<DemoSample>();
        foreach (var (shape, color, colorName) in new[] { ("circle", SKColors.Red, "red"), ("square", SKColors.Blue, "blue"), ("triangle", SKColors.Green, "green"), ("circle", SKColors.Gold, "yellow") })
        {
            string name = $"{colorName}-{shape}.png";
            DrawShape(Path.Combine(media, name), shape, color);
            samples.Add(new DemoSample("<image>What do you see?", $"A {colorName} {shape}.", [$"media/{name}"], [], []));
        }
        foreach (var (hz, pitch) in new[] { (220, "low"), (660, "middle"), (1980, "high") })
        {
            string name = $"tone-{hz}.wav";
            FFmpeg(["-f", "lavfi", "-i", $"sine=frequency={hz}:sample_rate=16000:duration=1", Path.Combine(media, name)]);
            samples.Add(new DemoSample("<audio>Is this tone low, middle or high?", $"A {pitch} tone.", [], [], [$"media/{name}"]));
        }
        FFmpeg(["-f", "lavfi", "-i", "testsrc=size=112x84:rate=8:duration=2", "-f", "lavfi", "-i", "sine=frequency=880:sample_rate=16000:duration=2",
            "-c:v", "mpeg4", "-q:v", "5", "-c:a", "aac", "-shortest", Path.Combine(media, "bars-beep.mp4")]);
        FFmpeg(["-f", "lavfi", "-i", "color=c=red:size=112x84:rate=8:duration=2", "-f", "lavfi", "-i", "sine=frequency=150:sample_rate=16000:duration=2",
            "-c:v", "mpeg4", "-q:v", "5", "-c:a", "aac", "-shortest", Path.Combine(media, "red-hum.mp4")]);
        // The sound of a video is the video file listed again as its audio (LLaMA-Factory's way; <video><audio> interleave with use_audio_in_video).
        samples.Add(new DemoSample("<video><audio>What happens in this clip?", "Colour bars with a beep.", [], ["media/bars-beep.mp4"], ["media/bars-beep.mp4"]));
        samples.Add(new DemoSample("<video><audio>What happens in this clip?", "A red screen with a hum.", [], ["media/red-hum.mp4"], ["media/red-hum.mp4"]));
        samples.Add(new DemoSample("What is OmniTune?", "A .NET tool that fine-tunes Qwen2.5-Omni.", [], [], []));
        samples.Add(new DemoSample("Say hello.", "Hello!", [], [], []));

        var rows = new JsonArray();
        foreach (DemoSample s in samples)
        {
            rows.Add(new JsonObject
            {
                ["messages"] = new JsonArray(
                    new JsonObject { ["role"] = "user", ["content"] = s.Question },
                    new JsonObject { ["role"] = "assistant", ["content"] = s.Answer }),
                ["images"] = new JsonArray(s.Images.Select(p => (JsonNode)p).ToArray()),
                ["videos"] = new JsonArray(s.Videos.Select(p => (JsonNode)p).ToArray()),
                ["audios"] = new JsonArray(s.Audios.Select(p => (JsonNode)p).ToArray()),
            });
        }
        File.WriteAllText(Path.Combine(folder, "demo.json"), rows.ToJsonString());
        return samples;
    }

    static void DrawShape(string path, string shape, SKColor color)
    {
        using var surface = SKSurface.Create(new SKImageInfo(112, 112));
        surface.Canvas.Clear(SKColors.White);
        using var paint = new SKPaint { Color = color, IsAntialias = true };
        switch (shape)
        {
            case "circle":
                surface.Canvas.DrawCircle(56, 56, 40, paint);
                break;
            case "square":
                surface.Canvas.DrawRect(18, 18, 76, 76, paint);
                break;
            default:
                using (var triangle = new SKPath())
                {
                    triangle.MoveTo(56, 12);
                    triangle.LineTo(100, 96);
                    triangle.LineTo(12, 96);
                    triangle.Close();
                    surface.Canvas.DrawPath(triangle, paint);
                }
                break;
        }
        using SKImage image = surface.Snapshot();
        using SKData data = image.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(path, data.ToArray());
    }

    static void FFmpeg(IEnumerable<string> args)
    {
        var start = new ProcessStartInfo("ffmpeg") { RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { "-nostdin", "-v", "error", "-y" }.Concat(args)) start.ArgumentList.Add(a);
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new FileNotFoundException("ffmpeg is not installed (Debian: apt-get install ffmpeg; bash tools/setup.sh does it)", "ffmpeg", e);
        }
        using (process)
        {
            string errors = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0) throw new InvalidOperationException($"ffmpeg could not make demo media: {errors}");
        }
    }
}
