using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Positions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Audio;

/// <summary>
/// The Whisper-style audio encoder of the thinker (HF <c>Qwen2_5OmniAudioEncoder</c>, keys <c>audio_tower.*</c>):
/// each audio is cut into chunks of 2·n_window mel frames; every chunk passes the conv stem alone (zero padding at its
/// edges) with positions restarting at 0; attention stays inside chunks; each audio is average-pooled by 2, normed
/// and projected (reference §5).
/// </summary>
public sealed class Qwen25OmniAudioEncoder : nn.Module
{
    readonly Conv1d conv1, conv2;
    readonly ModuleList<Qwen25OmniAudioEncoderLayer> layers;
    readonly LayerNorm ln_post;
    readonly Linear proj;
    readonly Embedding audio_bos_eos_token;
    readonly Func<Tensor, Tensor> activation;
    readonly Qwen25OmniAudioConfig config;

    /// <summary>Creates the encoder.</summary>
    public Qwen25OmniAudioEncoder(Qwen25OmniAudioConfig config, Device? device, ScalarType dtype) : base("audio_tower")
    {
        this.config = config;
        activation = Activations.Get(config.ActivationFunction, "audio_config.activation_function");
        conv1 = nn.Conv1d(config.NumMelBins, config.DModel, 3, padding: 1, device: device, dtype: dtype);
        conv2 = nn.Conv1d(config.DModel, config.DModel, 3, stride: 2, padding: 1, device: device, dtype: dtype);
        layers = new ModuleList<Qwen25OmniAudioEncoderLayer>();
        for (int i = 0; i < config.EncoderLayers; i++) layers.Add(new Qwen25OmniAudioEncoderLayer(config, device, dtype));
        ln_post = nn.LayerNorm(config.DModel, 1e-5, device: device, dtype: dtype);
        proj = nn.Linear(config.DModel, config.OutputDim, hasBias: true, device: device, dtype: dtype);
        audio_bos_eos_token = nn.Embedding(2, config.OutputDim, device: device, dtype: dtype);   // in the checkpoint, unused
        RegisterComponents();
    }

    /// <summary>Activation recompute of the encoder layers while training (none when null).</summary>
    public RecomputeSettings? Recompute { get; set; }

    /// <summary>Chunk lengths (mel frames) of an audio: full chunks of 2·n_window and the remainder.</summary>
    public static int[] ChunkLengths(int frames, int nWindow)
    {
        int chunk = 2 * nWindow;
        int count = (frames + chunk - 1) / chunk;
        return Enumerable.Range(0, count).Select(i => i < count - 1 || frames % chunk == 0 ? chunk : frames % chunk).ToArray();
    }

    /// <summary>
    /// Mel frames of all audios concatenated, [mel bins, ΣF], with each audio's frame count → tokens [Σ tokens, out].
    /// </summary>
    public Tensor Forward(Tensor features, IReadOnlyList<int> frameCounts)
    {
        using var scope = NewDisposeScope();
        if (frameCounts.Sum() != features.shape[1])
            throw new ArgumentException($"audio features have {features.shape[1]} frames but the lengths sum to {frameCounts.Sum()}");
        foreach (int f in frameCounts)
        {
            if (AudioLengths.Tokens(f) < 1) throw new ArgumentException($"an audio of {f} mel frames is too short to give a token (at least 3 frames, about 30 ms)");
        }
        var chunks = frameCounts.SelectMany(f => ChunkLengths(f, config.NWindow)).ToArray();
        int longest = chunks.Max();
        Tensor weight = conv1.weight!;
        // [bins, ΣF] -> chunks -> zero-padded batch [chunks, bins, longest] with a validity mask [chunks, 1, longest]
        var pieces = features.to(weight.dtype).split(chunks.Select(c => (long)c).ToArray(), 1);
        Tensor batch = stack(pieces.Select(p => nn.functional.pad(p, [0, longest - p.shape[1]])).ToArray());
        Tensor mask = tensor(chunks.SelectMany(c => Enumerable.Range(0, longest).Select(i => i < c)).ToArray(), device: batch.device)
            .reshape(chunks.Length, 1, longest).to(batch.dtype);
        Tensor h = activation(conv1.forward(batch)) * mask;
        h = activation(conv2.forward(h)).transpose(1, 2);                                    // [chunks, L', D]
        if (h.shape[1] > config.MaxSourcePositions)
            throw new ArgumentException($"audio chunks of {h.shape[1]} frames after the conv stem exceed max_source_positions {config.MaxSourcePositions}");
        h = h + SinusoidPositions.Table((int)h.shape[1], config.DModel, h.device).to(h.dtype).unsqueeze(0);
        int[] afterConv = chunks.Select(AudioLengths.AfterConv).ToArray();
        Tensor keep = tensor(afterConv.SelectMany(c => Enumerable.Range(0, (int)h.shape[1]).Select(i => i < c)).ToArray(), device: h.device);
        Tensor x = h.reshape(-1, h.shape[2]).index_select(0, keep.nonzero().squeeze(1));   // [T, D]
        x = RecomputeSettings.Run(Recompute, layers.Count, x, [], (i, h, _) => layers[i].Forward(h, afterConv));

        var outputs = new List<Tensor>();
        long offset = 0;
        foreach (int f in frameCounts)
        {
            int length = AudioLengths.AfterConv(f);
            int pooled = length / 2;
            // average pool by 2 over time (a trailing odd frame is dropped)
            Tensor audio = x.narrow(0, offset, pooled * 2).reshape(pooled, 2, -1).mean([1]);
            outputs.Add(proj.call(ln_post.forward(audio)));
            offset += length;
        }
        return cat(outputs, 0).MoveToOuterDisposeScope();
    }
}
