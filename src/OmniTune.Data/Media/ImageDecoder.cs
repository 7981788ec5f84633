using SkiaSharp;

namespace OmniTune.Data.Media;

/// <summary>Decodes JPEG, PNG, WebP, BMP and GIF (first frame) to 8-bit RGB with SkiaSharp; alpha is dropped as Pillow's convert("RGB") does; EXIF orientation is not applied (as Pillow).</summary>
public static class ImageDecoder
{
    /// <summary>Smallest accepted side: anything smaller is not a real picture.</summary>
    public const int MinimumSide = 4;

    /// <summary>Decodes a file.</summary>
    public static RgbImage Decode(string path)
    {
        if (!File.Exists(path)) throw new MediaException(path, "image file not found");
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length == 0) throw new MediaException(path, "image file is empty");
        return Decode(bytes, path);
    }

    /// <summary>Decodes encoded bytes; <paramref name="name"/> names them in errors.</summary>
    public static RgbImage Decode(byte[] bytes, string name)
    {
        using var data = SKData.CreateCopy(bytes);
        using var codec = SKCodec.Create(data) ?? throw new MediaException(name, "not a decodable image (unsupported format or corrupt bytes)");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        if (info.Width < MinimumSide || info.Height < MinimumSide)
            throw new MediaException(name, $"image is {info.Width}×{info.Height} pixels, too small to be a picture (at least {MinimumSide}×{MinimumSide})");
        var rgba = new byte[info.BytesSize];
        SKCodecResult result;
        unsafe
        {
            fixed (byte* p = rgba) result = codec.GetPixels(info, (IntPtr)p);
        }
        if (result is not (SKCodecResult.Success or SKCodecResult.IncompleteInput))
            throw new MediaException(name, $"corrupt image data ({result})");
        if (result == SKCodecResult.IncompleteInput)
            throw new MediaException(name, "image data is truncated");
        var rgb = new byte[info.Width * info.Height * 3];
        for (int i = 0, j = 0; i < rgba.Length; i += 4, j += 3)
        {
            rgb[j] = rgba[i];
            rgb[j + 1] = rgba[i + 1];
            rgb[j + 2] = rgba[i + 2];
        }
        return new RgbImage(info.Width, info.Height, rgb);
    }
}
