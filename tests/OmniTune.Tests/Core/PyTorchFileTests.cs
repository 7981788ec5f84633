using System.Collections;
using System.Security.Cryptography;
using System.Text.Json;
using OmniTune.Core.PyTorch;
using OmniTune.Core.Safetensors;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Core;

/// <summary>A fact skipped, with the reason shown, unless Debian's python3 with torch is installed (python3-torch).</summary>
public sealed class PythonTorchFactAttribute : FactAttribute
{
    public PythonTorchFactAttribute()
    {
        if (!PyTorchFileTests.PythonTorchAvailable) Skip = "python3 with torch is not installed (apt-get install python3-torch): cannot torch.load OmniTune's files";
    }
}

/// <summary>
/// OmniTune's reader and writer of torch.save files against files written by the real torch.save
/// (tests/fixtures/pytorch/structures, from <c>tools/pt-fixtures.py structures</c>) and against torch.load.
/// </summary>
public sealed class PyTorchFileTests
{
    internal const string Python = "/usr/bin/python3";

    internal static bool PythonTorchAvailable { get; } = File.Exists(Python) && ChildProcess.Run(Python, ["-c", "import torch, numpy"]).Code == 0;

    internal static string Fixtures => Path.Combine(RepositoryPaths.Root, "tests", "fixtures", "pytorch");

    internal static string Script => Path.Combine(RepositoryPaths.Root, "tools", "pt-fixtures.py");

