using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Audio;

/// <summary>Pre-LayerNorm Whisper encoder layer.</summary>
public sealed class Qwen25OmniAudioEncoderLayer : nn.Module
{
    readonly Qwen25OmniAudioAttention self_attn;
    readonly LayerNorm self_attn_layer_norm, final_layer_norm;
    readonly nn.Module<Tensor, Tensor> fc1, fc2;
    readonly Func<Tensor, Tensor> activation;

    /// <summary>Creates the layer.</summary>
    public Qwen25OmniAudioEncoderLayer(Qwen25OmniAudioConfig config, Device? device, ScalarType dtype) : base("layer")
    {
        activation = Activations.Get(config.ActivationFunction, "audio_config.activation_function");
        self_attn = new Qwen25OmniAudioAttention(config, device, dtype);
        self_attn_layer_norm = nn.LayerNorm(config.DModel, 1e-5, device: device, dtype: dtype);
        fc1 = nn.Linear(config.DModel, config.EncoderFfnDim, hasBias: true, device: device, dtype: dtype);
        fc2 = nn.Linear(config.EncoderFfnDim, config.DModel, hasBias: true, device: device, dtype: dtype);
        final_layer_norm = nn.LayerNorm(config.DModel, 1e-5, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>x [T, D] → [T, D].</summary>
    public Tensor Forward(Tensor x, IReadOnlyList<int> chunks)
    {
        using var scope = NewDisposeScope();
        Tensor h = x + self_attn.Forward(self_attn_layer_norm.forward(x), chunks);
        return (h + fc2.call(activation(fc1.call(final_layer_norm.forward(h))))).MoveToOuterDisposeScope();
    }
}
