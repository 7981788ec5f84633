using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Audio;

/// <summary>
/// Whisper's fixed sinusoid table [length, channels]: sin block then cos block, inv[j] = exp(−j·ln(10000)/(C/2 − 1)),
/// computed in float32 with torch ops as Hugging Face does (reference §5.2).
/// </summary>
public static class SinusoidPositions
{
    /// <summary>The table on <paramref name="device"/>.</summary>
    public static Tensor Table(int length, int channels, Device? device = null)
    {
        using var scope = NewDisposeScope();
        double increment = Math.Log(10000.0) / (channels / 2 - 1);
        Tensor inverse = (arange(channels / 2, ScalarType.Float32, device) * -increment).exp();
        Tensor scaled = arange(length, ScalarType.Int64, device).unsqueeze(1).to(ScalarType.Float32) * inverse.unsqueeze(0);
        return cat([scaled.sin(), scaled.cos()], 1).MoveToOuterDisposeScope();
    }
}
