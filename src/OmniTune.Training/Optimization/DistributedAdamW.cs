using OmniTune.Core.Safetensors;
using OmniTune.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Training.Optimization;

/// <summary>
/// ZeRO-1 AdamW (Megatron's --use-distributed-optimizer): the trainable parameters are laid end to end in one flat
/// fp32 space cut into equal contiguous shards, one per data-parallel rank. Each rank keeps the fp32 master values and
/// Adam moments of its shard only; gradients are reduce-scattered into shards, the shard is updated (same formulas as
/// torch's AdamW: decoupled weight decay, bias-corrected moments), and the shards are all-gathered back into the model.
/// The optimizer state is saved gathered and by parameter name, so it resumes at any data-parallel size.
/// </summary>
public sealed class DistributedAdamW : IDisposable
{
    /// <summary>File of the optimizer state in a checkpoint folder.</summary>
    public const string FileName = "distrib_optim.safetensors";

    readonly List<(string Name, Parameter Parameter)> parameters;
    readonly IProcessGroup group, collectives;
    readonly Device device;
    readonly long total, padded, shardSize, shardStart;
    readonly Tensor master, expAvg, expAvgSq, decayMask, normMask;
    readonly double beta1, beta2, eps, weightDecay;
    long step;

    /// <summary>
    /// Creates the optimizer over <paramref name="trainable"/> for <paramref name="dataParallel"/>; <paramref name="countsInNorm"/>
    /// says which parameters this rank counts in the global gradient norm (all when null; under tensor parallel a whole
    /// parameter counts on one rank of the group). The state lives on the parameters' device; <paramref name="deviceGroup"/>
    /// (the same ranks over NCCL when the parameters are on CUDA) carries the reduce-scatter and all-gathers, the
    /// data-parallel group the scalar reductions.
    /// </summary>
    public DistributedAdamW(List<(string Name, Parameter Parameter)> trainable, IProcessGroup dataParallel, double beta1, double beta2, double eps, double weightDecay,
        Func<string, bool>? countsInNorm = null, IProcessGroup? deviceGroup = null)
    {
        parameters = trainable;
        group = dataParallel;
        collectives = deviceGroup ?? dataParallel;
        device = trainable.Count > 0 ? trainable[0].Parameter.device : CPU;
        (this.beta1, this.beta2, this.eps, this.weightDecay) = (beta1, beta2, eps, weightDecay);
        total = trainable.Sum(p => p.Parameter.numel());
        padded = Math.Max(group.Size, (total + group.Size - 1) / group.Size * group.Size);   // a stage without trainable parameters keeps one padding element per rank
        shardSize = padded / group.Size;
        shardStart = group.Rank * shardSize;
        using var scope = NewDisposeScope();
        Tensor flat = Flatten(p => p.detach().to(ScalarType.Float32));
        master = flat.narrow(0, shardStart, shardSize).clone().DetachFromDisposeScope();
        expAvg = zeros(shardSize, device: device).DetachFromDisposeScope();
        expAvgSq = zeros(shardSize, device: device).DetachFromDisposeScope();
        Tensor mask = Flatten(p => full_like(p.detach().to(ScalarType.Float32), TrainableParameters.Decays(parameters.First(x => ReferenceEquals(x.Parameter, p)).Name, p) ? 1.0 : 0.0));
        decayMask = mask.narrow(0, shardStart, shardSize).clone().DetachFromDisposeScope();
        Tensor counted = Flatten(p => full_like(p.detach().to(ScalarType.Float32), countsInNorm?.Invoke(parameters.First(x => ReferenceEquals(x.Parameter, p)).Name) ?? true ? 1.0 : 0.0));
        normMask = counted.narrow(0, shardStart, shardSize).to(ScalarType.Float64).DetachFromDisposeScope();
    }

    /// <summary>Elements owned by this rank.</summary>
    public long ShardSize => shardSize;

    Tensor Flatten(Func<Parameter, Tensor> part)
    {
        var pieces = new List<Tensor>();
        foreach (var (_, p) in parameters)
        {
            using Tensor whole = part(p);
            pieces.Add(whole.reshape(-1));
        }
        if (padded > total) pieces.Add(zeros(padded - total, device: device));
        Tensor flat = cat(pieces.ToArray());
        foreach (Tensor piece in pieces) piece.Dispose();   // no handle keeps a gradient's storage alive once the caller lets it go
        return flat;
    }

