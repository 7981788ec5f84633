using System.Text.Json;
using OmniTune.Core.Safetensors;
using OmniTune.Models.Qwen25Omni.Config;
using static TorchSharp.torch;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>
/// Base weights with LoRA adapters (PEFT layout: adapter_model.safetensors with <c>thinker.&lt;module&gt;.lora_A/B.weight</c>,
/// adapter_config.json with r and lora_alpha) merged in on the fly: W + (α/r)·B·A for every adapted linear weight.
/// </summary>
public sealed class LoraMergedSource : IThinkerTensorSource
{
    readonly IThinkerTensorSource baseSource;
    readonly SafetensorsCheckpoint adapters;
    readonly double scaling;

    /// <summary>Wraps <paramref name="baseSource"/> with the adapters in <paramref name="adapterFolder"/>.</summary>
    public LoraMergedSource(IThinkerTensorSource baseSource, string adapterFolder)
    {
        this.baseSource = baseSource;
        string config = Path.Combine(adapterFolder, "adapter_config.json");
        if (!File.Exists(config)) throw new FileNotFoundException($"{config}: no LoRA adapter config", config);
        using (var document = JsonDocument.Parse(File.ReadAllText(config)))
            scaling = document.RootElement.GetProperty("lora_alpha").GetDouble() / document.RootElement.GetProperty("r").GetInt32();
        adapters = SafetensorsCheckpoint.Open(Path.Combine(adapterFolder, "adapter_model.safetensors"));
        foreach (string key in adapters.Keys.Where(k => k.EndsWith(".lora_A.weight", StringComparison.Ordinal)))
        {
            string weight = key[..^".lora_A.weight".Length]["thinker.".Length..] + ".weight";
            try
            {
                baseSource.Info(weight);
            }
            catch (KeyNotFoundException)
            {
                throw new InvalidDataException($"{adapterFolder}: adapter {key} has no base weight {weight}");
            }
        }
    }

    /// <summary>Adapters merged.</summary>
    public int AdapterCount => adapters.Keys.Count(k => k.EndsWith(".lora_A.weight", StringComparison.Ordinal));

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
        string module = key.EndsWith(".weight", StringComparison.Ordinal) ? "thinker." + key[..^".weight".Length] : "";
        if (!adapters.Contains(module + ".lora_A.weight")) return weight;
        using Tensor a = adapters.Read(module + ".lora_A.weight"), b = adapters.Read(module + ".lora_B.weight");
        using (weight)
            return LoraMerge.Merged(weight, a, b, scaling);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        adapters.Dispose();
        baseSource.Dispose();
    }
}
