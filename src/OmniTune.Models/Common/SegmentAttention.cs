using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Common;

/// <summary>
/// Bidirectional attention confined to consecutive segments of a packed sequence (block-diagonal attention, the
/// <c>cu_seqlens</c> of flash-attention). Segments of equal length run as one batched SDPA call; unequal ones are padded
/// to the longest with masked keys. Used by the vision windows and the audio chunks.
/// </summary>
public static class SegmentAttention
{
    /// <summary>q, k, v [N, heads, hd] with segment lengths summing to N → [N, heads, hd].</summary>
    public static Tensor Forward(Tensor q, Tensor k, Tensor v, IReadOnlyList<int> lengths)
    {
        using var scope = NewDisposeScope();
        long n = q.shape[0];
        if (lengths.Sum() != n) throw new ArgumentException($"segment lengths sum to {lengths.Sum()}, the sequence has {n} rows");
        int count = lengths.Count, longest = lengths.Max();
        Tensor result;
        if (lengths.All(l => l == longest))
        {
            // [N, h, d] -> [segments, L, h, d] -> [segments, h, L, d]
            Tensor Batch(Tensor t) => t.reshape(count, longest, t.shape[1], t.shape[2]).transpose(1, 2);
            Tensor attended = nn.functional.scaled_dot_product_attention(Batch(q), Batch(k), Batch(v));
            result = attended.transpose(1, 2).reshape(n, q.shape[1], q.shape[2]);
        }
        else
        {
            var gather = new long[count * longest];
            var valid = new bool[count * longest];
            var keep = new List<long>((int)n);
            long offset = 0;
            for (int s = 0; s < count; s++)
            {
                for (int i = 0; i < longest; i++)
                {
                    int slot = s * longest + i;
                    bool inside = i < lengths[s];
                    gather[slot] = inside ? offset + i : n;   // row n is an all-zero padding row
                    valid[slot] = inside;
                    if (inside) keep.Add(slot);
                }
                offset += lengths[s];
            }
            Tensor index = tensor(gather, device: q.device);
            Tensor Batch(Tensor t)
            {
                Tensor padded = cat([t, zeros(1, t.shape[1], t.shape[2], t.dtype, t.device)], 0).index_select(0, index);
                return padded.reshape(count, longest, t.shape[1], t.shape[2]).transpose(1, 2);   // [segments, h, L, d]
            }
            Tensor mask = tensor(valid, device: q.device).reshape(count, 1, 1, longest);
            Tensor attended = nn.functional.scaled_dot_product_attention(Batch(q), Batch(k), Batch(v), mask);
            result = attended.transpose(1, 2).reshape(count * longest, q.shape[1], q.shape[2]).index_select(0, tensor(keep.ToArray(), device: q.device));
        }
        return result.MoveToOuterDisposeScope();
    }
}
