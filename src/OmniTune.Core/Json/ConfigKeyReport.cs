using System.Text.Json;

namespace OmniTune.Core.Json;

/// <summary>
/// Keys of a JSON config that no typed record field consumed. They are kept (round-tripped on save) and reported
/// once, so a typo or a newer format version is visible instead of silently ignored.
/// </summary>
public sealed class ConfigKeyReport
{
    readonly List<string> unknown = [];

    /// <summary>The file the keys came from.</summary>
    public ConfigKeyReport(string source) => Source = source;

    /// <summary>File the report is about.</summary>
    public string Source { get; }

    /// <summary>Dotted paths of keys not understood, e.g. <c>thinker_config.vision_config.foo</c>.</summary>
    public IReadOnlyList<string> UnknownKeys => unknown;

    /// <summary>Records the leftover keys of one record found at <paramref name="path"/>, skipping <paramref name="ignored"/>.</summary>
    public void Collect(string path, IDictionary<string, JsonElement>? extra, IReadOnlySet<string> ignored)
    {
        if (extra == null) return;
        foreach (string key in extra.Keys.Order(StringComparer.Ordinal))
        {
            if (!ignored.Contains(key)) unknown.Add(path.Length == 0 ? key : $"{path}.{key}");
        }
    }

    /// <summary>One line for the log, or null when every key was understood.</summary>
    public string? Describe() => unknown.Count == 0
        ? null
        : $"{Source}: {unknown.Count} key(s) not used by OmniTune (kept as is): {string.Join(", ", unknown)}";
}
