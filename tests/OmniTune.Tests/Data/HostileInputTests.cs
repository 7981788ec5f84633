using System.Text.Json;
using OmniTune.Data.Datasets;
using OmniTune.Data.Media;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Data;

/// <summary>Inputs built to hurt: decompression bombs, images that only fail when decoded, dataset files of the wrong shape.</summary>
public sealed class HostileInputTests
{
    [Fact]
    public void An_image_above_the_decode_limit_is_refused_from_its_header_naming_the_file_and_the_limit()
    {
        using var dir = new TempFolder();
        // 16000 × 16000 (256 MP) as its header claims; only a few rows are stored, as in a bomb.
        string bomb = MediaFixtures.LargePng(dir.Path, "bomb.png", 16000, 16000, rows: 4);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.Throws<MediaException>(() => ImageDecoder.Decode(bomb));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16 << 20, "the refusal must come before any pixel buffer is allocated");
        Assert.Equal(bomb, error.FilePath);
        Assert.Contains("16000×16000", error.Message);
        Assert.Contains("decode limit of 178,956,970", error.Message);
        Assert.Contains("image_decode_max_pixels", error.Message);
        // The limit is a setting: data.json's preprocess_parameters.image_decode_max_pixels.
        string small = MediaFixtures.Image(dir.Path, "small.png", 64, 64);
        var settings = new ProcessorSettings { ImageDecodeMaxPixels = 1000 };
        Assert.Contains("decode limit of 1,000", Assert.Throws<MediaException>(() => ImagePreprocessor.Process(small, settings)).Message);
    }

    [Fact]
    public void Decoding_a_large_image_peaks_near_its_rgb_size()
    {
        using var dir = new TempFolder();
        const int side = 6000;
        long rgb = 3L * side * side;   // 108 MB
        string png = MediaFixtures.LargePng(dir.Path, "large.png", side, side);
        long peak = ResidentMemory.ResetPeak();
        long managedBefore = GC.GetAllocatedBytesForCurrentThread();
        RgbImage image = ImageDecoder.Decode(png);
        long managed = GC.GetAllocatedBytesForCurrentThread() - managedBefore;
        long grown = ResidentMemory.Peak() - peak;
        Assert.Equal((side, side), (image.Width, image.Height));
        Assert.True(managed < rgb + new FileInfo(png).Length + (8 << 20), $"{managed >> 20} MiB allocated for a {rgb >> 20} MiB image");
        if (grown >= 0) Assert.True(grown < 2 * rgb, $"peak resident memory grew by {grown >> 20} MiB decoding a {rgb >> 20} MiB image");
        GC.KeepAlive(image);
    }

    [Fact]
    public void A_truncated_jpeg_is_rejected_when_the_dataset_is_encoded_as_training_would_reject_it()
    {
        using var dir = new TempFolder();
        string jpeg = MediaFixtures.Image(dir.Path, "cut.jpg", 256, 192);
        byte[] bytes = File.ReadAllBytes(jpeg);
        File.WriteAllBytes(jpeg, bytes[..(bytes.Length * 2 / 3)]);   // header intact, scan cut
        var settings = new ProcessorSettings();
        var decodeError = Assert.Throws<MediaException>(() => ImagePreprocessor.Process(jpeg, settings));   // what training does
        var summaryError = Assert.Throws<MediaException>(() => MediaSummary.ImageGrid(jpeg, settings));      // what encoding (and data check) does
        Assert.Equal(decodeError.Message, summaryError.Message);
        Assert.Contains("truncated", summaryError.Message);
    }

    [Theory]
    [InlineData("one-line.json", """{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}""")]
    [InlineData("pretty.json", "{\n  \"data\": [\n    {\"messages\": []}\n  ]\n}\n")]
    public void A_dataset_file_whose_top_level_is_an_object_is_refused_naming_the_file(string name, string text)
    {
        using var dir = new TempFolder();
        string path = dir.File(name);
        File.WriteAllText(path, text);
        var error = Assert.Throws<InvalidDataException>(() => DatasetFileReader.Rows(path).ToList());
        Assert.Contains(path, error.Message);
        Assert.Contains("top level is one JSON object", error.Message);
    }

    [Fact]
    public void Json_lines_files_including_a_single_line_one_still_read_as_samples()
    {
        using var dir = new TempFolder();
        string single = dir.File("one.jsonl"), lines = dir.File("many.json");
        File.WriteAllText(single, """{"a": 1}""" + "\n");
        File.WriteAllText(lines, "{\"a\": 1}\n{\"a\": 2}\n");
        Assert.Single(DatasetFileReader.Rows(single));
        Assert.Equal([1, 2], DatasetFileReader.Rows(lines).Select(r => r.GetProperty("a").GetInt32()));
        string array = dir.File("array.json");
        File.WriteAllText(array, JsonSerializer.Serialize(new[] { new { a = 3 } }));
        Assert.Equal(3, DatasetFileReader.Rows(array).Single().GetProperty("a").GetInt32());
    }
}
