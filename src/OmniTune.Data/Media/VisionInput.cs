using OmniTune.Models.Qwen25Omni.Positions;
using static TorchSharp.torch;

namespace OmniTune.Data.Media;

/// <summary>Patch rows of one image or video [t·h·w, C·T·P·P] (float32) and its grid.</summary>
/// <param name="PixelValues">Patch rows in the model's order.</param>
/// <param name="Grid">Grid in patches.</param>
/// <param name="SecondsPerGrid">Seconds per temporal group (videos; 0 for images).</param>
public sealed record VisionInput(Tensor PixelValues, GridThw Grid, double SecondsPerGrid = 0);

/// <summary>Turns same-sized RGB frames into normalised patch rows (reference §8.5 steps 3–5).</summary>
public static class VisionPatches
{
    /// <summary>Frames (padded to a multiple of the temporal patch by repeating the last) → patch rows and grid.</summary>
    public static (Tensor Rows, GridThw Grid) From(IReadOnlyList<RgbImage> frames, ProcessorSettings s)
    {
        int w = frames[0].Width, h = frames[0].Height, p = s.PatchSize, m = s.MergeSize, tp = s.TemporalPatchSize;
        if (frames.Any(f => f.Width != w || f.Height != h)) throw new ArgumentException("all frames of a video must have the same size");
        if (h % (p * m) != 0 || w % (p * m) != 0) throw new ArgumentException($"frame size {w}×{h} is not a multiple of {p * m}");
        var padded = frames.ToList();
        while (padded.Count % tp != 0) padded.Add(padded[^1]);
        using var scope = NewDisposeScope();
        var bytes = new byte[padded.Count * h * w * 3];
        for (int i = 0; i < padded.Count; i++) padded[i].Pixels.CopyTo(bytes, i * h * w * 3);
        // [T, H, W, C] uint8 -> float64 · 1/255 -> float32, normalised, channels first [T, C, H, W]
        Tensor x = tensor(bytes, ScalarType.Byte).reshape(padded.Count, h, w, 3).to(ScalarType.Float64).mul(1.0 / 255).to(ScalarType.Float32);
        Tensor mean = tensor(s.ImageMean), std = tensor(s.ImageStd);
        x = ((x - mean) / std).permute(0, 3, 1, 2);
        int gt = padded.Count / tp, gh = h / p, gw = w / p;
        // [gt, tt, C, hb, mh, py, wb, mw, px] -> [gt, hb, wb, mh, mw, C, tt, py, px]
        Tensor rows = x.reshape(gt, tp, 3, gh / m, m, p, gw / m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
            .reshape((long)gt * gh * gw, 3 * tp * p * p).contiguous();
        return (rows.MoveToOuterDisposeScope(), new GridThw(gt, gh, gw));
    }
}
