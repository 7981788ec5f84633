using OmniTune.Data.Media;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Data;

public sealed class ImagePreprocessingTests
{
    static readonly ProcessorSettings Settings = new();

    [Theory]
    [InlineData(561, 278, 3136, 1_003_520, 560, 280)]
    [InlineData(1024, 1024, 3136, 1_003_520, 980, 980)]
    [InlineData(480, 640, 3136, 12_845_056, 476, 644)]
    [InlineData(1080, 1920, 100_352, 602_112, 560, 1008)]
    [InlineData(866, 1300, 100_352, 602_112, 616, 924)]
    public void Smart_resize_matches_the_reference_examples(int h, int w, long min, long max, int eh, int ew) =>
        Assert.Equal((eh, ew), SmartResize.Compute(h, w, 28, min, max));

    [Fact]
    public void Pillow_bicubic_matches_a_hand_computed_downscale_and_keeps_constant_images_constant()
    {
        // 4×1 → 2×1: weights K(−0.25), K(0.25), K(0.75), K(1.25) over pixels 0, 100, 200, 255 (computed by hand) → 60.
        var row = new RgbImage(4, 1, [0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255]);
        Assert.Equal(60, PillowBicubic.Resize(row, 2, 1).Pixels[0]);
        var solid = RgbImage.Solid(37, 23, 17, 130, 250);
        var resized = PillowBicubic.Resize(solid, 101, 9);
        Assert.All(resized.Pixels.Chunk(3), p => Assert.Equal([17, 130, 250], p));
    }

    [Theory]
    [InlineData(32, 32, 1, 4, 4)]
    [InlineData(64, 64, 1, 4, 4)]
    [InlineData(300, 168, 1, 12, 22)]
    [InlineData(300, 199, 1, 14, 22)]
    [InlineData(4000, 3000, 1, 48, 64)]
    [InlineData(1000, 10, 1, 2, 72)]
    public void Image_grids_follow_llama_factory_regularisation_and_smart_resize(int width, int height, int t, int gh, int gw)
    {
        var image = RgbImage.Solid(width, height, 200, 100, 50);
        VisionInput input = ImagePreprocessor.Process(image, Settings, "solid");
        Assert.Equal(new GridThw(t, gh, gw), input.Grid);
        Assert.Equal([(long)t * gh * gw, 1176], input.PixelValues.shape);
    }

    [Fact]
    public void Pixel_values_are_clip_normalised_and_duplicated_over_the_temporal_patch()
    {
        var input = ImagePreprocessor.Process(RgbImage.Solid(56, 56, 255, 0, 128), Settings, "solid");
        Tensor row = input.PixelValues[0];   // [C=3][T=2][14][14]
        float Expected(int c, byte v) => ((float)(v * (1.0 / 255)) - Settings.ImageMean[c]) / Settings.ImageStd[c];
        Assert.Equal(Expected(0, 255), row[0].item<float>(), 5);
        Assert.Equal(Expected(1, 0), row[392].item<float>(), 5);
        Assert.Equal(Expected(2, 128), row[784].item<float>(), 5);
        Assert.Equal(row.narrow(0, 0, 196).data<float>().ToArray(), row.narrow(0, 196, 196).data<float>().ToArray());
    }

    [Fact]
    public void Patch_rows_follow_the_merge_block_order()
    {
        // A 56×56 image whose red channel encodes the 14-px patch row and column: patch (r, c) has red = 10·r + c.
        var pixels = new byte[56 * 56 * 3];
        for (int y = 0; y < 56; y++)
        {
            for (int x = 0; x < 56; x++) pixels[(y * 56 + x) * 3] = (byte)(10 * (y / 14) + (x / 14));
        }
        var input = ImagePreprocessor.Process(new RgbImage(56, 56, pixels), Settings, "pattern");
        float Red(long row) => (input.PixelValues[row, 0].item<float>() * Settings.ImageStd[0] + Settings.ImageMean[0]) * 255f;
        int[] expected = [0, 1, 10, 11, 2, 3, 12, 13, 20, 21, 30, 31, 22, 23, 32, 33];
        for (int i = 0; i < 16; i++) Assert.Equal(expected[i], (int)Math.Round(Red(i)));
    }

    [Theory]
    [InlineData("a.png")]
    [InlineData("a.jpg")]
    [InlineData("a.webp")]
    [InlineData("a.bmp")]
    [InlineData("a.gif")]
    public void Drawn_images_in_every_format_decode_to_their_size(string name)
    {
        using var dir = new TempFolder();
        string path = MediaFixtures.Image(dir.Path, name, 90, 60);
        RgbImage image = ImageDecoder.Decode(path);
        Assert.Equal((90, 60), (image.Width, image.Height));
        int center = (30 * 90 + 45) * 3;
        Assert.True(image.Pixels[center] > 200 && image.Pixels[center + 2] < 60, "the centre should be red");
    }

