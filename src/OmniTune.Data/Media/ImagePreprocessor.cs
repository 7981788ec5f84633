using OmniTune.Models.Qwen25Omni.Positions;

namespace OmniTune.Data.Media;

/// <summary>
/// An image as LLaMA-Factory regularises it and the Qwen2-VL image processor then processes it (llamafactory_data.md
/// §4.6): pre-shrink / pre-enlarge by image_max/min_pixels (truncated sizes), minimum side 28, aspect-ratio fix,
/// smart_resize, Pillow bicubic, normalisation, two identical frames, patch rows.
/// </summary>
public static class ImagePreprocessor
{
    /// <summary>Loads and processes one image file.</summary>
    public static VisionInput Process(string path, ProcessorSettings s) => Process(ImageDecoder.Decode(path, s.ImageDecodeMaxPixels, s.ExifTranspose), s, path);

    /// <summary>Processes a decoded image; <paramref name="name"/> names it in errors.</summary>
    public static VisionInput Process(RgbImage image, ProcessorSettings s, string name)
    {
        RgbImage regular = Regularize(image, s.ImageMaxPixels, s.ImageMinPixels);
        var (rows, grid) = VisionPatches.From([Fit(regular, s.ProcessorMinPixels, s.ProcessorMaxPixels, s, name)], s);
        return new VisionInput(rows, grid);
    }

    /// <summary>
    /// LLaMA-Factory's <c>_preprocess_image</c> (Qwen2-VL variant): each size step resized with Pillow bicubic. With
    /// <paramref name="nearest"/> the max/min-pixel shrink or growth (steps 1–2) uses Pillow's nearest, as MindSpeed-MM's
    /// plugin does for video frames (<c>resample=True</c>); the later steps keep bicubic.
    /// </summary>
    public static RgbImage Regularize(RgbImage image, long maxPixels, long minPixels, bool nearest = false)
    {
        RgbImage x = image;
        foreach (var (w, h, pixelStep) in Steps(image.Width, image.Height, maxPixels, minPixels))
            x = nearest && pixelStep ? PillowNearest.Resize(x, w, h) : PillowBicubic.Resize(x, w, h);
        return x;
    }

    /// <summary>The successive sizes LLaMA-Factory resizes to (empty when the image is kept as is).</summary>
    public static List<(int Width, int Height)> RegularizeSteps(int width, int height, long maxPixels, long minPixels) =>
        Steps(width, height, maxPixels, minPixels).Select(step => (step.Width, step.Height)).ToList();

    /// <summary>The resize steps, each marked whether it is a max/min-pixel one (steps 1–2) rather than a shape fix.</summary>
    static List<(int Width, int Height, bool PixelStep)> Steps(int width, int height, long maxPixels, long minPixels)
    {
        var steps = new List<(int, int, bool)>();
        int w = width, h = height;
        void To(int nw, int nh, bool pixelStep = false)
        {
            (w, h) = (nw, nh);
            steps.Add((w, h, pixelStep));
        }
        if ((long)w * h > maxPixels)
        {
            double f = Math.Sqrt((double)maxPixels / ((long)w * h));
            To((int)(w * f), (int)(h * f), pixelStep: true);
        }
        if ((long)w * h < minPixels)
        {
            double f = Math.Sqrt((double)minPixels / ((long)w * h));
            To((int)(w * f), (int)(h * f), pixelStep: true);
        }
        if (Math.Min(w, h) < 28) To(Math.Max(w, 28), Math.Max(h, 28));
        if ((double)w / h > 200) To(h * 180, h);
        if ((double)h / w > 200) To(w, w * 180);
        return steps;
    }

    /// <summary>The grid an image of this size gets, without decoding its pixels.</summary>
    public static GridThw GridFor(int width, int height, ProcessorSettings s, string name)
    {
        var steps = RegularizeSteps(width, height, s.ImageMaxPixels, s.ImageMinPixels);
        var (w, h) = steps.Count == 0 ? (width, height) : steps[^1];
        (int fh, int fw) = FitSize(h, w, s.ProcessorMinPixels, s.ProcessorMaxPixels, s, name);
        return new GridThw(1, fh / s.PatchSize, fw / s.PatchSize);
    }

    static (int H, int W) FitSize(int height, int width, long minPixels, long maxPixels, ProcessorSettings s, string name)
    {
        try
        {
            return SmartResize.Compute(height, width, s.Factor, minPixels, maxPixels);
        }
        catch (ArgumentException e)
        {
            throw new MediaException(name, e.Message, e);
        }
    }

    /// <summary>smart_resize into [min, max] pixels and Pillow bicubic to that size.</summary>
    public static RgbImage Fit(RgbImage image, long minPixels, long maxPixels, ProcessorSettings s, string name)
    {
        var size = FitSize(image.Height, image.Width, minPixels, maxPixels, s, name);
        return size.H == image.Height && size.W == image.Width ? image : PillowBicubic.Resize(image, size.W, size.H);
    }
}
