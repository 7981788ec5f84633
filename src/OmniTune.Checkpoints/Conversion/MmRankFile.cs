using System.Collections;
using OmniTune.Core.PyTorch;
using OmniTune.Core.Safetensors;
using static TorchSharp.torch;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>File format of a MindSpeed-MM rank file.</summary>
public enum MmFileFormat
{
    /// <summary><c>model_optim_rng.pt</c> as torch.save writes it — what MindSpeed-MM and Megatron read and write.</summary>
    PyTorch,

    /// <summary><c>model_optim_rng.safetensors</c> with the layout in its metadata (OmniTune's own).</summary>
    Safetensors,
}

/// <summary>
/// One rank file of a MindSpeed-MM checkpoint (<c>mp_rank_XX[_YYY]/model_optim_rng.pt</c> or <c>.safetensors</c>), its
/// format told by content. Tensors are named as in MindSpeed-MM's state dict, the chunks of a virtual pipeline
/// (<c>model0</c>, <c>model1</c>, …) prefixed <c>model{v}.</c>; the <c>None</c> entries of a training checkpoint
/// (<c>_extra_state</c>) and everything outside the model (args, optimizer, RNG state) are left out of <see cref="Names"/>.
/// </summary>
public sealed class MmRankFile : IDisposable
{
    /// <summary>The file names looked for in a rank folder, MindSpeed-MM's first.</summary>
    public static readonly IReadOnlyList<string> FileNames = ["model_optim_rng.pt", "model_optim_rng.safetensors"];

    readonly SafetensorsFile? safetensors;
    readonly PyTorchFile? pytorch;
    readonly Dictionary<string, PickledTensor> pickled = new(StringComparer.Ordinal);

    MmRankFile(string path, SafetensorsFile? safetensors, PyTorchFile? pytorch)
    {
        Path = path;
        this.safetensors = safetensors;
        this.pytorch = pytorch;
        if (pytorch is null) return;
        if (pytorch.Root is not IDictionary root) throw new InvalidDataException($"{path}: expected a dict saved by torch.save, found {pytorch.Root?.GetType().Name ?? "None"}");
        bool any = false;
        foreach (DictionaryEntry entry in root)
        {
            string key = entry.Key as string ?? "";
            string? prefix = key == "model" ? "" : key.StartsWith("model", StringComparison.Ordinal) && int.TryParse(key[5..], out int v) ? $"model{v}." : null;
            if (prefix is null) continue;
            if (entry.Value is not IDictionary chunk) throw new InvalidDataException($"{path}: '{key}' is not a state dict");
            any = true;
            foreach (DictionaryEntry tensor in chunk)
            {
                if (tensor.Value is PickledTensor t) pickled[prefix + tensor.Key] = t;
                else if (tensor.Value is not null) throw new InvalidDataException($"{path}: '{key}' entry '{tensor.Key}' is a {tensor.Value.GetType().Name}, not a tensor");
            }
        }
        if (!any) throw new InvalidDataException($"{path}: no 'model' (or 'model0', 'model1', … under a virtual pipeline) entry; keys: {string.Join(", ", root.Keys.Cast<object>())}");
    }

    /// <summary>The file's path.</summary>
    public string Path { get; }

    /// <summary>Its format.</summary>
    public MmFileFormat Format => pytorch is null ? MmFileFormat.Safetensors : MmFileFormat.PyTorch;

    /// <summary>OmniTune's metadata (safetensors files written by OmniTune); empty for PyTorch files.</summary>
    public IReadOnlyDictionary<string, string> Metadata => safetensors?.Metadata ?? new Dictionary<string, string>();

    /// <summary>Tensor names.</summary>
    public IEnumerable<string> Names => safetensors?.Tensors.Keys ?? (IEnumerable<string>)pickled.Keys;

    /// <summary>The rank file in <paramref name="rankFolder"/>, or null when it has none.</summary>
    public static string? Find(string rankFolder) =>
        FileNames.Select(n => System.IO.Path.Combine(rankFolder, n)).FirstOrDefault(File.Exists);

    /// <summary>Opens <paramref name="path"/>, PyTorch or safetensors by its first bytes (whatever its name says).</summary>
    public static MmRankFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: rank file not found", path);
        return PyTorchFile.IsZip(path) ? new MmRankFile(path, null, PyTorchFile.Open(path)) : new MmRankFile(path, SafetensorsFile.Open(path), null);
    }

    /// <summary>Stored dtype and shape of <paramref name="name"/>; an error naming the file when absent.</summary>
    public (ScalarType DType, long[] Shape) Info(string name)
    {
        if (safetensors is not null)
        {
            var info = safetensors.Info(name);
            return (info.DType, info.Shape);
        }
        PickledTensor t = Pickled(name);
        return (t.DType, t.Shape);
    }

    /// <summary>Reads <paramref name="name"/> (CPU, stored dtype).</summary>
    public Tensor Read(string name) => safetensors?.Read(name) ?? pytorch!.Read(Pickled(name));

    PickledTensor Pickled(string name) => pickled.TryGetValue(name, out PickledTensor? t) ? t : throw new KeyNotFoundException($"{Path}: no tensor '{name}'");

    /// <inheritdoc/>
    public void Dispose()
    {
        safetensors?.Dispose();
        pytorch?.Dispose();
    }
}
