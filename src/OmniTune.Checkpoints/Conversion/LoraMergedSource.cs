using OmniTune.Models.Qwen25Omni.Config;
using static TorchSharp.torch;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>
/// Base weights with LoRA adapters merged in on the fly: W + (α/r)·B·A for every adapted linear weight, whichever way the
/// adapters were saved (<see cref="LoraCheckpoint"/>: PEFT's folder, or rank folders with PEFT parts or MindSpeed-MM's
/// fused keys).
/// </summary>
public sealed class LoraMergedSource : IThinkerTensorSource
{
    readonly IThinkerTensorSource baseSource;
    readonly LoraCheckpoint adapters;

    /// <summary>Wraps <paramref name="baseSource"/> with the adapters in <paramref name="adapterFolder"/>.</summary>
    public LoraMergedSource(IThinkerTensorSource baseSource, string adapterFolder)
    {
        this.baseSource = baseSource;
        adapters = LoraCheckpoint.Read(adapterFolder, baseSource.Config.Thinker, baseSource.TiedLmHead);
        foreach (var (module, (a, b)) in adapters.Modules)
        {
            long[] shape;
            try
            {
                shape = baseSource.Info(module + ".weight").Shape;
            }
            catch (KeyNotFoundException)
            {
                throw new InvalidDataException($"{adapterFolder}: adapter on {module} has no base weight {module}.weight");
            }
            if (b.shape[0] != shape[0] || a.shape[1] != shape[1] || a.shape[0] != b.shape[1])
                throw new InvalidDataException($"{adapterFolder}: adapter on {module} (A [{string.Join(", ", a.shape)}], B [{string.Join(", ", b.shape)}]) does not fit its weight [{string.Join(", ", shape)}]");
        }
    }

    /// <summary>Adapters merged (one per adapted projection).</summary>
    public int AdapterCount => adapters.Modules.Count;

    /// <inheritdoc/>
    public Qwen25OmniConfig Config => baseSource.Config;

    /// <inheritdoc/>
    public string ConfigFolder => baseSource.ConfigFolder;

    /// <inheritdoc/>
    public bool TiedLmHead => baseSource.TiedLmHead;

    /// <inheritdoc/>
    public (ScalarType DType, long[] Shape) Info(string key) => baseSource.Info(key);

    /// <inheritdoc/>
    public Tensor Read(string key)
    {
        Tensor weight = baseSource.Read(key);
        string module = key.EndsWith(".weight", StringComparison.Ordinal) ? key[..^".weight".Length] : "";
        if (!adapters.Modules.TryGetValue(module, out var adapter)) return weight;
        using (weight)
            return LoraMerge.Merged(weight, adapter.A, adapter.B, adapters.Scaling);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        adapters.Dispose();
        baseSource.Dispose();
    }
}
