namespace OmniTune.Data.Media;

/// <summary>
/// Pillow's <c>Image.resize(BICUBIC)</c> on 8-bit RGB, reproduced exactly (reference §8.5.1): separable Keys cubic
/// with a = −0.5, support widened by the downscale factor (antialiasing), weights normalised and rounded to 22-bit
/// fixed point, horizontal pass first into an 8-bit intermediate, then vertical; an axis that keeps its size is not
/// resampled. Hand-written because no .NET imaging library reproduces Pillow's arithmetic (SkiaSharp's cubic
/// resampler differs by several levels per pixel), and the processor's outputs depend on it.
/// </summary>
public static class PillowBicubic
{
    const int PrecisionBits = 32 - 8 - 2;

    /// <summary>Resizes <paramref name="image"/> to <paramref name="width"/>×<paramref name="height"/>.</summary>
    public static RgbImage Resize(RgbImage image, int width, int height)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        RgbImage result = image;
        if (width != image.Width) result = Horizontal(result, width);
        if (height != image.Height) result = Vertical(result, height);
        return ReferenceEquals(result, image) ? image with { Pixels = (byte[])image.Pixels.Clone() } : result;
    }

    static double Cubic(double x)
    {
        const double a = -0.5;
        if (x < 0) x = -x;
        if (x < 1) return (((a + 2) * x) - (a + 3)) * x * x + 1;
        if (x < 2) return ((((x - 5) * x) + 8) * x - 4) * a;
        return 0;
    }

    /// <summary>Per output index: first input index and fixed-point weights.</summary>
    static (int[] Start, int[][] Weights) Coefficients(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = 2.0 * filterScale;
        var starts = new int[outSize];
        var weights = new int[outSize][];
        for (int i = 0; i < outSize; i++)
        {
            double center = (i + 0.5) * scale;
            int min = Math.Max((int)(center - support + 0.5), 0);
            int max = Math.Min((int)(center + support + 0.5), inSize);
            var k = new double[max - min];
            double sum = 0;
            for (int x = 0; x < k.Length; x++)
            {
                k[x] = Cubic((x + min - center + 0.5) / filterScale);
                sum += k[x];
            }
            var fixedPoint = new int[k.Length];
            for (int x = 0; x < k.Length; x++)
            {
                double w = sum != 0 ? k[x] / sum : k[x];
                fixedPoint[x] = (int)(w < 0 ? -0.5 + w * (1 << PrecisionBits) : 0.5 + w * (1 << PrecisionBits));
            }
            starts[i] = min;
            weights[i] = fixedPoint;
        }
        return (starts, weights);
    }

    static byte Clip(long value)
    {
        long v = value >> PrecisionBits;
        return v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
    }

    static RgbImage Horizontal(RgbImage image, int width)
    {
        var (starts, weights) = Coefficients(image.Width, width);
        byte[] src = image.Pixels;
        var dst = new byte[width * image.Height * 3];
        Parallel.For(0, image.Height, y =>
        {
            int row = y * image.Width * 3, outRow = y * width * 3;
            for (int x = 0; x < width; x++)
            {
                int[] w = weights[x];
                long r = 1L << (PrecisionBits - 1), g = r, b = r;
                int p = row + starts[x] * 3;
                for (int k = 0; k < w.Length; k++, p += 3)
                {
                    r += src[p] * w[k];
                    g += src[p + 1] * w[k];
                    b += src[p + 2] * w[k];
                }
                int o = outRow + x * 3;
                dst[o] = Clip(r);
                dst[o + 1] = Clip(g);
                dst[o + 2] = Clip(b);
            }
        });
        return new RgbImage(width, image.Height, dst);
    }

    static RgbImage Vertical(RgbImage image, int height)
    {
        var (starts, weights) = Coefficients(image.Height, height);
        byte[] src = image.Pixels;
        int stride = image.Width * 3;
        var dst = new byte[stride * height];
        Parallel.For(0, height, y =>
        {
            int[] w = weights[y];
            int first = starts[y] * stride, outRow = y * stride;
            for (int i = 0; i < stride; i++)
            {
                long sum = 1L << (PrecisionBits - 1);
                int p = first + i;
                for (int k = 0; k < w.Length; k++, p += stride) sum += src[p] * w[k];
                dst[outRow + i] = Clip(sum);
            }
        });
        return new RgbImage(image.Width, height, dst);
    }
}
