using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Distributed.TensorParallel;

/// <summary>
/// Cross-entropy over logits whose vocabulary is cut across a tensor-parallel group (each rank holds the logits of
/// its contiguous slice of the vocabulary): the maximum, the sum of exponentials and the target's logit are reduced
/// across the group as three small [N] tensors, so the full-vocabulary logits never exist on one rank. Backward is
/// softmax − one-hot on each rank's slice.
/// </summary>
public static class VocabParallelCrossEntropy
{
    /// <summary>
    /// Per-token losses [N] (float32, or float64 for float64 logits; 0 where the label is <paramref name="ignoreIndex"/>) for this rank's logits
    /// [N, V/size] (vocabulary rows rank·V/size …) and global labels [N].
    /// </summary>
    public static Tensor Losses(Tensor logits, Tensor labels, IProcessGroup group, long ignoreIndex = -100) =>
        Function.apply(logits, labels, group, ignoreIndex);

    sealed class Function : autograd.SingleTensorFunction<Function>
    {
        public override string Name => "OmniTuneVocabParallelCrossEntropy";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            using var scope = NewDisposeScope();
            var (logits, labels, group, ignore) = ((Tensor)vars[0], (Tensor)vars[1], (IProcessGroup)vars[2], (long)vars[3]);
            Tensor x = logits.dtype == ScalarType.Float64 ? logits : logits.to(ScalarType.Float32);   // float32 at least, as Hugging Face's loss
            long width = x.shape[^1], start = group.Rank * width;
            Tensor max = TensorParallelRegion.AllReduced(x.amax(-1), group, ReduceOp.Max);
            Tensor shifted = x - max.unsqueeze(-1);
            Tensor ignored = labels.eq(ignore);
            Tensor here = labels.ge(start).logical_and(labels.lt(start + width));
            Tensor local = (labels - start).masked_fill(here.logical_not(), 0);
            Tensor target = TensorParallelRegion.AllReduced(shifted.gather(-1, local.unsqueeze(-1)).squeeze(-1).masked_fill(here.logical_not(), 0), group);
            Tensor exp = shifted.exp();
            Tensor sum = TensorParallelRegion.AllReduced(exp.sum(-1), group);
            Tensor losses = (sum.log() - target).masked_fill(ignored, 0);
            Tensor softmax = exp.div_(sum.unsqueeze(-1));
            ctx.save_for_backward([softmax.DetachFromDisposeScope(), local.DetachFromDisposeScope(), here.logical_and(ignored.logical_not()).DetachFromDisposeScope(),
                ignored.DetachFromDisposeScope()]);
            ctx.save_data("dtype", logits.dtype);
            return losses.MoveToOuterDisposeScope();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            using var scope = NewDisposeScope();
            var saved = ctx.get_saved_variables();
            var (softmax, local, here, ignored) = (saved[0], saved[1], saved[2], saved[3]);
            Tensor g = softmax.clone();
            g.scatter_add_(-1, local.unsqueeze(-1), here.to(g.dtype).neg().unsqueeze(-1));
            g = (g * grad.to(g.dtype).unsqueeze(-1)).masked_fill(ignored.unsqueeze(-1), 0);
            Tensor result = g.to((ScalarType)ctx.get_data("dtype")).MoveToOuterDisposeScope();
            return [result, null!, null!, null!];
        }
    }
}
