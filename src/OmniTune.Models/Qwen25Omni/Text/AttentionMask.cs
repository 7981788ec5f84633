using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Text;

/// <summary>
/// The decoder's attention mask: causal only (fast path, no tensor) or causal AND key-not-padding as a boolean
/// [B, 1, S, S] tensor (True = attend), Hugging Face's eager mask: a padded query attends to the real tokens before it
/// (not to itself), so with right padding (the collator's) logits agree at every position. A query with no real key
/// at all (left padding's first positions) attends to itself only, where Hugging Face's eager softmax spreads evenly
/// over every key: such rows stay finite (never NaN) and their outputs are never used. When the queries are a part of
/// the sequence (context parallel), <see cref="Attend"/> computes their attention against the whole sequence.
/// </summary>
public sealed class AttentionMask : IDisposable
{
    AttentionMask(Tensor? mask, Func<Tensor, Tensor, Tensor, Tensor>? attend = null) => (Mask, Attend) = (mask, attend);

    /// <summary>The boolean mask, or null for plain causal attention.</summary>
    public Tensor? Mask { get; }

    /// <summary>
    /// Attention (q [B, heads, S_local, D], k and v [B, kv heads, S_local, D] before the grouped-query repeat) → [B, heads,
    /// S_local, D], when the queries are only part of the sequence (context parallel: keys and values come from its
    /// group); null on one device.
    /// </summary>
    public Func<Tensor, Tensor, Tensor, Tensor>? Attend { get; }

    /// <summary>The mask as one tensor (an empty tensor for plain causal attention), to hand to recompute.</summary>
    public Tensor AsTensor() => Mask ?? empty(0, ScalarType.Bool);

    /// <summary>A mask from <see cref="AsTensor"/>'s form (and the partial attention, when any); the caller keeps ownership of the tensor.</summary>
    public static AttentionMask FromTensor(Tensor mask, Func<Tensor, Tensor, Tensor, Tensor>? attend = null) => new(mask.numel() == 0 ? null : mask.alias(), attend);

    /// <summary>Queries that are a part of the sequence, attended by <paramref name="attend"/> (context parallel).</summary>
    public static AttentionMask Partial(Func<Tensor, Tensor, Tensor, Tensor> attend) => new(null, attend);

    /// <summary>Causal mask for a batch without padding.</summary>
    public static AttentionMask Causal() => new(null);

    /// <summary>
    /// Builds the mask from a [B, S] padding mask (1 = token, 0 = padding); causal only when nothing is padded. A mask that
    /// numbers packed samples 1, 2, … (neat packing, LLaMA-Factory's form) keeps each query to its own sample's keys —
    /// block-diagonal causal attention — computed sample by sample (<see cref="Segmented"/>), never as an [S, S] mask.
    /// </summary>
    public static AttentionMask FromPadding(Tensor? paddingMask)
    {
        if (paddingMask is null) return Causal();
        using var scope = NewDisposeScope();
        Tensor keep = paddingMask.ne(0);
        if (paddingMask.max().to(ScalarType.Int64).item<long>() > 1) return Packed(paddingMask);
        if (keep.all().item<bool>()) return Causal();
        long s = paddingMask.shape[1];
        Tensor causal = ones(s, s, ScalarType.Bool, paddingMask.device).tril();           // [S, S]
        Tensor mask = causal.unsqueeze(0) & keep.unsqueeze(1);                            // [B, S, S]
        Tensor noKey = mask.any(-1, keepdim: true).logical_not();                        // [B, S, 1] queries without a real key
        mask = mask | (eye(s, s, ScalarType.Bool, paddingMask.device).unsqueeze(0) & noKey);   // those attend to themselves
        return new(mask.unsqueeze(1).MoveToOuterDisposeScope());                          // [B, 1, S, S]
    }

    /// <summary>Neat packing: each row's runs of one sample number (padding's run included) attended on their own.</summary>
    static AttentionMask Packed(Tensor samples)
    {
        long b = samples.shape[0], s = samples.shape[1];
        long[] values = samples.to(ScalarType.Int64).cpu().data<long>().ToArray();
        var rows = new List<(long Start, long Length)>[b];
        for (long r = 0; r < b; r++)
        {
            rows[r] = [];
            long start = 0;
            for (long i = 1; i <= s; i++)
            {
                if (i < s && values[r * s + i] == values[r * s + start]) continue;
                rows[r].Add((start, i - start));
                start = i;
            }
        }
        return Partial((q, k, v) => Segmented(q, k, v, rows));
    }

    /// <summary>
    /// Causal attention within each segment of each row (q [B, heads, S, D], k and v before the grouped-query repeat):
    /// block-diagonal causal attention with the fused causal kernel on each block — what each packed sample gets alone.
    /// A padded tail is a segment of its own (its outputs are never used).
    /// </summary>
    public static Tensor Segmented(Tensor q, Tensor k, Tensor v, IReadOnlyList<IReadOnlyList<(long Start, long Length)>> rows)
    {
        long groups = q.shape[1] / k.shape[1];
        if (groups > 1)
        {
            k = k.repeat_interleave(groups, 1);
            v = v.repeat_interleave(groups, 1);
        }
        var outputs = new Tensor[rows.Count];
        for (int r = 0; r < rows.Count; r++)
        {
            Tensor qr = q.narrow(0, r, 1), kr = k.narrow(0, r, 1), vr = v.narrow(0, r, 1);
            outputs[r] = cat(rows[r].Select(p => nn.functional.scaled_dot_product_attention(
                qr.narrow(2, p.Start, p.Length), kr.narrow(2, p.Start, p.Length), vr.narrow(2, p.Start, p.Length), is_casual: true)).ToArray(), 2);
        }
        return cat(outputs, 0);
    }

    /// <inheritdoc/>
    public void Dispose() => Mask?.Dispose();
}
