using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Core.Tensors;

/// <summary>Chooses the compute device at run time: <c>auto</c> (CUDA when the loaded libtorch has it, else CPU), <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>.</summary>
public static class DeviceSelection
{
    /// <summary>Resolves a device name; an unavailable CUDA request is an error saying which build is needed.</summary>
    public static Device Resolve(string name)
    {
        string n = name.Trim().ToLowerInvariant();
        if (n == "auto") return cuda.is_available() ? CUDA : CPU;
        if (n == "cpu") return CPU;
        if (n.StartsWith("cuda", StringComparison.Ordinal))
        {
            if (!cuda.is_available())
                throw new NotSupportedException($"device '{name}' requested but this build's libtorch has no CUDA (build with -p:OmniTuneTorchBackend=cuda on a GPU machine; see README)");
            return new Device(n);
        }
        throw new ArgumentException($"unknown device '{name}': use auto, cpu, cuda or cuda:N");
    }

    /// <summary>The dtype to train in on <paramref name="device"/>: fp32 on CPU (bf16 matmul is ~150× slower there), bf16 on CUDA.</summary>
    public static ScalarType DefaultTrainingDtype(Device device) => device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32;
}
