namespace OmniTune.Data.Media;

/// <summary>An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B.</summary>
/// <param name="Width">Columns.</param>
/// <param name="Height">Rows.</param>
/// <param name="Pixels">Width·Height·3 bytes.</param>
public sealed record RgbImage(int Width, int Height, byte[] Pixels)
{
    /// <summary>A solid image.</summary>
    public static RgbImage Solid(int width, int height, byte r, byte g, byte b)
    {
        var pixels = new byte[width * height * 3];
        for (int i = 0; i < pixels.Length; i += 3)
        {
            pixels[i] = r;
            pixels[i + 1] = g;
            pixels[i + 2] = b;
        }
        return new RgbImage(width, height, pixels);
    }
}
