using OmniTune.Core.Safetensors;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Models.Qwen25Omni.Thinker;
using static TorchSharp.torch;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>A Hugging Face Qwen2.5-Omni folder (full model or thinker alone) as a tensor source; checks every thinker key first.</summary>
public sealed class HfTensorSource : IThinkerTensorSource
{
    readonly SafetensorsCheckpoint checkpoint;
    readonly string prefix;

    /// <summary>Opens <paramref name="folder"/>.</summary>
    public HfTensorSource(string folder)
    {
        (Config, _) = Qwen25OmniConfigLoader.Load(folder);
        ConfigFolder = folder;
        checkpoint = SafetensorsCheckpoint.Open(folder);
        prefix = ThinkerCheckpointLoader.DetectPrefix(checkpoint);
        TiedLmHead = !checkpoint.Contains(prefix + ThinkerWeightLayout.LmHeadKey);
        var comparison = ThinkerCheckpointLoader.Compare(checkpoint, ThinkerWeightLayout.For(Config.Thinker, TiedLmHead));
        if (!comparison.Matches)
        {
            checkpoint.Dispose();
            throw new CheckpointMismatchException(ThinkerCheckpointLoader.DescribeMismatch(folder, comparison.Missing, comparison.Unexpected, comparison.ShapeErrors));
        }
    }

    /// <inheritdoc/>
    public Qwen25OmniConfig Config { get; }

    /// <inheritdoc/>
    public string ConfigFolder { get; }

    /// <inheritdoc/>
    public bool TiedLmHead { get; }

    /// <summary>Keys of the checkpoint outside the thinker (talker, token2wav), with their full names.</summary>
    public IEnumerable<string> OtherKeys => prefix.Length > 0
        ? checkpoint.Keys.Where(k => !k.StartsWith(prefix, StringComparison.Ordinal))
        : checkpoint.Keys.Where(k => k.StartsWith("talker.", StringComparison.Ordinal) || k.StartsWith("token2wav.", StringComparison.Ordinal));

    /// <summary>The checkpoint's key of a thinker key (with the folder's own prefix, "thinker." or none).</summary>
    public string FullName(string key) => prefix + key;

    /// <summary>The checkpoint as stored (shard names, metadata), for writing a copy laid out alike.</summary>
    public SafetensorsCheckpoint Stored => checkpoint;

    /// <summary>Reads a key by its full name.</summary>
    public Tensor ReadRaw(string key) => checkpoint.Read(key);

    /// <summary>Info by full name.</summary>
    public SafetensorsTensorInfo InfoRaw(string key) => checkpoint.Info(key);

    /// <inheritdoc/>
    public (ScalarType DType, long[] Shape) Info(string key)
    {
        var info = checkpoint.Info(prefix + key);
        return (info.DType, info.Shape);
    }

    /// <inheritdoc/>
    public Tensor Read(string key) => checkpoint.Read(prefix + key);

    /// <inheritdoc/>
    public void Dispose() => checkpoint.Dispose();
}
