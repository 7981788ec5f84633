using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Common;

/// <summary>The activation functions Hugging Face configs name.</summary>
public static class Activations
{
    /// <summary>The function for <paramref name="name"/>; an error naming the config key for unknown ones.</summary>
    public static Func<Tensor, Tensor> Get(string name, string configKey) => name switch
    {
        "silu" or "swish" => x => nn.functional.silu(x),
        "gelu" => x => nn.functional.gelu(x),
        "quick_gelu" => x => x * nn.functional.sigmoid(x * 1.702),
        _ => throw new NotSupportedException($"{configKey} '{name}' is not supported (silu, gelu, quick_gelu)"),
    };
}