    /// <summary>
    /// Reduce-scatters the gradients (averaged over ranks unless <paramref name="average"/> is false), returns the global
    /// gradient norm, clips to <paramref name="clip"/> (0 = no clipping), updates this rank's shard with
    /// <paramref name="lr"/> and all-gathers the new parameters into the model. A non-finite norm skips the update.
    /// With <paramref name="pipeline"/> and <paramref name="tensor"/>, the squares of every stage's and every tensor-parallel
    /// rank's gradients count in the norm.
    /// </summary>
    public double Step(double lr, double clip, bool average, IProcessGroup? pipeline = null, IProcessGroup? tensor = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Tensor grads = Flatten(p => p.grad is null ? zeros_like(p, dtype: ScalarType.Float32) : p.grad.to(ScalarType.Float32));
        Tensor shard = collectives.ReduceScatter(grads);
        // The flat copy and the model's gradients are spent: freed before the all-gather, which needs a full-size buffer too.
        grads.Dispose();
        foreach (var (_, p) in parameters) p.grad = null;
        if (average) shard.div_(group.Size);
        using Tensor squares = torch.tensor(new[] { SquaredNorm.Of(shard, normMask).item<double>() });
        group.AllReduce(squares);
        tensor?.AllReduce(squares);     // the other tensor-parallel parts
        pipeline?.AllReduce(squares);   // the other stages' parameters count in the global norm
        double norm = Math.Sqrt(squares.item<double>());
        if (!double.IsFinite(norm)) return norm;
        if (clip > 0 && norm > clip) shard.mul_(clip / (norm + 1e-6));
        step++;
        double correction1 = 1 - Math.Pow(beta1, step), correction2 = 1 - Math.Pow(beta2, step);
        // Slice by slice (FlatSlices): the same element-wise operations, with temporaries one slice long, not shard-sized.
        foreach (var (start, n) in FlatSlices.Of(shardSize))
        {
            using var slice = NewDisposeScope();
            Tensor w = master.narrow(0, start, n), g = shard.narrow(0, start, n), m = expAvg.narrow(0, start, n), v = expAvgSq.narrow(0, start, n);
            w.sub_(w * decayMask.narrow(0, start, n) * (lr * weightDecay));
            m.mul_(beta1).add_(g, alpha: 1 - beta1);
            v.mul_(beta2).addcmul_(g, g, value: 1 - beta2);
            w.addcdiv_(m, v.sqrt().div_(Math.Sqrt(correction2)).add_(eps), value: -lr / correction1);
        }
        Tensor full = collectives.AllGather(master);
        long offset = 0;
        foreach (var (_, p) in parameters)
        {
            long n = p.numel();
            p.copy_(full.narrow(0, offset, n).view(p.shape).to(p.dtype));
            p.grad = null;
            offset += n;
        }
        return norm;
    }

    /// <summary>Writes the gathered optimizer state by parameter name (rank 0 writes; every rank takes part).</summary>
    public void Save(string path)
    {
        using var scope = NewDisposeScope();
        Tensor m = collectives.AllGather(expAvg), v = collectives.AllGather(expAvgSq);
        if (group.Rank != 0) return;
        var tensors = new List<TensorToWrite>();
        long offset = 0;
        foreach (var (name, p) in parameters)
        {
            long n = p.numel();
            tensors.Add(TensorToWrite.Of("exp_avg." + name, m.narrow(0, offset, n).view(p.shape).contiguous()));
            tensors.Add(TensorToWrite.Of("exp_avg_sq." + name, v.narrow(0, offset, n).view(p.shape).contiguous()));
            offset += n;
        }
        tensors.Add(TensorToWrite.Of("step", tensor(new[] { step })));
        SafetensorsWriter.WriteFile(path, tensors);
    }

    /// <summary>Loads a state written by <see cref="Save"/> at any data-parallel size; the masters come from the model.</summary>
    public void Load(string path)
    {
        using var file = SafetensorsFile.Open(path);
        using var scope = NewDisposeScope();
        Tensor Gather(string prefix)
        {
            var pieces = parameters.Select(p =>
            {
                string key = prefix + p.Name;
                if (!file.Tensors.ContainsKey(key)) throw new InvalidDataException($"{path}: no {key}; the checkpoint was trained with other parameters");
                return file.Read(key).reshape(-1);
            }).ToList();
            if (padded > total) pieces.Add(zeros(padded - total));
            return cat(pieces.ToArray());
        }
        expAvg.copy_(Gather("exp_avg.").narrow(0, shardStart, shardSize));
        expAvgSq.copy_(Gather("exp_avg_sq.").narrow(0, shardStart, shardSize));
        step = file.Read("step").item<long>();
        using var noGrad = no_grad();
        master.copy_(Flatten(p => p.detach().to(ScalarType.Float32)).narrow(0, shardStart, shardSize));
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        normMask.Dispose();
        master.Dispose();
        expAvg.Dispose();
        expAvgSq.Dispose();
        decayMask.Dispose();
    }
}
