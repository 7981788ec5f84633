using OmniTune.Models.Qwen25Omni.Config;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Thinker;

/// <summary>
/// Which parts of the thinker a process builds (the rest is placed on the meta device: shapes only, no memory). A
/// single process builds everything; a pipeline stage builds what its stage plan names. The model code itself stays
/// single-device: it only asks where each part lives.
/// </summary>
/// <param name="VisionBlocks">Vision encoder blocks built.</param>
/// <param name="PatchEmbed">The vision patch embedding (where the encoder starts).</param>
/// <param name="Merger">The vision patch merger (projector, where the encoder ends).</param>
/// <param name="AudioLayers">Audio encoder layers built.</param>
/// <param name="AudioFront">The audio conv stem and bos/eos embedding (where the encoder starts).</param>
/// <param name="AudioBack">The audio ln_post and projection (where the encoder ends).</param>
/// <param name="DecoderLayers">Text decoder layers built.</param>
/// <param name="Embedding">The token embedding (the decoder's first stage).</param>
/// <param name="Head">The final norm and LM head (the decoder's last stage).</param>
public sealed record ThinkerParts(IReadOnlySet<int> VisionBlocks, bool PatchEmbed, bool Merger, IReadOnlySet<int> AudioLayers, bool AudioFront,
    bool AudioBack, IReadOnlySet<int> DecoderLayers, bool Embedding, bool Head)
{
    /// <summary>The whole thinker.</summary>
    public static ThinkerParts All(Qwen25OmniThinkerConfig c) => new(
        Range(0, c.Vision.Depth), true, true, Range(0, c.Audio.EncoderLayers), true, true, Range(0, c.Text.NumHiddenLayers), true, true);

    /// <summary>Nothing (a start for unions).</summary>
    public static ThinkerParts None { get; } = new(new HashSet<int>(), false, false, new HashSet<int>(), false, false, new HashSet<int>(), false, false);

    /// <summary>Layers [from, to).</summary>
    public static IReadOnlySet<int> Range(int from, int to) => Enumerable.Range(from, Math.Max(0, to - from)).ToHashSet();

    /// <summary>Everything either part set builds (a rank that hosts several virtual pipeline chunks).</summary>
    public ThinkerParts Union(ThinkerParts o) => new(
        VisionBlocks.Union(o.VisionBlocks).ToHashSet(), PatchEmbed || o.PatchEmbed, Merger || o.Merger,
        AudioLayers.Union(o.AudioLayers).ToHashSet(), AudioFront || o.AudioFront, AudioBack || o.AudioBack,
        DecoderLayers.Union(o.DecoderLayers).ToHashSet(), Embedding || o.Embedding, Head || o.Head);

    /// <summary>Whether the parameter with Hugging Face key <paramref name="key"/> (no <c>thinker.</c> prefix) belongs to these parts.</summary>
    public bool Builds(string key)
    {
        static int Layer(string key, string prefix) => int.Parse(key.AsSpan(prefix.Length, key.IndexOf('.', prefix.Length) - prefix.Length), System.Globalization.CultureInfo.InvariantCulture);
        bool Starts(string prefix) => key.StartsWith(prefix, StringComparison.Ordinal);
        if (Starts("visual.patch_embed.")) return PatchEmbed;
        if (Starts("visual.blocks.")) return VisionBlocks.Contains(Layer(key, "visual.blocks."));
        if (Starts("visual.merger.")) return Merger;
        if (Starts("audio_tower.layers.")) return AudioLayers.Contains(Layer(key, "audio_tower.layers."));
        if (Starts("audio_tower.ln_post.") || Starts("audio_tower.proj.")) return AudioBack;
        if (Starts("audio_tower.")) return AudioFront;   // conv1, conv2, audio_bos_eos_token
        if (Starts("model.embed_tokens.")) return Embedding;
        if (Starts("model.layers.")) return DecoderLayers.Contains(Layer(key, "model.layers."));
        return Head;                                     // model.norm, lm_head
    }

    /// <summary><paramref name="device"/> when <paramref name="built"/>, else the meta device.</summary>
    public static Device? Place(bool built, Device? device) => built ? device : META;
}
