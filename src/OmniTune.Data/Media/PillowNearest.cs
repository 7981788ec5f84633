namespace OmniTune.Data.Media;

/// <summary>
/// Pillow's <c>Image.resize(size, NEAREST)</c>: each output pixel takes the source pixel under its centre,
/// column ⌊(x + ½) · W / w⌋ and row ⌊(y + ½) · H / h⌋ (Pillow's affine nearest filter).
/// </summary>
public static class PillowNearest
{
    /// <summary><paramref name="image"/> resized to <paramref name="width"/> × <paramref name="height"/>.</summary>
    public static RgbImage Resize(RgbImage image, int width, int height)
    {
        if (width == image.Width && height == image.Height) return image;
        var pixels = new byte[width * height * 3];
        double sx = (double)image.Width / width, sy = (double)image.Height / height;
        var columns = new int[width];
        for (int x = 0; x < width; x++) columns[x] = Math.Min(image.Width - 1, (int)((x + 0.5) * sx));
        for (int y = 0; y < height; y++)
        {
            int row = Math.Min(image.Height - 1, (int)((y + 0.5) * sy));
            for (int x = 0; x < width; x++)
            {
                int from = (row * image.Width + columns[x]) * 3, to = (y * width + x) * 3;
                pixels[to] = image.Pixels[from];
                pixels[to + 1] = image.Pixels[from + 1];
                pixels[to + 2] = image.Pixels[from + 2];
            }
        }
        return new RgbImage(width, height, pixels);
    }
}
