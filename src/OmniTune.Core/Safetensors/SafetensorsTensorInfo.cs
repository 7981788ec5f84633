using static TorchSharp.torch;

namespace OmniTune.Core.Safetensors;

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">Tensor key.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Dimensions.</param>
/// <param name="Begin">Start of the data, relative to the end of the header.</param>
/// <param name="End">End of the data (exclusive), relative to the end of the header.</param>
public sealed record SafetensorsTensorInfo(string Name, ScalarType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Number of data bytes.</summary>
    public long ByteCount => End - Begin;
}
