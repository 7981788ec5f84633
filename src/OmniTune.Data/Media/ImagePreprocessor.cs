namespace OmniTune.Data.Media;

/// <summary>
/// An image as LLaMA-Factory regularises it and the Qwen2-VL image processor then processes it (llamafactory_data.md
/// §4.6): pre-shrink / pre-enlarge by image_max/min_pixels (truncated sizes), minimum side 28, aspect-ratio fix,
/// smart_resize, Pillow bicubic, normalisation, two identical frames, patch rows.
/// </summary>
public static class ImagePreprocessor
{
    /// <summary>Loads and processes one image file.</summary>
    public static VisionInput Process(string path, ProcessorSettings s) => Process(ImageDecoder.Decode(path), s, path);

    /// <summary>Processes a decoded image; <paramref name="name"/> names it in errors.</summary>
    public static VisionInput Process(RgbImage image, ProcessorSettings s, string name)
    {
        RgbImage regular = Regularize(image, s.ImageMaxPixels, s.ImageMinPixels);
        var (rows, grid) = VisionPatches.From([Fit(regular, s.ProcessorMinPixels, s.ProcessorMaxPixels, s, name)], s);
        return new VisionInput(rows, grid);
    }

    /// <summary>LLaMA-Factory's <c>_preprocess_image</c> (Qwen2-VL variant).</summary>
    public static RgbImage Regularize(RgbImage image, long maxPixels, long minPixels)
    {
        RgbImage x = image;
        if ((long)x.Width * x.Height > maxPixels)
        {
            double f = Math.Sqrt((double)maxPixels / ((long)x.Width * x.Height));
            x = PillowBicubic.Resize(x, (int)(x.Width * f), (int)(x.Height * f));
        }
        if ((long)x.Width * x.Height < minPixels)
        {
            double f = Math.Sqrt((double)minPixels / ((long)x.Width * x.Height));
            x = PillowBicubic.Resize(x, (int)(x.Width * f), (int)(x.Height * f));
        }
        if (Math.Min(x.Width, x.Height) < 28) x = PillowBicubic.Resize(x, Math.Max(x.Width, 28), Math.Max(x.Height, 28));
        if ((double)x.Width / x.Height > 200) x = PillowBicubic.Resize(x, x.Height * 180, x.Height);
        if ((double)x.Height / x.Width > 200) x = PillowBicubic.Resize(x, x.Width, x.Width * 180);
        return x;
    }

    /// <summary>smart_resize into [min, max] pixels and Pillow bicubic to that size.</summary>
    public static RgbImage Fit(RgbImage image, long minPixels, long maxPixels, ProcessorSettings s, string name)
    {
        (int h, int w) size;
        try
        {
            size = SmartResize.Compute(image.Height, image.Width, s.Factor, minPixels, maxPixels);
        }
        catch (ArgumentException e)
        {
            throw new MediaException(name, e.Message, e);
        }
        return size.h == image.Height && size.w == image.Width ? image : PillowBicubic.Resize(image, size.w, size.h);
    }
}
