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
        Assert.Contains("missing 0, wrong shape 0", output);
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
}
