using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Models;

/// <summary>A tiny model folder written once per test class.</summary>
public sealed class TinyModelFixture : IDisposable
{
    readonly TempFolder folder = new();

    public TinyModelFixture()
    {
        Path = System.IO.Path.Combine(folder.Path, "tiny");
        Config = TinyQwen25Omni.Write(Path, seed: 11);
    }

    public string Path { get; }

    public Qwen25OmniConfig Config { get; }

    public void Dispose() => folder.Dispose();
}
