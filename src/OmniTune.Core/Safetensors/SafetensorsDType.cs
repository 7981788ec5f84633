using static TorchSharp.torch;

namespace OmniTune.Core.Safetensors;

/// <summary>Maps the dtype strings of the safetensors format to TorchSharp scalar types.</summary>
public static class SafetensorsDType
{
    static readonly Dictionary<string, ScalarType> ByName = new(StringComparer.Ordinal)
    {
        ["F64"] = ScalarType.Float64,
        ["F32"] = ScalarType.Float32,
        ["F16"] = ScalarType.Float16,
        ["BF16"] = ScalarType.BFloat16,
        ["I64"] = ScalarType.Int64,
        ["I32"] = ScalarType.Int32,
        ["I16"] = ScalarType.Int16,
        ["I8"] = ScalarType.Int8,
        ["U8"] = ScalarType.Byte,
        ["BOOL"] = ScalarType.Bool,
    };

    /// <summary>The names this reader accepts.</summary>
    public static IEnumerable<string> Known => ByName.Keys;

    /// <summary>The scalar type for a safetensors dtype name, or null when the name is unknown.</summary>
    public static ScalarType? TryParse(string name) => ByName.TryGetValue(name, out ScalarType t) ? t : null;

    /// <summary>The safetensors dtype name of a scalar type.</summary>
    public static string NameOf(ScalarType type)
    {
        foreach (var (name, t) in ByName)
        {
            if (t == type) return name;
        }
        throw new NotSupportedException($"dtype {type} cannot be stored in safetensors by OmniTune");
    }
}
