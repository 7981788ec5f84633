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
    /// <summary>Declares an existing tensor.</summary>
    public static TensorToWrite Of(string name, Tensor tensor) => new(name, tensor.dtype, tensor.shape, () => tensor);
}
