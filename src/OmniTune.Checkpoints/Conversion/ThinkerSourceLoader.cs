using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Models.Qwen25Omni.Thinker;
using static TorchSharp.torch;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>
/// Builds the thinker (or a pipeline stage's parts of it) straight from any weight source — a Hugging Face folder, a
/// MindSpeed-MM release or training checkpoint of any layout — reading only the tensors the parts need.
/// </summary>
public static class ThinkerSourceLoader
{
    /// <summary>The thinker of <paramref name="source"/> on <paramref name="device"/>, only <paramref name="parts"/> when given.</summary>
    public static Qwen25OmniThinkerForConditionalGeneration Load(IThinkerTensorSource source, Device? device = null, ScalarType dtype = ScalarType.Float32,
        ThinkerParts? parts = null)
    {
        var model = new Qwen25OmniThinkerForConditionalGeneration(source.Config.Thinker, source.TiedLmHead, device, dtype, parts);
        try
        {
            LoadInto(model, source);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Copies every parameter <paramref name="model"/> holds from <paramref name="source"/>; a parameter that
    /// <paramref name="partOf"/> names as a tensor-parallel part (dimension, part, parts) reads only that part.
    /// </summary>
    public static void LoadInto(Qwen25OmniThinkerForConditionalGeneration model, IThinkerTensorSource source, Func<string, (int Dim, int Part, int Parts)?>? partOf = null)
    {
        using var noGrad = no_grad();
        foreach (var (key, parameter) in model.HuggingFaceParameters())
        {
            using var scope = NewDisposeScope();
            Tensor stored = partOf?.Invoke(key) is { } p ? source.ReadPart(key, p.Dim, p.Part, p.Parts) : source.Read(key);
            if (!stored.shape.SequenceEqual(parameter.shape))
                throw new CheckpointMismatchException($"{source.ConfigFolder}: {key} has shape [{string.Join(", ", stored.shape)}], the model [{string.Join(", ", parameter.shape)}]");
            parameter.copy_(stored);
        }
    }
}

/// <summary>The parameters a model instance holds (all of them, or one pipeline stage's) as a tensor source, for writing.</summary>
public sealed class ModelTensorSource(Qwen25OmniThinkerForConditionalGeneration model, OmniTune.Models.Qwen25Omni.Config.Qwen25OmniConfig config, string configFolder)
    : IThinkerTensorSource
{
    readonly Dictionary<string, TorchSharp.Modules.Parameter> parameters = model.HuggingFaceParameters().ToDictionary(p => p.Key, p => p.Parameter, StringComparer.Ordinal);

    /// <inheritdoc/>
    public OmniTune.Models.Qwen25Omni.Config.Qwen25OmniConfig Config => config;

    /// <inheritdoc/>
    public string ConfigFolder => configFolder;

    /// <inheritdoc/>
    public bool TiedLmHead => model.TiedLmHead;

    TorchSharp.Modules.Parameter Get(string key) => parameters.TryGetValue(key, out var p) ? p
        : throw new KeyNotFoundException($"{key} is not held by this process (pipeline stage parts: {model.Parts})");

    /// <inheritdoc/>
    public (ScalarType DType, long[] Shape) Info(string key) => (Get(key).dtype, Get(key).shape);

    /// <inheritdoc/>
    public Tensor Read(string key) => Get(key).detach().cpu().clone();

    /// <inheritdoc/>
    public void Dispose()
    {
    }
}
