using OmniTune.Models.Qwen25Omni.Audio;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Text;
using OmniTune.Models.Qwen25Omni.Vision;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Thinker;

/// <summary>
/// The Qwen2.5-Omni thinker as Hugging Face names it (<c>Qwen2_5OmniThinkerForConditionalGeneration</c>): audio and
/// vision encoders whose features replace placeholder embeddings, the Qwen2 decoder with TMRoPE positions, the LM head.
/// </summary>
public sealed class Qwen25OmniThinkerForConditionalGeneration : nn.Module
{
    readonly Qwen25OmniAudioEncoder audio_tower;
    readonly Qwen25OmniVisionEncoder visual;
    readonly Qwen25OmniThinkerTextModel model;
    readonly nn.Module<Tensor, Tensor> lm_head;

    /// <summary>
    /// Creates the thinker; with <paramref name="tiedLmHead"/> the head shares the embedding matrix. <paramref name="parts"/>
    /// (all when null) says which parts are built on <paramref name="device"/>; the rest lives on the meta device.
    /// </summary>
    public Qwen25OmniThinkerForConditionalGeneration(Qwen25OmniThinkerConfig config, bool tiedLmHead, Device? device = null,
        ScalarType dtype = ScalarType.Float32, ThinkerParts? parts = null) : base("thinker")
    {
        if (tiedLmHead && parts is not null && parts.Embedding != parts.Head)
            throw new NotSupportedException("a tied LM head needs the token embedding and the head on the same pipeline stage");
        Config = config;
        TiedLmHead = tiedLmHead;
        Parts = parts ?? ThinkerParts.All(config);
        audio_tower = new Qwen25OmniAudioEncoder(config.Audio, device, dtype, parts);
        visual = new Qwen25OmniVisionEncoder(config.Vision, device, dtype, parts);
        model = new Qwen25OmniThinkerTextModel(config.Text, device, dtype, parts);
        Linear head = nn.Linear(config.Text.HiddenSize, config.Text.VocabSize, hasBias: false, device: ThinkerParts.Place(Parts.Head, device), dtype: dtype);
        if (tiedLmHead) head.weight = model.EmbeddingWeight;
        lm_head = head;
        RegisterComponents();
    }

    /// <summary>The parts this instance built (everything, unless it is a pipeline stage).</summary>
    public ThinkerParts Parts { get; }

    /// <summary>The thinker configuration.</summary>
    public Qwen25OmniThinkerConfig Config { get; }

    /// <summary>Whether lm_head.weight is the embedding matrix.</summary>
    public bool TiedLmHead { get; }

    /// <summary>The text decoder.</summary>
    public Qwen25OmniThinkerTextModel TextModel => model;

    /// <summary>The vision encoder.</summary>
    public Qwen25OmniVisionEncoder Visual => visual;

    /// <summary>The audio encoder.</summary>
    public Qwen25OmniAudioEncoder AudioTower => audio_tower;

    /// <summary>
    /// Built parameters by Hugging Face key (without the <c>thinker.</c> prefix); a tied head appears once, as the
    /// embedding; parts not built here (see <see cref="Parts"/>) are left out.
    /// </summary>
    public IEnumerable<(string Key, Parameter Parameter)> HuggingFaceParameters() =>
        named_parameters().Where(p => !(TiedLmHead && p.name == ThinkerWeightLayout.LmHeadKey) && Parts.Builds(p.name));

    /// <summary>
    /// The LM head's weight while the head is still this model's own bias-free linear layer (null once a plan has
    /// replaced it), for a caller that fuses the head with the loss; forward hooks on the head are that caller's to know of.
    /// </summary>
    public Parameter? HeadWeight => lm_head is Linear { bias: null } linear ? linear.weight : null;

    /// <summary>The LM head: hidden states [.., H] → logits [.., V].</summary>
    public Tensor Head(Tensor hidden) => lm_head.call(hidden);

    /// <summary>Text-only convenience: ids [B, S] (+ position ids [3, B, S], padding mask [B, S]) → logits [B, S, V].</summary>
    public Tensor Forward(Tensor inputIds, Tensor? positionIds = null, Tensor? paddingMask = null) =>
        Forward(new ThinkerInputs { InputIds = inputIds, PositionIds = positionIds, AttentionMask = paddingMask });

