using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Thinker;

/// <summary>Writes encoder features into the placeholder positions of the token embeddings (reference §6).</summary>
public static class MultimodalEmbeddingMerge
{
    /// <summary>
    /// Replaces the embeddings of every <paramref name="placeholderId"/> token, row-major over the batch, by the rows of
    /// <paramref name="features"/> in order; a count mismatch is an error naming the modality and both counts.
    /// </summary>
    public static Tensor Scatter(Tensor embeddings, Tensor inputIds, long placeholderId, Tensor features, string modality)
    {
        using var scope = NewDisposeScope();
        Tensor mask = inputIds.eq(placeholderId);
        long placeholders = mask.sum().item<long>();
        if (placeholders != features.shape[0])
            throw new ArgumentException($"{modality}: the prompt has {placeholders} {modality} placeholder tokens but the {modality} encoder produced {features.shape[0]} features");
        Tensor expanded = mask.unsqueeze(-1).expand_as(embeddings);
        return embeddings.masked_scatter(expanded, features.to(embeddings.dtype)).MoveToOuterDisposeScope();
    }
}
