using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Common;

/// <summary>
/// Reentrant activation checkpointing (TorchSharp has none): the forward pass of a segment runs without keeping
/// activations; backward re-runs it with gradients enabled (the CPU generator's state and that of every generator in
/// <see cref="ReplayedRandomness"/>, which accelerators draw from, replayed) and back-propagates through the recomputed
/// graph, so parameter gradients accumulate as usual and the input's gradient is returned.
/// </summary>
public sealed class ActivationCheckpoint : autograd.SingleTensorFunction<ActivationCheckpoint>
{
    const string SegmentKey = "segment", RngKey = "rng", DeviceRngKey = "device_rng", RequiresGradKey = "input_requires_grad";
    static long recomputations;

    /// <summary>Segments recomputed in backward so far in this process (tests check that recompute really ran).</summary>
    public static long Recomputations => Interlocked.Read(ref recomputations);

    /// <inheritdoc/>
    public override string Name => "OmniTuneActivationCheckpoint";

    /// <summary>
    /// Runs <paramref name="segment"/> on <paramref name="input"/> and the constant <paramref name="context"/> tensors
    /// (rotary tables, masks), recomputing it in backward. The segment must use only the tensors it is given: the
    /// caller's handles are gone by then.
    /// </summary>
    public static Tensor Run(Func<Tensor, Tensor[], Tensor> segment, Tensor input, Tensor[] context) => apply(input, segment, context);

    /// <inheritdoc/>
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var input = (Tensor)vars[0];
        var context = (Tensor[])vars[2];
        ctx.save_for_backward([input.detach(), .. context]);
        ctx.save_data(SegmentKey, vars[1]);
        ctx.save_data(RngKey, random.get_rng_state().bytes.ToArray());
        ctx.save_data(DeviceRngKey, ReplayedRandomness.Capture());
        ctx.save_data(RequiresGradKey, input.requires_grad);
        using var noGrad = no_grad();
        // The segment's temporaries (an LM head chunk's logits) go now, not with the caller's scope at the end of the step.
        using var scope = NewDisposeScope();
        return ((Func<Tensor, Tensor[], Tensor>)vars[1])(input, context).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var segment = (Func<Tensor, Tensor[], Tensor>)ctx.get_data(SegmentKey);
        bool inputRequiresGrad = (bool)ctx.get_data(RequiresGradKey);
        var variables = ctx.get_saved_variables();
        Tensor saved = variables[0];
        Tensor[] context = variables.Skip(1).ToArray();
        byte[] state = random.get_rng_state().bytes.ToArray();
        var deviceStates = ReplayedRandomness.Capture();
        random.set_rng_state(tensor((byte[])ctx.get_data(RngKey), ScalarType.Byte));
        ReplayedRandomness.Restore((List<(Generator, Tensor)>)ctx.get_data(DeviceRngKey));
        Interlocked.Increment(ref recomputations);
        try
        {
            using var enable = enable_grad();
            using var scope = NewDisposeScope();   // the recomputed graph's tensors go when this segment's backward ends
            Tensor input = saved.detach().requires_grad_(inputRequiresGrad);
            Tensor output = segment(input, context);
            autograd.backward([output], [grad_output]);
            return [(inputRequiresGrad ? input.grad! : zeros_like(saved)).MoveToOuterDisposeScope(), null!, null!];
        }
        finally
        {
            random.set_rng_state(tensor(state, ScalarType.Byte));
            ReplayedRandomness.Restore(deviceStates);
        }
    }
}