    /// <summary>Full multimodal forward → logits [B, S, V].</summary>
    public Tensor Forward(ThinkerInputs inputs)
    {
        using var scope = NewDisposeScope();
        Tensor embeddings = Embed(inputs);
        Tensor positions = inputs.PositionIds ?? PositionIds(inputs).Positions;
        Tensor hidden = model.Forward(embeddings, positions.to(embeddings.device), inputs.AttentionMask);
        return Head(hidden).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Prefill (when the cache is empty: the full multimodal prompt) or decode step (new token ids [1, n] with explicit
    /// position ids [3, 1, n]) with a KV cache → logits of the new positions.
    /// </summary>
    public Tensor ForwardWithCache(ThinkerInputs inputs, KvCache cache)
    {
        using var scope = NewDisposeScope();
        if (inputs.InputIds.shape[0] != 1) throw new ArgumentException("cached decoding handles one sequence at a time");
        Tensor embeddings = cache.Length == 0 ? Embed(inputs) : model.Embed(inputs.InputIds);
        Tensor positions = inputs.PositionIds ?? PositionIds(inputs).Positions;
        Tensor hidden = model.Forward(embeddings, positions.to(embeddings.device), null, cache);
        return lm_head.call(hidden).MoveToOuterDisposeScope();
    }

    /// <summary>Token embeddings with audio, image and video features written into their placeholders: [B, S, H].</summary>
    public Tensor Embed(ThinkerInputs inputs)
    {
        using var scope = NewDisposeScope();
        Tensor? audio = null;
        if (inputs.InputFeatures is not null)
        {
            var (features, lengths) = ValidAudioFrames(inputs);
            audio = audio_tower.Forward(features, lengths);
        }
        Tensor? images = inputs.PixelValues is null ? null : visual.Forward(inputs.PixelValues, inputs.ImageGrids);
        Tensor? videos = inputs.PixelValuesVideos is null ? null : visual.Forward(inputs.PixelValuesVideos, inputs.VideoGrids);
        return MergeMedia(model.Embed(inputs.InputIds), inputs.InputIds, audio, images, videos).MoveToOuterDisposeScope();
    }

    /// <summary>Writes encoder outputs (audio, image, video tokens, each optional) into their placeholders of the embeddings [B, S, H].</summary>
    public Tensor MergeMedia(Tensor embeddings, Tensor ids, Tensor? audio, Tensor? images, Tensor? videos)
    {
        if (audio is not null) embeddings = MultimodalEmbeddingMerge.Scatter(embeddings, ids, Config.AudioTokenId, audio, "audio");
        if (images is not null) embeddings = MultimodalEmbeddingMerge.Scatter(embeddings, ids, Config.ImageTokenId, images, "image");
        if (videos is not null) embeddings = MultimodalEmbeddingMerge.Scatter(embeddings, ids, Config.VideoTokenId, videos, "video");
        return embeddings;
    }

    /// <summary>TMRoPE position ids [3, B, S] and rope deltas [B] (already minus each row's padding) for generation.</summary>
    public (Tensor Positions, long[] RopeDeltas) PositionIds(ThinkerInputs inputs)
    {
        long[][] ids = Rows<long>(inputs.InputIds);
        int[][]? mask = inputs.AttentionMask is null ? null : Rows<long>(inputs.AttentionMask).Select(r => r.Select(v => (int)v).ToArray()).ToArray();
        int[] audioLengths = inputs.FeatureAttentionMask is null ? [] : Rows<long>(inputs.FeatureAttentionMask.to(ScalarType.Int64)).Select(r => (int)r.Sum()).ToArray();
        var result = RopeIndex.Compute(
            new RopeIndexInputs(ids, mask, inputs.ImageGrids, inputs.VideoGrids, inputs.VideoSecondsPerGrid, audioLengths, inputs.UseAudioInVideo),
            RopeIndexSettings.From(Config));
        long b = ids.Length, s = b == 0 ? 0 : ids[0].Length;
        var flat = result.Positions.SelectMany(r => r.SelectMany(row => row)).ToArray();
        long[] deltas = result.Deltas.Select((d, i) => d - (mask is null ? 0 : mask[i].Count(v => v == 0))).ToArray();
        return (tensor(flat, [3, b, s], device: inputs.InputIds.device), deltas);
    }

    /// <summary>The valid mel frames of all audios, [bins, ΣF], and each audio's frame count.</summary>
    public static (Tensor Features, int[] Lengths) ValidAudioFrames(ThinkerInputs inputs)
    {
        Tensor features = inputs.InputFeatures!;
        Tensor mask = inputs.FeatureAttentionMask ?? ones(features.shape[0], features.shape[2], ScalarType.Int64, features.device);
        int[] lengths = Rows<long>(mask.to(ScalarType.Int64)).Select(r => (int)r.Sum()).ToArray();
        // [A, bins, frames] -> [A, frames, bins] -> valid frames [ΣF, bins] -> [bins, ΣF]
        Tensor valid = features.permute(0, 2, 1).index(mask.to(ScalarType.Bool)).t();
        return (valid, lengths);
    }

    static T[][] Rows<T>(Tensor t) where T : unmanaged
    {
        using Tensor cpu = t.cpu().contiguous();
        T[] data = cpu.data<T>().ToArray();
        long cols = cpu.shape[1];
        return Enumerable.Range(0, (int)cpu.shape[0]).Select(r => data.AsSpan((int)(r * cols), (int)cols).ToArray()).ToArray();
    }
}
