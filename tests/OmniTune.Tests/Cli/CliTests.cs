using OmniTune.Cli;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Cli;

public sealed class CliTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        using var output = new StringWriter();
        using var error = new StringWriter();
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            return (Program.Main(args), output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    [Fact]
    public void Init_tiny_then_inspect_reports_a_consistent_checkpoint()
    {
        using var dir = new TempFolder();
        var (code, output, _) = Run("init-tiny", "--out", dir.Path, "--seed", "3", "--dtype", "bf16");
        Assert.Equal(0, code);
        Assert.Contains("tensors", output);
        (code, output, _) = Run("inspect", "--model", dir.Path);
        Assert.Equal(0, code);
        Assert.Contains("missing 0, unexpected 0, wrong shape 0", output);
    }

    [Fact]
    public void Init_tiny_writes_a_wider_decoder_that_loads_and_refuses_a_vocabulary_below_the_tokenizers()
    {
        using var dir = new TempFolder();
        var (code, output, _) = Run("init-tiny", "--out", dir.Path, "--text-hidden-size", "128", "--text-layers", "3", "--text-heads", "8", "--vocab-size", "1000");
        Assert.Equal(0, code);
        Assert.Contains("text 3 layers × 128, vocab 1000", output);
        (code, output, _) = Run("inspect", "--model", dir.Path);   // the config validates (TMRoPE sections sum to half the head width)
        Assert.Equal(0, code);
        Assert.Contains("missing 0, unexpected 0, wrong shape 0", output);
        var (refused, _, error) = Run("init-tiny", "--out", Path.Combine(dir.Path, "small"), "--vocab-size", "100");
        Assert.NotEqual(0, refused);
        Assert.Contains("--vocab-size 100 is below the tiny tokenizer's", error);
    }

    [Fact]
    public void Inspect_of_a_missing_folder_fails_with_a_message_naming_it()
    {
        using var dir = new TempFolder();
        string missing = Path.Combine(dir.Path, "nope");
        var (code, _, error) = Run("inspect", "--model", missing);
        Assert.Equal(1, code);
        Assert.Contains(missing, error);
    }

    [Fact]
    public void An_unknown_verb_is_rejected()
    {
        var (code, _, _) = Run("fly");
        Assert.NotEqual(0, code);
    }

    [Fact]
    public void Inspect_refuses_an_unexpected_thinker_tensor_and_a_config_of_another_model_type_naming_the_key()
    {
        using var dir = new TempFolder();
        Assert.Equal(0, Run("init-tiny", "--out", dir.Path).Code);
        string weights = Path.Combine(dir.Path, "model.safetensors");
        using (var original = OmniTune.Core.Safetensors.SafetensorsFile.Open(weights))
        {
            var tensors = original.Tensors.Keys.Select(n => new OmniTune.Core.Safetensors.TensorToWrite(n, original.Info(n).DType, original.Info(n).Shape, () => original.Read(n))).ToList();
            tensors.Add(new OmniTune.Core.Safetensors.TensorToWrite("thinker.model.layers.9.mlp.extra.weight", TorchSharp.torch.ScalarType.Float32, [2, 2], () => TorchSharp.torch.zeros(2, 2)));
            OmniTune.Core.Safetensors.SafetensorsWriter.WriteFile(weights + ".new", tensors);
        }
        File.Move(weights + ".new", weights, overwrite: true);
        var (code, output, error) = Run("inspect", "--model", dir.Path);
        Assert.Equal(1, code);
        Assert.Contains("unexpected 1", output);
        Assert.Contains("thinker.model.layers.9.mlp.extra.weight", error);
        Assert.Contains("thinker.model.layers.9.mlp.extra.weight", Run("generate", "--model", dir.Path, "--prompt", "hi", "--max-new-tokens", "2").Err);

        using var other = new TempFolder();
        Assert.Equal(0, Run("init-tiny", "--out", other.Path).Code);
        string config = Path.Combine(other.Path, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"model_type\": \"qwen2_5_omni\"", "\"model_type\": \"llama\"", StringComparison.Ordinal));
        (code, _, error) = Run("inspect", "--model", other.Path);
        Assert.Equal(1, code);
        Assert.Contains("model_type is 'llama', not 'qwen2_5_omni'", error);
        Assert.Contains("model_type is 'llama'", Run("generate", "--model", other.Path, "--prompt", "hi", "--max-new-tokens", "2").Err);
    }

    [Theory]
    [InlineData("--max-new-tokens", "-3", "--max-new-tokens -3: must be at least 1")]
    [InlineData("--temperature", "-1", "--temperature -1: must be ≥ 0")]
    [InlineData("--top-p", "2", "--top-p 2: must be in (0, 1]")]
    public void Generate_refuses_out_of_range_options_before_loading_anything(string flag, string value, string message)
    {
        var (code, _, error) = Run("generate", "--model", "/nonexistent-model", "--prompt", "hi", flag, value);
        Assert.Equal(1, code);
        Assert.Contains(message, error);
    }

    [Fact]
    public void Finetune_help_lists_every_flag_with_its_default_and_meaning()
    {
        var (code, output, _) = Run("finetune", "--help");
        Assert.Equal(0, code);
        foreach (var flag in OmniTune.Training.Arguments.MegatronFlags.All)
        {
            Assert.Contains("--" + flag.Name, output);
            Assert.Contains(flag.Meaning, output);
        }
        Assert.Contains("--micro-batch-size <value>", output);
        Assert.Matches(@"--weight-decay <value> +AdamW decoupled weight decay \(not on biases and norms\) \[default: 0\.01\]", output);
        Assert.Contains("Accepted and ignored", output);
        var (_, root, _) = Run("--help");
        Assert.DoesNotContain("--mm-model", root);   // the list belongs to finetune's help only
    }
}
