using OmniTune.Distributed;
using OmniTune.Distributed.Pipeline;
using OmniTune.Distributed.Context;
using OmniTune.Distributed.Hetero;
using OmniTune.Distributed.TensorParallel;
using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Text;
using OmniTune.Models.Qwen25Omni.Thinker;
using static TorchSharp.torch;

namespace OmniTune.Training.Pipeline;

/// <summary>
/// One slot's share of the thinker's forward pass on a micro-batch, in the order a micro-batch meets the parts: vision
/// encoder (images, then videos), audio encoder, then the decoder (embedding and the merge of the encoder tokens where
/// it starts; final norm and LM head where it ends). Whatever arrives and this slot does not use is passed on. With
/// every part in one slot this is exactly <see cref="Qwen25OmniThinkerForConditionalGeneration.Forward(ThinkerInputs)"/>.
/// </summary>
public static class StageForward
{
    /// <summary>Names of the tensors that cross slots.</summary>
    public static class Names
    {
        /// <summary>Decoder hidden states [B, S, H].</summary>
        public const string DecoderHidden = "decoder.hidden";

        /// <summary>Audio encoder rows [T, D] before its last layer.</summary>
        public const string AudioHidden = "audio.hidden";

        /// <summary>Finished audio tokens [N, H].</summary>
        public const string AudioTokens = "audio.tokens";

        /// <summary>Vision encoder rows of images or videos before the merger.</summary>
        public static string VisionHidden(string kind) => $"vision.{kind}.hidden";

        /// <summary>Finished vision tokens of images or videos.</summary>
        public static string VisionTokens(string kind) => $"vision.{kind}.tokens";
    }

    /// <summary>
    /// Runs <paramref name="slot"/> on <paramref name="inputs"/> with what the previous slot sent (<paramref name="received"/>);
    /// returns what goes to the next slot, or on the decoder's last slot its final (normed) hidden states, which the loss
    /// turns into logits through <see cref="Qwen25OmniThinkerForConditionalGeneration.Head"/> (in chunks). With
    /// <paramref name="sequence"/> (sequence parallel) the decoder's hidden states are cut along the sequence after the
    /// merge and travel cut; the LM head (column-parallel) gathers them. With <paramref name="context"/> (context
    /// parallel) the decoder holds only this rank's load-balanced chunks of the sequence (<see cref="ContextSplit"/>):
    /// hidden states, positions and the final hidden states are this rank's tokens, attention gathers the keys and values
    /// of the whole sequence. The encoders run whole on every rank of the group. With <paramref name="encoderShare"/>
    /// (heterogeneous parallel, an encoder whole on this slot) the ranks of that group encode each a share of the
    /// micro-batch's media items and gather the tokens (<see cref="EncoderShare"/>).
    /// </summary>
    public static (Dictionary<string, Tensor> Outputs, Tensor? Final) Run(Qwen25OmniThinkerForConditionalGeneration model, StageSlot slot,
        ThinkerInputs inputs, IReadOnlyDictionary<string, Tensor> received, IProcessGroup? sequence = null, IProcessGroup? context = null,
        EncoderShares? encoderShare = null)
    {
        var pending = new Dictionary<string, Tensor>(received, StringComparer.Ordinal);   // taken out as used; the rest passes on
        Tensor Take(string name) => pending.Remove(name, out Tensor? t) ? t
            : throw new InvalidOperationException($"pipeline {slot}: expected '{name}' from the previous stage, got [{string.Join(", ", received.Keys)}]");
        var outputs = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var tokens = new Dictionary<string, Tensor>(StringComparer.Ordinal);   // finished encoder tokens for the merge on this slot

        void Finished(string name, Tensor t)
        {
            if (slot.Embedding) tokens[name] = t;
            else outputs[name] = t;
        }

        foreach (var (kind, pixels, grids) in new[] { ("image", inputs.PixelValues, inputs.ImageGrids), ("video", inputs.PixelValuesVideos, inputs.VideoGrids) })
        {
            if (pixels is null) continue;
            if (encoderShare?.Vision is { Size: > 1 } visionShare && slot.PatchEmbed && slot.Merger)
            {
                long[] patches = grids.Select(g => g.Patches).ToArray();
                var (from, to) = EncoderShare.Share(patches, visionShare.Rank, visionShare.Size);
                Tensor local;
                if (to > from)
                {
                    var mine = grids.Skip(from).Take(to - from).ToList();
                    using var pass = model.Visual.Prepare(mine, pixels.device);
                    Tensor x = model.Visual.Embed(pixels.narrow(0, patches.Take(from).Sum(), mine.Sum(g => g.Patches)), pass);
                    local = model.Visual.Merge(model.Visual.Blocks(x, pass, slot.Vision.From, slot.Vision.To), pass);
                }
                else
                {
                    local = NoItems(model.Visual, model.Config.Vision.OutHiddenSize, encoderShare.SumGradient && encoderShare.VisionTrains);
                }
                Finished(Names.VisionTokens(kind), EncoderShare.GatherRows(local, visionShare, encoderShare.SumGradient));
                continue;
            }
            if (slot.Vision.Count > 0)
            {
                using var pass = model.Visual.Prepare(grids, pixels.device);
                Tensor x = slot.PatchEmbed ? model.Visual.Embed(pixels, pass) : Take(Names.VisionHidden(kind));
                x = model.Visual.Blocks(x, pass, slot.Vision.From, slot.Vision.To);
                if (slot.Merger) Finished(Names.VisionTokens(kind), model.Visual.Merge(x, pass));
                else outputs[Names.VisionHidden(kind)] = x;
            }
            else if (slot.Embedding)
            {
                tokens[Names.VisionTokens(kind)] = Take(Names.VisionTokens(kind));
            }
        }
        if (inputs.InputFeatures is not null)
        {
            if (encoderShare?.Audio is { Size: > 1 } audioShare && slot.AudioFront && slot.AudioBack)
            {
                var (_, frames) = Qwen25OmniThinkerForConditionalGeneration.ValidAudioFrames(inputs);
                var (from, to) = EncoderShare.Share(frames.Select(f => (long)f).ToArray(), audioShare.Rank, audioShare.Size);
                Tensor local;
                if (to > from)
                {
                    var mine = inputs with
                    {
                        InputFeatures = inputs.InputFeatures.narrow(0, from, to - from),
                        FeatureAttentionMask = inputs.FeatureAttentionMask?.narrow(0, from, to - from),
                    };
                    var (features, lengths) = Qwen25OmniThinkerForConditionalGeneration.ValidAudioFrames(mine);
                    var pass = model.AudioTower.Prepare(lengths);
                    Tensor x = model.AudioTower.Layers(model.AudioTower.Embed(features, pass), pass, slot.Audio.From, slot.Audio.To);
                    local = model.AudioTower.Project(x, pass);
                }
                else
                {
                    local = NoItems(model.AudioTower, model.Config.Audio.OutputDim, encoderShare.SumGradient && encoderShare.AudioTrains);
                }
                Finished(Names.AudioTokens, EncoderShare.GatherRows(local, audioShare, encoderShare.SumGradient));
            }
            else if (slot.Audio.Count > 0)
            {
                var (features, lengths) = Qwen25OmniThinkerForConditionalGeneration.ValidAudioFrames(inputs);
                var pass = model.AudioTower.Prepare(lengths);
                Tensor x = slot.AudioFront ? model.AudioTower.Embed(features, pass) : Take(Names.AudioHidden);
                x = model.AudioTower.Layers(x, pass, slot.Audio.From, slot.Audio.To);
                if (slot.AudioBack) Finished(Names.AudioTokens, model.AudioTower.Project(x, pass));
                else outputs[Names.AudioHidden] = x;
            }
            else if (slot.Embedding)
            {
                tokens[Names.AudioTokens] = Take(Names.AudioTokens);
            }
        }
        if (slot.Decoder.Count > 0 || slot.Head)
        {
            Tensor h = slot.Embedding
                ? model.MergeMedia(model.TextModel.Embed(inputs.InputIds), inputs.InputIds, tokens.GetValueOrDefault(Names.AudioTokens),
                    tokens.GetValueOrDefault(Names.VisionTokens("image")), tokens.GetValueOrDefault(Names.VisionTokens("video")))
                : Take(Names.DecoderHidden);
            ContextSplit? split = context is { Size: > 1 } ? new ContextSplit(context, inputs.InputIds.shape[1]) : null;
            if (slot.Embedding && split is not null) h = split.Take(h, 1);
            if (slot.Embedding && sequence is not null) h = TensorParallelRegion.Scatter(h, sequence, 1);
            Tensor positions = (inputs.PositionIds ?? model.PositionIds(inputs).Positions).to(h.device);
            using (var pass = split is null
                       ? model.TextModel.Prepare(positions, inputs.AttentionMask, h.dtype)
                       : model.TextModel.Prepare(split.Take(positions, 2),
                           AttentionMask.Partial((q, k, v) => split.Attend(q, k, v, inputs.AttentionMask, ActivationCheckpoint.Run)), h.dtype))
                h = model.TextModel.Layers(h, pass, slot.Decoder.From, slot.Decoder.To);
            if (slot.Head) return (outputs, model.TextModel.Norm(h));
            outputs[Names.DecoderHidden] = h;
        }
        foreach (var (name, t) in pending) outputs[name] = t;   // not this slot's business: on to the next
        return (outputs, null);
    }

