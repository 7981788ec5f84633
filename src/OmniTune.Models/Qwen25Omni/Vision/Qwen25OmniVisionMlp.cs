using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Vision;

/// <summary>Gated MLP with biases: down(act(gate(x)) ⊙ up(x)), the activation named by the config.</summary>
public sealed class Qwen25OmniVisionMlp : nn.Module
{
    readonly nn.Module<Tensor, Tensor> gate_proj, up_proj, down_proj;
    readonly Func<Tensor, Tensor> activation;

    /// <summary>Creates the projections.</summary>
    public Qwen25OmniVisionMlp(Qwen25OmniVisionConfig config, Device? device, ScalarType dtype) : base("mlp")
    {
        activation = Activations.Get(config.HiddenAct, "vision_config.hidden_act");
        gate_proj = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: true, device: device, dtype: dtype);
        up_proj = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: true, device: device, dtype: dtype);
        down_proj = nn.Linear(config.IntermediateSize, config.HiddenSize, hasBias: true, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>x [N, D] → [N, D].</summary>
    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.call(activation(gate_proj.call(x)) * up_proj.call(x)).MoveToOuterDisposeScope();
    }
}
