using OmniTune.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Core.Safetensors;

/// <summary>
/// A tensor declared before it is produced, so a writer can lay out the header first and then stream the data one
/// tensor at a time (bounded memory). <paramref name="Produce"/> may return an existing tensor (e.g. a parameter):
/// the writer never disposes tensors it did not create.
/// </summary>
/// <param name="Name">Key in the file.</param>
/// <param name="DType">Stored element type.</param>
/// <param name="Shape">Stored dimensions.</param>
/// <param name="Produce">Returns the values; called once, when the tensor is written.</param>
public sealed record TensorToWrite(string Name, ScalarType DType, long[] Shape, Func<Tensor> Produce)
{
    const int CopyChunkBytes = 64 << 20;

    /// <summary>Declares an existing tensor.</summary>
    public static TensorToWrite Of(string name, Tensor tensor) => new(name, tensor.dtype, tensor.shape, () => tensor);

    /// <summary>Bytes of the stored tensor.</summary>
    public long ByteCount => TensorMemory.ByteCount(DType, Shape);

    /// <summary>
    /// Produces the tensor and writes its bytes (C order, little-endian) to <paramref name="stream"/>; a tensor whose
    /// dtype or shape differs from the declaration is an error naming <paramref name="path"/> and the key.
    /// </summary>
    public unsafe void WriteBytes(Stream stream, string path)
    {
        using var scope = NewDisposeScope();
        Tensor produced = Produce();
        if (produced.dtype != DType || !produced.shape.SequenceEqual(Shape))
        {
            throw new InvalidOperationException(
                $"{path}: tensor '{Name}' was declared {DType}[{string.Join(", ", Shape)}] but produced {produced.dtype}[{string.Join(", ", produced.shape)}]");
        }
        Tensor cpu = produced.device_type == DeviceType.CPU ? produced.contiguous() : produced.cpu().contiguous();
        byte* source = (byte*)TensorMemory.DataPointer(cpu);
        long remaining = ByteCount;
        while (remaining > 0)
        {
            int chunk = (int)Math.Min(remaining, CopyChunkBytes);
            stream.Write(new ReadOnlySpan<byte>(source, chunk));
            source += chunk;
            remaining -= chunk;
        }
    }
}
