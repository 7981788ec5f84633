using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Text;

/// <summary>SwiGLU without biases: down(silu(gate(x)) ⊙ up(x)).</summary>
public sealed class Qwen25OmniMlp : nn.Module
{
    readonly nn.Module<Tensor, Tensor> gate_proj, up_proj, down_proj;

    /// <summary>Creates the three projections.</summary>
    public Qwen25OmniMlp(Qwen25OmniTextConfig config, Device? device, ScalarType dtype) : base("mlp")
    {
        if (config.HiddenAct != "silu") throw new NotSupportedException($"text_config.hidden_act '{config.HiddenAct}' is not supported (silu only)");
        gate_proj = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: false, device: device, dtype: dtype);
        up_proj = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: false, device: device, dtype: dtype);
        down_proj = nn.Linear(config.IntermediateSize, config.HiddenSize, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>x [B, S, H] → [B, S, H].</summary>
    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        Tensor gated = nn.functional.silu(gate_proj.call(x)) * up_proj.call(x);
        return down_proj.call(gated).MoveToOuterDisposeScope();
    }
}