    internal static string DTypeName(ScalarType t) => t switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float32 => "float32",
        ScalarType.Float16 => "float16",
        ScalarType.Float64 => "float64",
        ScalarType.Int64 => "int64",
        ScalarType.Bool => "bool",
        _ => t.ToString(),
    };

    /// <summary>dtype, shape and sha256 of a tensor's bytes, in the form the script prints; disposes it.</summary>
    internal static (string DType, string Shape, string Sha256) Describe(Tensor tensor)
    {
        string dtype = DTypeName(tensor.dtype), shape = string.Join(",", tensor.shape);
        return (dtype, shape, Convert.ToHexStringLower(SHA256.HashData(CheckpointBytes.Of(tensor.contiguous()))));
    }

    internal static (string DType, string Shape, string Sha256) Describe(JsonElement e) =>
        (e.GetProperty("dtype").GetString()!, string.Join(",", e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64())), e.GetProperty("sha256").GetString()!);

    static object? Get(object? node, string path)
    {
        foreach (string part in path.Split('/')) node = ((IDictionary)node!)[part];
        return node;
    }

    [Fact]
    public void Every_tensor_torch_save_wrote_reads_back_byte_for_byte()
    {
        string folder = Path.Combine(Fixtures, "structures");
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "expected.json")));
        foreach (JsonProperty file in expected.RootElement.EnumerateObject())
        {
            using var pt = PyTorchFile.Open(Path.Combine(folder, file.Name));
            foreach (JsonProperty tensor in file.Value.EnumerateObject())
            {
                string path = file.Name == "vpp.pt" ? tensor.Name.Replace("model0.", "model0/", StringComparison.Ordinal) : "model/" + tensor.Name;
                var reference = (PickledTensor)Get(pt.Root, path)!;
                Assert.Equal(Describe(tensor.Value), Describe(pt.Read(reference)));
            }
        }
    }

    [Fact]
    public void Views_sharing_a_storage_keep_their_offset_and_strides()
    {
        using var pt = PyTorchFile.Open(Path.Combine(Fixtures, "structures", "release.pt"));
        var rows = (PickledTensor)Get(pt.Root, "model/rows_view")!;
        var transposed = (PickledTensor)Get(pt.Root, "model/transposed_view")!;
        var whole = (PickledTensor)Get(pt.Root, "model/whole")!;
        Assert.Equal(whole.StorageKey, rows.StorageKey);
        Assert.Equal(6, rows.Offset);
        Assert.False(transposed.IsContiguous);
        using Tensor r = pt.Read(rows), t = pt.Read(transposed);
        Assert.Equal(Enumerable.Range(6, 12).Select(i => (float)i), r.data<float>().ToArray());
        Assert.Equal(new float[] { 0, 6, 12, 18, 1, 7 }, t.data<float>().ToArray()[..6]);
        Assert.Null(Get(pt.Root, "model/layer._extra_state"));
        Assert.Equal(3.0, Get(pt.Root, "checkpoint_version"));
    }

    [Fact]
    public void A_virtual_pipeline_file_keeps_its_empty_chunk()
    {
        using var pt = PyTorchFile.Open(Path.Combine(Fixtures, "structures", "vpp.pt"));
        Assert.Empty((IDictionary)Get(pt.Root, "model1")!);
        Assert.Single((IDictionary)Get(pt.Root, "model0")!);
    }

    [Fact]
    public void A_megatron_training_checkpoint_reads_with_its_args_and_rng_state_as_data()
    {
        using var pt = PyTorchFile.Open(Path.Combine(Fixtures, "structures", "training.pt"));
        var root = (IDictionary)pt.Root!;
        Assert.Equal(7, Convert.ToInt32(root["iteration"]));
        var args = (PickledObject)root["args"]!;
        Assert.Equal("argparse.Namespace", args.ClassName);
        var fields = (IDictionary)args.State!;
        Assert.Equal(56, Convert.ToInt32(fields["consumed_train_samples"]));
        Assert.Equal("megatron.core.transformer.enums.AttnBackend.auto", ((PickledObject)fields["attention_backend"]!).ClassName);
        Assert.Equal("torch.bfloat16", fields["params_dtype"]!.ToString());
        var model = Assert.IsType<PickledOrderedDict>(root["model"]);
        Assert.Equal(["w._extra_state", "w.weight"], model.Keys.Cast<string>().Order(StringComparer.Ordinal));
        Assert.NotNull(model.Attributes);   // the state dict's _metadata
        var rng = (IDictionary)((IList)root["rng_state"]!)[0]!;
        var numpyState = (object[])rng["np_rng_state"]!;
        Assert.Equal("MT19937", numpyState[0]);
        Assert.Equal("numpy.ndarray", ((PickledObject)numpyState[1]!).ClassName);
    }

    [Fact]
    public void A_pickle_naming_any_other_global_is_refused_with_its_name()
    {
        var error = Assert.Throws<InvalidDataException>(() => PyTorchFile.Open(Path.Combine(Fixtures, "structures", "refused.pt")));
        Assert.Contains("'posix.system'", error.Message, StringComparison.Ordinal);
        Assert.Contains("refused.pt", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_safetensors_or_legacy_file_is_told_apart_by_content()
    {
        using var folder = new TempFolder();
        string safetensors = Path.Combine(folder.Path, "model_optim_rng.pt");
        using (Tensor x = ones(2))
        {
            SafetensorsWriter.WriteFile(safetensors, [TensorToWrite.Of("x", x)]);
        }
        Assert.False(PyTorchFile.IsZip(safetensors));
        var error = Assert.Throws<InvalidDataException>(() => PyTorchFile.Open(safetensors));
        Assert.Contains("legacy", error.Message, StringComparison.Ordinal);
    }

    static Dictionary<string, object?> Sample(out Dictionary<string, Tensor> tensors)
    {
        manual_seed(5);
        tensors = new Dictionary<string, Tensor>
        {
            ["a.weight"] = randn(3, 5).to(ScalarType.BFloat16),
            ["b.bias"] = randn(7),
            ["c.ids"] = tensor(new long[] { 4, -1 }),
            ["d.scalar"] = tensor(1.5),
        };
        var model = tensors.ToDictionary(kv => kv.Key, kv => (object?)TensorToWrite.Of(kv.Key, kv.Value));
        return new Dictionary<string, object?> { ["model0"] = model, ["model1"] = new Dictionary<string, object?>(), ["checkpoint_version"] = 3.0 };
    }

    [Fact]
    public void What_omnitune_writes_it_reads_back_bit_exactly()
    {
        using var folder = new TempFolder();
        string path = Path.Combine(folder.Path, "model_optim_rng.pt");
        var root = Sample(out var tensors);
        PyTorchFileWriter.Write(path, root);
        using var pt = PyTorchFile.Open(path);
        Assert.Equal(3.0, Get(pt.Root, "checkpoint_version"));
        Assert.Empty((IDictionary)Get(pt.Root, "model1")!);
        foreach (var (key, t) in tensors)
        {
            Assert.Equal(Describe(t.clone()), Describe(pt.Read((PickledTensor)Get(pt.Root, "model0/" + key)!)));
            t.Dispose();
        }
    }

    [PythonTorchFact]
    public void What_omnitune_writes_torch_load_reads_as_the_same_dict()
    {
        using var folder = new TempFolder();
        string path = Path.Combine(folder.Path, "model_optim_rng.pt");
        var root = Sample(out var tensors);
        PyTorchFileWriter.Write(path, root);
        var (code, output, error) = ChildProcess.Run(Python, [Script, "describe", path]);
        Assert.True(code == 0, error);
        using var described = JsonDocument.Parse(output);
        JsonElement file = described.RootElement.GetProperty("model_optim_rng.pt");
        Assert.Equal(["checkpoint_version", "model0", "model1"], file.GetProperty("keys").EnumerateArray().Select(k => k.GetString()));
        Assert.Equal(3.0, file.GetProperty("checkpoint_version").GetDouble());
        Assert.Empty(file.GetProperty("model1").EnumerateObject());
        foreach (var (key, t) in tensors)
        {
            Assert.Equal(Describe(t.clone()), Describe(file.GetProperty("model0").GetProperty(key)));
            t.Dispose();
        }
    }
}