    [Fact]
    public void Alpha_is_dropped_like_pillows_rgb_conversion()
    {
        using var dir = new TempFolder();
        RgbImage image = ImageDecoder.Decode(MediaFixtures.Image(dir.Path, "a.png", 40, 40, alpha: true));
        Assert.Equal([0, 0, 255], image.Pixels[..3]);
    }

    [Fact]
    public void Bad_images_give_errors_naming_the_file_and_the_reason()
    {
        using var dir = new TempFolder();
        string missing = dir.File("missing.jpg");
        Assert.Equal("image file not found", Assert.Throws<MediaException>(() => ImageDecoder.Decode(missing)).Reason);
        string corrupt = dir.File("corrupt.jpg");
        File.WriteAllBytes(corrupt, [.. Enumerable.Range(0, 500).Select(i => (byte)(i * 7))]);
        var error = Assert.Throws<MediaException>(() => ImageDecoder.Decode(corrupt));
        Assert.Equal(corrupt, error.FilePath);
        Assert.Contains("not a decodable image", error.Message);
        string tiny = MediaFixtures.Image(dir.Path, "tiny.png", 1, 1);
        Assert.Contains("1×1 pixels", Assert.Throws<MediaException>(() => ImageDecoder.Decode(tiny)).Message);
        string truncated = MediaFixtures.Image(dir.Path, "cut.png", 64, 64);
        File.WriteAllBytes(truncated, File.ReadAllBytes(truncated)[..100]);
        Assert.Equal(truncated, Assert.Throws<MediaException>(() => ImageDecoder.Decode(truncated)).FilePath);
    }

    /// <summary>A JPEG of a non-symmetric pattern with an EXIF APP1 segment giving <paramref name="orientation"/>.</summary>
    static byte[] OrientedJpeg(int orientation, int width = 40, int height = 24)
    {
        using var bitmap = new SkiaSharp.SKBitmap(width, height);
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++) bitmap.SetPixel(x, y, new SkiaSharp.SKColor((byte)(x * 6), (byte)(y * 10), (byte)(x < 8 && y < 6 ? 255 : 0)));
        }
        using var data = SkiaSharp.SKImage.FromBitmap(bitmap).Encode(SkiaSharp.SKEncodedImageFormat.Jpeg, 100);
        byte[] jpeg = data.ToArray();
        byte[] exif =
        [
            0xFF, 0xE1, 0x00, 0x22, (byte)'E', (byte)'x', (byte)'i', (byte)'f', 0, 0,   // APP1, length 34, "Exif\0\0"
            (byte)'M', (byte)'M', 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,                   // big-endian TIFF header, IFD at 8
            0x00, 0x01, 0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, (byte)orientation, 0x00, 0x00,   // one entry: Orientation (SHORT)
            0x00, 0x00, 0x00, 0x00,                                                     // no next IFD
        ];
        return [.. jpeg.AsSpan(0, 2), .. exif, .. jpeg.AsSpan(2)];
    }

    [Theory]
    [InlineData(6)]   // rotate 90° clockwise: what a phone held upright writes
    [InlineData(3)]
    [InlineData(8)]
    public void Exif_orientation_is_applied_as_hugging_faces_load_image_does_and_only_there(int orientation)
    {
        byte[] bytes = OrientedJpeg(orientation);
        RgbImage stored = ImageDecoder.Decode(bytes, "oriented.jpg");
        RgbImage shown = ImageDecoder.Decode(bytes, "oriented.jpg", exifTranspose: true);
        Assert.Equal((40, 24), (stored.Width, stored.Height));   // LLaMA-Factory / MindSpeed-MM: as stored
        (int W, int H) expectedSize = orientation == 3 ? (40, 24) : (24, 40);
        Assert.Equal(expectedSize, (shown.Width, shown.Height));
        byte[] Pixel(RgbImage image, int x, int y) => image.Pixels.AsSpan((y * image.Width + x) * 3, 3).ToArray();
        // The corner that was top-left (blue square) ends where the orientation says.
        var (x0, y0) = orientation switch { 6 => (23, 0), 3 => (39, 23), _ => (0, 39) };
        Assert.Equal(Pixel(stored, 0, 0), Pixel(shown, x0, y0));
        Assert.Equal(Pixel(stored, 39, 23), Pixel(shown, shown.Width - 1 - x0, shown.Height - 1 - y0));
        using var dir = new TempFolder();
        string file = Path.Combine(dir.Path, "oriented.jpg");
        File.WriteAllBytes(file, bytes);
        var settings = new ProcessorSettings();
        Assert.Equal(ImagePreprocessor.Process(file, settings).Grid, ImagePreprocessor.Process(ImageDecoder.Decode(bytes, "x"), settings, "x").Grid);
        Assert.Equal(ImagePreprocessor.Process(file, settings with { ExifTranspose = true }).Grid,
            ImagePreprocessor.Process(shown, settings, "x").Grid);
    }
}
