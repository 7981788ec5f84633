using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Training.Optimization;

/// <summary>
/// TorchSharp's AdamW — the same maths, state and checkpoint format (its type name is the one the format records) — with
/// each parameter's update in a dispose scope of its own. TorchSharp's step keeps every temporary of every parameter (the
/// square root and the scaled denominator, each as large as the parameter) alive until the whole step ends, so the step
/// needed twice the trainable parameters' size on top of the moments; here each parameter's update runs in slices
/// with one temporary of at most 16 MiB.
/// </summary>
public sealed class AdamW : TorchSharp.Modules.AdamW
{
    /// <summary>AdamW over <paramref name="groups"/> (decoupled weight decay, no AMSGrad, minimising).</summary>
    public AdamW(IEnumerable<ParamGroup> groups, double lr, double beta1, double beta2, double eps, double weightDecay)
        : base(groups, lr, beta1, beta2, eps, weightDecay)
    {
    }

    /// <summary>
    /// Values this optimizer holds as state: both moments of every parameter it steps (TorchSharp allocates them when the
    /// optimizer is built, so this is what it holds from the start).
    /// </summary>
    public long StateValues => _parameter_groups.SelectMany(g => g.Parameters)
        .Sum(p => _state.TryGetValue(p.Handle, out var s) && s is State state ? state.exp_avg.numel() + state.exp_avg_sq.numel() : 0);

    /// <inheritdoc/>
    public override Tensor step(Func<Tensor>? closure = null)
    {
        if (closure is not null) throw new NotSupportedException("OmniTune's AdamW takes no closure");
        using var noGrad = no_grad();
        foreach (var group in _parameter_groups)
        {
            var options = (Options)group.Options;
            if (options.amsgrad == true || options.maximize == true) throw new NotSupportedException("OmniTune's AdamW has no AMSGrad or maximize variant");
            double beta1 = options.beta1!.Value, beta2 = options.beta2!.Value, lr = options.LearningRate!.Value, decay = options.weight_decay!.Value, eps = options.eps!.Value;
            foreach (var param in group.Parameters)
            {
                using var scope = NewDisposeScope();
                Tensor? grad = param.grad;
                if (grad is null) continue;
                var state = (State)_state[param.Handle];
                state.step += 1;
                param.mul_(1 - lr * decay);
                double correction1 = 1 - Math.Pow(beta1, state.step), correction2 = 1 - Math.Pow(beta2, state.step);
                state.exp_avg.mul_(beta1).add_(grad, alpha: 1 - beta1);
                state.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value: 1 - beta2);
                Update(param, state.exp_avg, state.exp_avg_sq, Math.Sqrt(correction2), eps, -lr / correction1);
            }
        }
        return null!;
    }

    /// <summary>
    /// param += step · m / (√v / correction + eps), slice by slice over the flat tensors, so the one temporary (the
    /// denominator) is at most <see cref="FlatSlices.Elements"/> long instead of the size of the largest parameter (the 7B's
    /// embedding: 2.2 GB in fp32). Element by element the same operations: the same result bit for bit.
    /// </summary>
    static void Update(Tensor param, Tensor m, Tensor v, double correction, double eps, double step)
    {
        if (!(param.is_contiguous() && m.is_contiguous() && v.is_contiguous()))
        {
            param.addcdiv_(m, v.sqrt().div_(correction).add_(eps), value: step);
            return;
        }
        using Tensor p = param.view(-1), mf = m.view(-1), vf = v.view(-1);
        foreach (var (start, n) in FlatSlices.Of(p.shape[0]))
        {
            using var scope = NewDisposeScope();
            p.narrow(0, start, n).addcdiv_(mf.narrow(0, start, n), vf.narrow(0, start, n).sqrt().div_(correction).add_(eps), value: step);
        }
    }
}
