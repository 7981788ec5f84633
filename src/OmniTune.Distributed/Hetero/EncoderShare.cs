using static TorchSharp.torch;

namespace OmniTune.Distributed.Hetero;

/// <summary>
/// Heterogeneous parallel for an encoder that is not cut while the decoder is: the ranks of the decoder's
/// tensor-parallel group, which all read the same micro-batch, each encode a contiguous share of its media items
/// (images, videos or audio clips, balanced by their patches or frames) instead of all encoding all of them — the
/// encoder is then data-parallel over every rank — and the encoded tokens are gathered back in item order, so every
/// rank merges the whole micro-batch's tokens. Backward, each rank keeps the gradient of its own items' tokens (the
/// decoder's tensor-parallel ranks hold the same, whole gradient of the merged embeddings); the encoder's parameter
/// gradients, each from its rank's items, are summed over the group before the step. Context parallel shares the
/// encoders the same way over its group (every rank reads the same micro-batch), summing the tokens' gradients backward.
/// </summary>
public static class EncoderShare
{
    /// <summary>
    /// Items [From, To) of rank <paramref name="rank"/> of <paramref name="size"/>: contiguous shares whose costs are as
    /// even as contiguous cuts allow (each cut where the running cost passes r/size of the total).
    /// </summary>
    public static (int From, int To) Share(IReadOnlyList<long> costs, int rank, int size)
    {
        long total = costs.Sum();
        int Cut(int r)
        {
            if (r <= 0) return 0;
            if (r >= size) return costs.Count;
            double target = (double)total * r / size;
            long running = 0;
            for (int i = 0; i < costs.Count; i++)
            {
                if (running + costs[i] / 2.0 >= target) return i;
                running += costs[i];
            }
            return costs.Count;
        }
        return (Cut(rank), Math.Max(Cut(rank), Cut(rank + 1)));
    }

    /// <summary>
    /// Every rank's <paramref name="local"/> rows ([n_r, H], n_r may be 0) concatenated in rank order; backward, this
    /// rank's rows of the gradient — summed over the group first with <paramref name="sumGradient"/> (context parallel:
    /// each rank holds the gradient of its own tokens only). With a summed gradient the backward is a collective: every
    /// rank's <paramref name="local"/> must then require gradients alike (a rank without items passes a leaf of 0 rows).
    /// </summary>
    public static Tensor GatherRows(Tensor local, IProcessGroup group, bool sumGradient = false) =>
        group.Size == 1 ? local : GatherRowsFunction.apply(local, group, sumGradient);

    sealed class GatherRowsFunction : autograd.SingleTensorFunction<GatherRowsFunction>
    {
        public override string Name => "OmniTuneEncoderGatherRows";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var x = (Tensor)vars[0];
            var group = (IProcessGroup)vars[1];
            using var scope = NewDisposeScope();
            long[] rows;
            using (Tensor count = tensor(new[] { x.shape[0] }))
            using (Tensor all = group.AllGather(count))
                rows = all.data<long>().ToArray();
            long most = rows.Max();
            long[] shape = x.shape;
            shape[0] = most;
            Tensor padded = zeros(shape, x.dtype, x.device);
            if (x.shape[0] > 0) padded.narrow(0, 0, x.shape[0]).copy_(x);
            Tensor gathered = group.AllGather(padded);   // [size · most, H]
            Tensor result = cat(Enumerable.Range(0, rows.Length).Select(r => gathered.narrow(0, r * most, rows[r])).ToArray(), 0);
            ctx.save_data("from", rows.Take(group.Rank).Sum());
            ctx.save_data("rows", rows[group.Rank]);
            ctx.save_data("group", group);
            ctx.save_data("sum", vars[2]);
            return result.MoveToOuterDisposeScope();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            Tensor whole = grad;
            if ((bool)ctx.get_data("sum"))
            {
                whole = grad.contiguous().clone();
                ((IProcessGroup)ctx.get_data("group")).AllReduce(whole);
            }
            return [whole.narrow(0, (long)ctx.get_data("from"), (long)ctx.get_data("rows")).contiguous(), null!, null!];
        }
    }
}
