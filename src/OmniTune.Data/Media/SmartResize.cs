namespace OmniTune.Data.Media;

/// <summary>
/// Qwen2-VL's smart_resize (reference §8.4): round both sides to multiples of <c>factor</c> (Python round, half to
/// even), then scale down into <c>maxPixels</c> (floor) or up into <c>minPixels</c> (ceil), keeping the aspect ratio.
/// </summary>
public static class SmartResize
{
    /// <summary>(height, width) after resizing; an error for sides below the factor or an aspect ratio over 200.</summary>
    public static (int Height, int Width) Compute(int height, int width, int factor, long minPixels, long maxPixels)
    {
        if (height < factor || width < factor)
            throw new ArgumentException($"height {height} and width {width} must both be at least {factor}");
        if ((double)Math.Max(height, width) / Math.Min(height, width) > 200)
            throw new ArgumentException($"aspect ratio {Math.Max(height, width)}:{Math.Min(height, width)} is over 200");
        int h = (int)Math.Round((double)height / factor, MidpointRounding.ToEven) * factor;
        int w = (int)Math.Round((double)width / factor, MidpointRounding.ToEven) * factor;
        if ((long)h * w > maxPixels)
        {
            double beta = Math.Sqrt((double)height * width / maxPixels);
            h = Math.Max(factor, (int)Math.Floor(height / beta / factor) * factor);
            w = Math.Max(factor, (int)Math.Floor(width / beta / factor) * factor);
        }
        else if ((long)h * w < minPixels)
        {
            double beta = Math.Sqrt((double)minPixels / ((double)height * width));
            h = (int)Math.Ceiling(height * beta / factor) * factor;
            w = (int)Math.Ceiling(width * beta / factor) * factor;
        }
        return (h, w);
    }
}
