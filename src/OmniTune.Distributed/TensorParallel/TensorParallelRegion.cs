using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Distributed.TensorParallel;

/// <summary>
/// The autograd mappings between a tensor-parallel region and the code around it (Megatron's <c>mappings.py</c>, our own
/// code): each is a collective in one direction and its adjoint in the other. Sequence variants cut or join dimension
/// <c>dim</c> (the sequence of [B, S, H] hidden states is dim 1). With a group of one every mapping is the identity and
/// returns its input, so single-process code takes the same path.
/// </summary>
public static class TensorParallelRegion
{
    /// <summary>Enters the region: identity forward, all-reduce of the gradient backward (column-parallel input).</summary>
    public static Tensor Copy(Tensor x, IProcessGroup group) => group.Size == 1 ? x : CopyFunction.apply(x, group);

    /// <summary>Leaves the region: all-reduce forward, identity backward (row-parallel output).</summary>
    public static Tensor Reduce(Tensor x, IProcessGroup group) => group.Size == 1 ? x : ReduceFunction.apply(x, group);

    /// <summary>Keeps this rank's slice of <paramref name="dim"/> forward, all-gathers the gradient backward.</summary>
    public static Tensor Scatter(Tensor x, IProcessGroup group, int dim) => group.Size == 1 ? x : ScatterFunction.apply(x, group, dim);

    /// <summary>
    /// All-gathers <paramref name="dim"/> forward; backward either reduce-scatters the gradient (<paramref name="reduceGradient"/>:
    /// the consumer is tensor-parallel, every rank holds a partial gradient of the whole) or keeps this rank's slice.
    /// </summary>
    public static Tensor Gather(Tensor x, IProcessGroup group, int dim, bool reduceGradient) =>
        group.Size == 1 ? x : GatherFunction.apply(x, group, dim, reduceGradient);

    /// <summary>Reduce-scatters <paramref name="dim"/> forward (row-parallel output with sequence parallel), all-gathers backward.</summary>
    public static Tensor ReduceScatter(Tensor x, IProcessGroup group, int dim) => group.Size == 1 ? x : ReduceScatterFunction.apply(x, group, dim);

    /// <summary>All-reduce of a copy (the input stays untouched).</summary>
    internal static Tensor AllReduced(Tensor x, IProcessGroup group, ReduceOp op = ReduceOp.Sum)
    {
        Tensor copy = x.contiguous().clone();
        group.AllReduce(copy, op);
        return copy;
    }

    /// <summary>Concatenation of every rank's <paramref name="x"/> along <paramref name="dim"/>.</summary>
    internal static Tensor AllGather(Tensor x, IProcessGroup group, int dim)
    {
        using var scope = NewDisposeScope();
        using Tensor front = x.transpose(0, dim).contiguous();
        return group.AllGather(front).transpose(0, dim).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Sum over ranks of <paramref name="x"/>, this rank's slice of <paramref name="dim"/>.</summary>
    internal static Tensor ReduceScatterAlong(Tensor x, IProcessGroup group, int dim)
    {
        RequireDivisible(x, group, dim);
        using var scope = NewDisposeScope();
        using Tensor front = x.transpose(0, dim).contiguous();
        return group.ReduceScatter(front).transpose(0, dim).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>This rank's slice of <paramref name="dim"/>.</summary>
    internal static Tensor Slice(Tensor x, IProcessGroup group, int dim)
    {
        RequireDivisible(x, group, dim);
        long size = x.shape[dim] / group.Size;
        return x.narrow(dim, group.Rank * size, size).contiguous();
    }

    static void RequireDivisible(Tensor x, IProcessGroup group, int dim)
    {
        if (x.shape[dim] % group.Size != 0)
            throw new ArgumentException($"group '{group.Name}': dimension {dim} of [{string.Join(", ", x.shape)}] does not split into {group.Size} equal parts");
    }

    static IProcessGroup GroupOf(autograd.AutogradContext ctx) => (IProcessGroup)ctx.get_data("group");

    sealed class CopyFunction : autograd.SingleTensorFunction<CopyFunction>
    {
        public override string Name => "OmniTuneTpCopy";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            ctx.save_data("group", vars[1]);
            return ((Tensor)vars[0]).clone();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad) => [AllReduced(grad, GroupOf(ctx)), null!];
    }

    sealed class ReduceFunction : autograd.SingleTensorFunction<ReduceFunction>
    {
        public override string Name => "OmniTuneTpReduce";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars) => AllReduced((Tensor)vars[0], (IProcessGroup)vars[1]);

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad) => [grad.clone(), null!];
    }

    sealed class ScatterFunction : autograd.SingleTensorFunction<ScatterFunction>
    {
        public override string Name => "OmniTuneTpScatter";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            ctx.save_data("group", vars[1]);
            ctx.save_data("dim", vars[2]);
            return Slice((Tensor)vars[0], (IProcessGroup)vars[1], (int)vars[2]);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad) => [AllGather(grad, GroupOf(ctx), (int)ctx.get_data("dim")), null!, null!];
    }

    sealed class GatherFunction : autograd.SingleTensorFunction<GatherFunction>
    {
        public override string Name => "OmniTuneTpGather";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            ctx.save_data("group", vars[1]);
            ctx.save_data("dim", vars[2]);
            ctx.save_data("reduce", vars[3]);
            return AllGather((Tensor)vars[0], (IProcessGroup)vars[1], (int)vars[2]);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            IProcessGroup group = GroupOf(ctx);
            int dim = (int)ctx.get_data("dim");
            return [(bool)ctx.get_data("reduce") ? ReduceScatterAlong(grad, group, dim) : Slice(grad, group, dim), null!, null!, null!];
        }
    }

    sealed class ReduceScatterFunction : autograd.SingleTensorFunction<ReduceScatterFunction>
    {
        public override string Name => "OmniTuneTpReduceScatter";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            ctx.save_data("group", vars[1]);
            ctx.save_data("dim", vars[2]);
            return ReduceScatterAlong((Tensor)vars[0], (IProcessGroup)vars[1], (int)vars[2]);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad) => [AllGather(grad, GroupOf(ctx), (int)ctx.get_data("dim")), null!, null!];
    }
}
