using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Common;

/// <summary>
/// The LM head and the cross-entropy fused over chunks of positions (the idea of Liger Kernel's fused linear
/// cross-entropy): the forward makes each chunk's logits, keeps only the per-token losses and lets the logits go; the
/// backward makes each chunk's logits again, turns them in place into (softmax − one-hot) · grad, and adds that chunk's
/// share of the head's weight gradient in place into <c>weight.grad</c> (as Megatron's gradient-accumulation fusion writes
/// into its main gradient). So one [chunk, V] buffer is the most it holds — never the full [tokens, V] logits, nor a
/// weight-sized gradient per chunk beside the accumulated one, which autograd would make. Losses and gradients agree with
/// the unfused head and <c>cross_entropy</c> to float32 rounding.
/// </summary>
public static class LinearCrossEntropy
{
    /// <summary>
    /// Per-token losses [N] (float32; 0 where the label is <see cref="CausalLmLoss.IgnoreIndex"/>) of hidden states
    /// [N, H] through the bias-free head <paramref name="weight"/> [V, H] against labels [N], <paramref name="chunk"/>
    /// positions at a time. The weight's gradient goes straight into its <c>.grad</c>; the hidden states' flows back.
    /// <paramref name="weight"/> must be the parameter itself (a module's own, alive until backward).
    /// </summary>
    public static Tensor Losses(Tensor hidden, Tensor weight, Tensor labels, long chunk)
    {
        if (hidden.dim() != 2 || weight.dim() != 2 || hidden.shape[1] != weight.shape[1])
            throw new ArgumentException($"hidden [N, H] and weight [V, H] expected, got [{string.Join(", ", hidden.shape)}] and [{string.Join(", ", weight.shape)}]");
        return Function.apply(hidden, weight, labels, Math.Max(1, chunk));
    }

    sealed class Function : autograd.SingleTensorFunction<Function>
    {
        const string ChunkKey = "chunk", HiddenGradKey = "hidden_requires_grad", WeightGradKey = "weight_requires_grad";

        public override string Name => "OmniTuneLinearCrossEntropy";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (hidden, weight, labels, chunk) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (long)vars[3]);
            ctx.save_for_backward([hidden.detach(), labels, weight]);   // a saved leaf unpacks as itself: its .grad is written in backward
            using var scope = NewDisposeScope();
            var parts = new List<Tensor>();
            for (long start = 0; start < hidden.shape[0]; start += chunk)
            {
                using var step = NewDisposeScope();
                long n = Math.Min(chunk, hidden.shape[0] - start);
                Tensor logits = nn.functional.linear(hidden.narrow(0, start, n), weight).to(ScalarType.Float32);
                parts.Add(nn.functional.cross_entropy(logits, labels.narrow(0, start, n), ignore_index: CausalLmLoss.IgnoreIndex, reduction: nn.Reduction.None)
                    .MoveToOuterDisposeScope());
            }
            ctx.save_data(ChunkKey, chunk);
            ctx.save_data(HiddenGradKey, hidden.requires_grad);
            ctx.save_data(WeightGradKey, weight.requires_grad);
            return cat(parts.ToArray()).MoveToOuterDisposeScope();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            using var scope = NewDisposeScope();
            var saved = ctx.get_saved_variables();
            var (hidden, labels, weight) = (saved[0], saved[1], saved[2]);
            long chunk = (long)ctx.get_data(ChunkKey);
            bool hiddenGrad = (bool)ctx.get_data(HiddenGradKey), weightGrad = (bool)ctx.get_data(WeightGradKey);
            var hiddenGrads = new List<Tensor>();
            Tensor valid = labels.ne(CausalLmLoss.IgnoreIndex);
            Tensor targets = labels.masked_fill(valid.logical_not(), 0).unsqueeze(1);
            Tensor scale = (grad.to(ScalarType.Float32) * valid.to(ScalarType.Float32)).unsqueeze(1);
            using (no_grad())
            {
                for (long start = 0; start < hidden.shape[0]; start += chunk)
                {
                    using var step = NewDisposeScope();
                    long n = Math.Min(chunk, hidden.shape[0] - start);
                    Tensor x = hidden.narrow(0, start, n);
                    // dL/dlogits = (softmax − one-hot) · grad, built in the logits' own buffer.
                    Tensor g = nn.functional.linear(x, weight).to(ScalarType.Float32);
                    g.sub_(g.amax([-1], keepdim: true)).exp_();
                    g.div_(g.sum([-1], keepdim: true));
                    g.scatter_add_(1, targets.narrow(0, start, n), full(n, 1, -1f, ScalarType.Float32, g.device));
                    g.mul_(scale.narrow(0, start, n));
                    Tensor gw = g.to(weight.dtype);
                    if (hiddenGrad) hiddenGrads.Add(gw.mm(weight).MoveToOuterDisposeScope());
                    if (weightGrad) Accumulate(weight, gw.t(), x);
                }
            }
            Tensor? hiddenResult = hiddenGrad ? cat(hiddenGrads.ToArray()).MoveToOuterDisposeScope() : null;
            return [hiddenResult!, null!, null!, null!];
        }

        /// <summary>Adds <paramref name="a"/>·<paramref name="b"/> to the parameter's gradient in place (or makes it the gradient).</summary>
        static void Accumulate(Tensor weight, Tensor a, Tensor b)
        {
            using Tensor? existing = weight.grad;
            if (existing is null) weight.grad = a.mm(b);
            else existing.addmm_(a, b);
        }
    }
}
