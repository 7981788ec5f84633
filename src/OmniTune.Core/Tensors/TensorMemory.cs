using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Core.Tensors;

/// <summary>Raw access to a tensor's storage, for zero-copy I/O and native libraries.</summary>
public static partial class TensorMemory
{
    /// <summary>Address of the first element (a device pointer for CUDA tensors). The tensor must stay alive.</summary>
    public static IntPtr DataPointer(Tensor tensor) => THSTensor_data(tensor.Handle);

    /// <summary>Size of one element of <paramref name="dtype"/> in bytes.</summary>
    public static int ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Float64 or ScalarType.Int64 or ScalarType.ComplexFloat32 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        ScalarType.Int8 or ScalarType.Byte or ScalarType.Bool => 1,
        _ => throw new NotSupportedException($"dtype {dtype} has no fixed element size here"),
    };

    /// <summary>Number of bytes a contiguous tensor of this dtype and shape occupies.</summary>
    public static long ByteCount(ScalarType dtype, ReadOnlySpan<long> shape)
    {
        long count = ElementSize(dtype);
        foreach (long d in shape) count = checked(count * d);
        return count;
    }

    [LibraryImport("LibTorchSharp")]
    private static partial IntPtr THSTensor_data(IntPtr handle);
}
