using OmniTune.Core.Safetensors;
using static TorchSharp.torch;

namespace OmniTune.Tests.Testing;

/// <summary>Raw bytes of tensors, for bit-exact comparisons.</summary>
public static class CheckpointBytes
{
    /// <summary>
    /// A copy of <paramref name="tensor"/>'s bytes; disposes it. (The span from <c>tensor.bytes</c> points into native
    /// memory that the GC may free once the tensor object is unreachable, so the tensor must live until the copy ends.)
    /// </summary>
    public static byte[] Of(Tensor tensor)
    {
        using (tensor) return tensor.bytes.ToArray();
    }

    /// <summary>Every tensor of a safetensors folder by key.</summary>
    public static Dictionary<string, byte[]> Read(string folder)
    {
        using var checkpoint = SafetensorsCheckpoint.Open(folder);
        return checkpoint.Keys.ToDictionary(k => k, k => Of(checkpoint.Read(k)));
    }
}
