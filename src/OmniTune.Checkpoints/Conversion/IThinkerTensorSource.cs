using OmniTune.Models.Qwen25Omni.Config;
using static TorchSharp.torch;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>Thinker tensors by Hugging Face key (without the <c>thinker.</c> prefix), read one at a time.</summary>
public interface IThinkerTensorSource : IDisposable
{
    /// <summary>The model's configuration file (full Qwen2.5-Omni config).</summary>
    Qwen25OmniConfig Config { get; }

    /// <summary>Folder holding config.json (and tokenizer files) of the model.</summary>
    string ConfigFolder { get; }

    /// <summary>Whether the LM head is tied (no lm_head.weight).</summary>
    bool TiedLmHead { get; }

    /// <summary>Element type and shape of a key.</summary>
    (ScalarType DType, long[] Shape) Info(string key);

    /// <summary>Reads a key's tensor (CPU).</summary>
    Tensor Read(string key);

    /// <summary>
    /// Reads part <paramref name="part"/> of <paramref name="parts"/> equal blocks of dimension <paramref name="dim"/> of a
    /// key's tensor (a tensor-parallel rank's share). By default the whole tensor is read and cut; a source stored in
    /// tensor-parallel parts reads only the one asked for.
    /// </summary>
    Tensor ReadPart(string key, int dim, int part, int parts)
    {
        using Tensor whole = Read(key);
        long size = whole.shape[dim] / parts;
        return whole.narrow(dim, part * size, size).contiguous();
    }
}
