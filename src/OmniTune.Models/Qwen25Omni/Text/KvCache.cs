using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Text;

/// <summary>Keys and values (after rotary) of every decoder layer for incremental decoding; owns its tensors.</summary>
public sealed class KvCache : IDisposable
{
    readonly Tensor?[] keys, values;

    /// <summary>Creates an empty cache for <paramref name="layers"/> layers.</summary>
    public KvCache(int layers)
    {
        keys = new Tensor?[layers];
        values = new Tensor?[layers];
    }

    /// <summary>Cached positions (sequence length so far).</summary>
    public long Length => keys[0]?.shape[2] ?? 0;

    /// <summary>Appends a layer's new keys and values [B, kv heads, S, hd]; returns the whole cached keys and values.</summary>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor k, Tensor v)
    {
        Tensor newK = keys[layer] is null ? k.detach().clone() : cat([keys[layer]!, k.detach()], 2);
        Tensor newV = values[layer] is null ? v.detach().clone() : cat([values[layer]!, v.detach()], 2);
        keys[layer]?.Dispose();
        values[layer]?.Dispose();
        keys[layer] = newK.DetachFromDisposeScope();
        values[layer] = newV.DetachFromDisposeScope();
        return (keys[layer]!.alias(), values[layer]!.alias());
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (Tensor? t in keys.Concat(values)) t?.Dispose();
    }
}
