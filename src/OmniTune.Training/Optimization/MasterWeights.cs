using OmniTune.Core.Safetensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Training.Optimization;

/// <summary>
/// Mixed precision as Megatron's --bf16 does it: the model computes in bf16 while the optimizer updates fp32 master
/// copies of the trainable parameters; gradients are copied up to the masters before clipping and the step, and the
/// masters are rounded back into the model after it. Masters are saved with checkpoints so a resume is exact.
/// </summary>
public sealed class MasterWeights : IDisposable
{
    /// <summary>File of the master copies in a checkpoint folder.</summary>
    public const string FileName = "master_weights.safetensors";

    readonly List<(string Name, Parameter Model, Parameter Master)> pairs;

    MasterWeights(List<(string, Parameter, Parameter)> pairs) => this.pairs = pairs;

    /// <summary>fp32 masters of the (bf16 or fp16) trainable parameters.</summary>
    public static MasterWeights Create(IEnumerable<(string Name, Parameter Parameter)> trainable)
    {
        var pairs = new List<(string, Parameter, Parameter)>();
        using (no_grad())
        {
            foreach (var (name, p) in trainable)
                pairs.Add((name, p, new Parameter(p.detach().to(ScalarType.Float32).clone(), requires_grad: true)));
        }
        return new MasterWeights(pairs);
    }

    /// <summary>The masters, by the model parameters' names: what the optimizer, clipping and the norm see.</summary>
    public List<(string Name, Parameter Parameter)> Masters => pairs.Select(p => (p.Name, p.Master)).ToList();

    /// <summary>Copies each model gradient (as fp32) into its master's gradient; a parameter without one gets zeros.</summary>
    public void GradientsToMasters()
    {
        using var noGrad = no_grad();
        foreach (var (_, model, master) in pairs)
        {
            master.grad?.Dispose();
            master.grad = model.grad is null ? zeros_like(master) : model.grad.to(ScalarType.Float32);
            model.grad = null;
        }
    }

    /// <summary>Rounds the updated masters back into the model parameters.</summary>
    public void MastersToModel()
    {
        using var noGrad = no_grad();
        foreach (var (_, model, master) in pairs) model.copy_(master);
    }

    /// <summary>Writes the masters.</summary>
    public void Save(string path) =>
        SafetensorsWriter.WriteFile(path, pairs.Select(p => TensorToWrite.Of(p.Name, p.Master.detach())).ToList());

    /// <summary>Reads masters written by <see cref="Save"/>; every one must be present.</summary>
    public void Load(string path)
    {
        using var file = SafetensorsFile.Open(path);
        using var noGrad = no_grad();
        foreach (var (name, _, master) in pairs)
        {
            if (!file.Tensors.ContainsKey(name)) throw new InvalidDataException($"{path}: no master weight for {name}");
            using Tensor stored = file.Read(name);
            master.copy_(stored);
        }
        MastersToModel();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var (_, _, master) in pairs) master.Dispose();
    }
}
