using System.Runtime.InteropServices;
using SkiaSharp;

namespace OmniTune.Data.Media;

/// <summary>
/// Decodes JPEG, PNG, WebP, BMP and GIF (first frame) to 8-bit RGB with SkiaSharp; alpha is dropped as Pillow's
/// convert("RGB") does; EXIF orientation is not applied (as Pillow). Images above a pixel limit are refused from the
/// header, before any pixel is decoded (Pillow's decompression-bomb check). JPEG decodes line by line straight into
/// RGB (peak: the RGB image plus the compressed file); other formats decode whole outside the managed heap and are
/// released as they are converted (peak about 4/3 of the RGB image).
/// </summary>
public static partial class ImageDecoder
{
    /// <summary>Smallest accepted side: anything smaller is not a real picture.</summary>
    public const int MinimumSide = 4;

    /// <summary>Default decode limit: Pillow refuses images above twice its MAX_IMAGE_PIXELS (89,478,485).</summary>
    public const long DefaultMaxPixels = 2 * 89_478_485L;

    /// <summary>
    /// Decodes a file; images of more than <paramref name="maxPixels"/> pixels are refused. With
    /// <paramref name="exifTranspose"/> the EXIF orientation is applied (Hugging Face's <c>load_image</c>:
    /// <c>ImageOps.exif_transpose</c>); LLaMA-Factory's and MindSpeed-MM's loaders do not apply it.
    /// </summary>
    public static RgbImage Decode(string path, long maxPixels = DefaultMaxPixels, bool exifTranspose = false)
    {
        if (!File.Exists(path)) throw new MediaException(path, "image file not found");
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length == 0) throw new MediaException(path, "image file is empty");
        return Decode(bytes, path, maxPixels, exifTranspose);
    }

    /// <summary>Decodes encoded bytes; <paramref name="name"/> names them in errors.</summary>
    public static RgbImage Decode(byte[] bytes, string name, long maxPixels = DefaultMaxPixels, bool exifTranspose = false)
    {
        using var stream = new SKMemoryStream(bytes);
        using var codec = SKCodec.Create(stream) ?? throw new MediaException(name, "not a decodable image (unsupported format or corrupt bytes)");
        RgbImage image = DecodeAsStored(codec, name, maxPixels);
        return exifTranspose ? Orient(image, codec.EncodedOrigin) : image;
    }

    /// <summary>
    /// The image as its EXIF orientation says to show it, Pillow's <c>exif_transpose</c> map: 2 mirror, 3 rotate 180°,
    /// 4 flip, 5 transpose, 6 rotate 90° clockwise, 7 transverse, 8 rotate 90° counter-clockwise.
    /// </summary>
    public static RgbImage Orient(RgbImage image, SKEncodedOrigin origin)
    {
        if (origin == SKEncodedOrigin.TopLeft) return image;
        int w = image.Width, h = image.Height;
        bool swap = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        int ow = swap ? h : w, oh = swap ? w : h;
        var pixels = new byte[image.Pixels.Length];
        for (int y = 0; y < oh; y++)
        {
            for (int x = 0; x < ow; x++)
            {
                var (sx, sy) = origin switch
                {
                    SKEncodedOrigin.TopRight => (w - 1 - x, y),            // 2: mirror left-right
                    SKEncodedOrigin.BottomRight => (w - 1 - x, h - 1 - y), // 3: rotate 180°
                    SKEncodedOrigin.BottomLeft => (x, h - 1 - y),          // 4: flip top-bottom
                    SKEncodedOrigin.LeftTop => (y, x),                     // 5: transpose
                    SKEncodedOrigin.RightTop => (y, h - 1 - x),            // 6: rotate 90° clockwise
                    SKEncodedOrigin.RightBottom => (w - 1 - y, h - 1 - x), // 7: transverse
                    SKEncodedOrigin.LeftBottom => (w - 1 - y, x),          // 8: rotate 90° counter-clockwise
                    _ => (x, y),
                };
                image.Pixels.AsSpan((sy * w + sx) * 3, 3).CopyTo(pixels.AsSpan((y * ow + x) * 3, 3));
            }
        }
        return new RgbImage(ow, oh, pixels);
    }

    static RgbImage DecodeAsStored(SKCodec codec, string name, long maxPixels)
    {
        int width = codec.Info.Width, height = codec.Info.Height;
        CheckSize(width, height, name, maxPixels);
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        byte[] rgb = GC.AllocateUninitializedArray<byte>(checked(width * height * 3));
        if (codec.StartScanlineDecode(info) == SKCodecResult.Success && codec.ScanlineOrder == SKCodecScanlineOrder.TopDown)
        {
            var row = new byte[info.RowBytes];
            for (int y = 0; y < height; y++)
            {
                int decoded;
                unsafe
                {
                    fixed (byte* p = row) decoded = codec.GetScanlines((IntPtr)p, 1, info.RowBytes);
                }
                if (decoded != 1) throw new MediaException(name, $"image data is truncated (row {y} of {height} missing)");
                DropAlpha(row, rgb.AsSpan(y * width * 3, width * 3));
            }
            return new RgbImage(width, height, rgb);
        }
        return DecodeWhole(codec, info, name, rgb);
    }

    /// <summary>
    /// Formats without line-by-line decoding (PNG, WebP, GIF): the whole RGBA image is decoded into an anonymous
    /// mapping outside the managed heap, converted to RGB row by row, and the mapping's converted prefix is unmapped as
    /// the conversion advances, so the peak stays near the RGBA size (4/3 of the RGB result) instead of RGBA + RGB.
    /// </summary>
    static unsafe RgbImage DecodeWhole(SKCodec codec, SKImageInfo info, string name, byte[] rgb)
    {
        long rowBytes = info.RowBytes, size = rowBytes * info.Height, unmapped = 0, page = Environment.SystemPageSize;
        bool mapped = OperatingSystem.IsLinux();
        nint buffer = mapped ? Mmap(0, (nuint)size, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0) : (nint)NativeMemory.Alloc((nuint)size);
        if (buffer == -1 || buffer == 0) throw new MediaException(name, $"cannot allocate {size:N0} bytes to decode the image");
        try
        {
            SKCodecResult result = codec.GetPixels(info, buffer);
            if (result == SKCodecResult.IncompleteInput) throw new MediaException(name, "image data is truncated");
            if (result != SKCodecResult.Success) throw new MediaException(name, $"corrupt image data ({result})");
            int width = info.Width;
            for (int y = 0; y < info.Height; y++)
            {
                DropAlpha(new ReadOnlySpan<byte>((byte*)buffer + y * rowBytes, width * 4), rgb.AsSpan(y * width * 3, width * 3));
                long consumed = (y + 1) * rowBytes / page * page;
                if (mapped && consumed - unmapped >= 64 * page)
                {
                    _ = Munmap(buffer + (nint)unmapped, (nuint)(consumed - unmapped));
                    unmapped = consumed;
                }
            }
            return new RgbImage(info.Width, info.Height, rgb);
        }
        finally
        {
            if (!mapped) NativeMemory.Free((void*)buffer);
            else if (size > unmapped) _ = Munmap(buffer + (nint)unmapped, (nuint)(size - unmapped));
        }
    }

    const int ProtRead = 1, ProtWrite = 2, MapPrivate = 0x02, MapAnonymous = 0x20;

    [LibraryImport("libc", EntryPoint = "mmap")]
    private static partial nint Mmap(nint address, nuint length, int protection, int flags, int descriptor, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int Munmap(nint address, nuint length);

    /// <summary>Refuses sizes that are too small to be a picture or above the decode limit (a decompression bomb).</summary>
    public static void CheckSize(int width, int height, string name, long maxPixels)
    {
        if (width < MinimumSide || height < MinimumSide)
            throw new MediaException(name, $"image is {width}×{height} pixels, too small to be a picture (at least {MinimumSide}×{MinimumSide})");
        if ((long)width * height > maxPixels)
            throw new MediaException(name, $"image is {width}×{height} = {(long)width * height:N0} pixels, above the decode limit of {maxPixels:N0} " +
                                           "(a possible decompression bomb; raise preprocess_parameters.image_decode_max_pixels if the image is genuine)");
    }

    static void DropAlpha(ReadOnlySpan<byte> rgba, Span<byte> rgb)
    {
        for (int i = 0, j = 0; j < rgb.Length; i += 4, j += 3)
        {
            rgb[j] = rgba[i];
            rgb[j + 1] = rgba[i + 1];
            rgb[j + 2] = rgba[i + 2];
        }
    }
}
