namespace OmniTune.Models.Qwen25Omni.Loading;

/// <summary>What a checkpoint load did.</summary>
/// <param name="Loaded">Tensors copied into the model.</param>
/// <param name="KeyPrefix">Prefix found on the thinker keys ("thinker." or "").</param>
/// <param name="SkippedSpeechKeys">talker.* / token2wav.* tensors skipped (speech output is out of scope).</param>
/// <param name="NotBuiltKeys">Valid thinker tensors of towers this model does not instantiate.</param>
/// <param name="TiedLmHead">Whether the LM head is tied to the embedding (no lm_head.weight in the checkpoint).</param>
public sealed record ThinkerLoadReport(int Loaded, string KeyPrefix, int SkippedSpeechKeys, IReadOnlyList<string> NotBuiltKeys, bool TiedLmHead)
{
    /// <summary>One human-readable line.</summary>
    public string Describe()
    {
        string notBuilt = NotBuiltKeys.Count == 0 ? "" :
            $"; {NotBuiltKeys.Count} tensors of towers not built here left unloaded ({string.Join(", ", NotBuiltKeys.Select(k => k.Split('.')[0]).Distinct())})";
        string speech = SkippedSpeechKeys == 0 ? "" : $"; {SkippedSpeechKeys} talker/token2wav tensors skipped";
        return $"loaded {Loaded} tensors (key prefix '{KeyPrefix}', lm_head {(TiedLmHead ? "tied to the embedding" : "separate")}){notBuilt}{speech}";
    }
}
