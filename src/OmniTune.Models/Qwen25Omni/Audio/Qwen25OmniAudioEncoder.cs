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

    /// <summary>Creates the encoder; <paramref name="parts"/> (all when null) says which parts are built on <paramref name="device"/>.</summary>
    public Qwen25OmniAudioEncoder(Qwen25OmniAudioConfig config, Device? device, ScalarType dtype, Thinker.ThinkerParts? parts = null) : base("audio_tower")
    {
        this.config = config;
        activation = Activations.Get(config.ActivationFunction, "audio_config.activation_function");
        Device? front = Thinker.ThinkerParts.Place(parts?.AudioFront ?? true, device), back = Thinker.ThinkerParts.Place(parts?.AudioBack ?? true, device);
        conv1 = nn.Conv1d(config.NumMelBins, config.DModel, 3, padding: 1, device: front, dtype: dtype);
        conv2 = nn.Conv1d(config.DModel, config.DModel, 3, stride: 2, padding: 1, device: front, dtype: dtype);
        layers = new ModuleList<Qwen25OmniAudioEncoderLayer>();
        for (int i = 0; i < config.EncoderLayers; i++)
            layers.Add(new Qwen25OmniAudioEncoderLayer(config, Thinker.ThinkerParts.Place(parts?.AudioLayers.Contains(i) ?? true, device), dtype));
        ln_post = nn.LayerNorm(config.DModel, 1e-5, device: back, dtype: dtype);
        proj = nn.Linear(config.DModel, config.OutputDim, hasBias: true, device: back, dtype: dtype);
        audio_bos_eos_token = nn.Embedding(2, config.OutputDim, device: front, dtype: dtype);   // in the checkpoint, unused
        RegisterComponents();
    }

    /// <summary>Activation recompute of the encoder layers while training (none when null).</summary>
    public RecomputeSettings? Recompute { get; set; }

    /// <summary>Optional: watches the layers in training (the trainer's overlapped gradient reduction).</summary>
    public ILayerProgress? Progress { get; set; }

    /// <summary>Chunk lengths (mel frames) of an audio: full chunks of 2·n_window and the remainder.</summary>
    public static int[] ChunkLengths(int frames, int nWindow)
    {
        int chunk = 2 * nWindow;
        int count = (frames + chunk - 1) / chunk;
        return Enumerable.Range(0, count).Select(i => i < count - 1 || frames % chunk == 0 ? chunk : frames % chunk).ToArray();
    }

    /// <summary>Number of encoder layers.</summary>
    public int LayerCount => layers.Count;

    /// <summary>
    /// Mel frames of all audios concatenated, [mel bins, ΣF], with each audio's frame count → tokens [Σ tokens, out].
    /// </summary>
    public Tensor Forward(Tensor features, IReadOnlyList<int> frameCounts)
    {
        using var scope = NewDisposeScope();
        var pass = Prepare(frameCounts);
        Tensor x = Embed(features, pass);
        x = Layers(x, pass, 0, layers.Count);
        return Project(x, pass).MoveToOuterDisposeScope();
    }

    /// <summary>The chunking of the audios, from their frame counts alone.</summary>
    public AudioPass Prepare(IReadOnlyList<int> frameCounts)
    {
        foreach (int f in frameCounts)
        {
            if (AudioLengths.Tokens(f) < 1) throw new ArgumentException($"an audio of {f} mel frames is too short to give a token (at least 3 frames, about 30 ms)");
        }
        int[] chunks = frameCounts.SelectMany(f => ChunkLengths(f, config.NWindow)).ToArray();
        return new AudioPass([.. frameCounts], chunks, chunks.Select(AudioLengths.AfterConv).ToArray());
    }

    /// <summary>Conv stem per chunk and sinusoid positions: mel frames [bins, ΣF] → hidden rows [T, D] of the valid frames.</summary>
    public Tensor Embed(Tensor features, AudioPass pass)
    {
        using var scope = NewDisposeScope();
        if (pass.FrameCounts.Sum() != features.shape[1])
            throw new ArgumentException($"audio features have {features.shape[1]} frames but the lengths sum to {pass.FrameCounts.Sum()}");
        int[] chunks = pass.Chunks;
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
        Tensor keep = tensor(pass.AfterConv.SelectMany(c => Enumerable.Range(0, (int)h.shape[1]).Select(i => i < c)).ToArray(), device: h.device);
        return h.reshape(-1, h.shape[2]).index_select(0, keep.nonzero().squeeze(1)).MoveToOuterDisposeScope();   // [T, D]
    }

    /// <summary>Encoder layers [<paramref name="from"/>, <paramref name="to"/>) on hidden rows [T, D] (attention inside each chunk).</summary>
    public Tensor Layers(Tensor x, AudioPass pass, int from, int to) =>
        RecomputeSettings.Run(Recompute, from, to, x, [], (i, h, _) => layers[i].Forward(h, pass.AfterConv), Progress);

    /// <summary>Average pool by 2 per audio, ln_post and projection: hidden rows [T, D] → tokens [Σ tokens, out].</summary>
    public Tensor Project(Tensor x, AudioPass pass)
    {
        using var scope = NewDisposeScope();
        var outputs = new List<Tensor>();
        long offset = 0;
        foreach (int f in pass.FrameCounts)
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

/// <summary>How one audio batch is chunked (frame counts only, no tensors).</summary>
/// <param name="FrameCounts">Mel frames of each audio.</param>
/// <param name="Chunks">Frames of every chunk, audio after audio.</param>
/// <param name="AfterConv">Frames of every chunk after the conv stem.</param>
public sealed record AudioPass(int[] FrameCounts, int[] Chunks, int[] AfterConv);