    /// <summary>
    /// The tokens of a rank that encodes none of the micro-batch's items: [0, width] in the encoder's dtype; when its peers'
    /// tokens carry gradients that are summed backward (<paramref name="joinsBackward"/>), a view of one of the encoder's
    /// trainable parameters, so that this rank's backward reaches the same collective (it adds nothing to the parameter).
    /// </summary>
    static Tensor NoItems(TorchSharp.torch.nn.Module encoder, long width, bool joinsBackward)
    {
        var parameters = encoder.parameters().ToList();
        TorchSharp.Modules.Parameter? trainable = joinsBackward && is_grad_enabled() ? parameters.FirstOrDefault(p => p.requires_grad) : null;
        if (trainable is not null) return trainable.reshape(-1).narrow(0, 0, 0).to(trainable.dtype).reshape(0, width);
        Tensor empty = zeros([0, width], parameters[0].dtype, parameters[0].device);
        return joinsBackward && is_grad_enabled() ? empty.requires_grad_(true) : empty;
    }
}

/// <summary>
/// The groups over which each whole encoder's media items are shared (null: not shared) — heterogeneous parallel's
/// tensor-parallel ranks, or context parallel's group (<paramref name="SumGradient"/>: each rank holds its own tokens'
/// gradients, summed backward; a rank without items then passes a leaf that requires gradients when the encoder trains,
/// so that every rank joins that backward collective).
/// </summary>
/// <param name="Vision">The vision encoder's.</param>
/// <param name="Audio">The audio encoder's.</param>
/// <param name="SumGradient">Sum the tokens' gradients over the group backward.</param>
/// <param name="VisionTrains">Whether the vision encoder (or an adapter on it) trains.</param>
/// <param name="AudioTrains">Whether the audio encoder (or an adapter on it) trains.</param>
public sealed record EncoderShares(IProcessGroup? Vision, IProcessGroup? Audio, bool SumGradient = false, bool VisionTrains = false, bool AudioTrains = false);
