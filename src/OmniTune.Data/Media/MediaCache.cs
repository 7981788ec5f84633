using Microsoft.Extensions.Caching.Memory;
using OmniTune.Models.Qwen25Omni.Positions;
using static TorchSharp.torch;

namespace OmniTune.Data.Media;

/// <summary>
/// Processed media (image and video patch rows, audio features) kept in memory for their next use: the next epoch, or
/// another packed row drawing the same file. Loading a video or an audio clip starts an ffmpeg process and decodes it —
/// with a small model, more than the step costs — and a small dataset trained for many epochs loads each file again and
/// again. Bounded by bytes (least recently used first out, Microsoft.Extensions.Caching.Memory's compaction); keyed by
/// kind, full path, length and last write time, so a changed file is processed again. One cache per processor settings
/// (the collator's). Values are kept as managed arrays and returned as fresh tensors: nothing a caller disposes is shared,
/// and an evicted entry needs no disposal. Thread-safe (the loader's workers share it).
/// </summary>
public sealed class MediaCache : IDisposable
{
    sealed record Entry(float[] Values, long[] Shape, GridThw Grid, double SecondsPerGrid, int Frames);

    readonly MemoryCache cache;
    long hits, misses;

    /// <summary>A cache of at most <paramref name="capacityBytes"/> bytes of processed media.</summary>
    public MediaCache(long capacityBytes)
    {
        if (capacityBytes <= 0) throw new ArgumentOutOfRangeException(nameof(capacityBytes), capacityBytes, "must be positive");
        Capacity = capacityBytes;
        cache = new MemoryCache(new MemoryCacheOptions { SizeLimit = capacityBytes, CompactionPercentage = 0.25 });
    }

    /// <summary>Bytes it may hold.</summary>
    public long Capacity { get; }

    /// <summary>Loads that found their media processed already, and loads that processed them.</summary>
    public (long Hits, long Misses) Counts => (Interlocked.Read(ref hits), Interlocked.Read(ref misses));

    /// <summary><see cref="ImagePreprocessor.Process(string, ProcessorSettings)"/>, from the cache when it holds the file.</summary>
    public VisionInput Image(string path, ProcessorSettings s) => Vision("image", path, () => ImagePreprocessor.Process(path, s));

    /// <summary><see cref="VideoPreprocessor.Process"/>, from the cache when it holds the file.</summary>
    public VisionInput Video(string path, ProcessorSettings s) => Vision("video", path, () => VideoPreprocessor.Process(path, s));

    /// <summary><see cref="WhisperFeatures.FromFile"/>, from the cache when it holds the file.</summary>
    public AudioInput Audio(string path, ProcessorSettings s)
    {
        var key = Key("audio", path);
        if (cache.TryGetValue(key, out Entry? known) && known is not null)
        {
            Interlocked.Increment(ref hits);
            return new AudioInput(Tensor(known), known.Frames);
        }
        Interlocked.Increment(ref misses);
        AudioInput made = WhisperFeatures.FromFile(path, s);
        Store(key, made.Features, default, 0, made.Frames);
        return made;
    }

    VisionInput Vision(string kind, string path, Func<VisionInput> process)
    {
        var key = Key(kind, path);
        if (cache.TryGetValue(key, out Entry? known) && known is not null)
        {
            Interlocked.Increment(ref hits);
            return new VisionInput(Tensor(known), known.Grid, known.SecondsPerGrid);
        }
        Interlocked.Increment(ref misses);
        VisionInput made = process();
        Store(key, made.PixelValues, made.Grid, made.SecondsPerGrid, 0);
        return made;
    }

    static (string Kind, string Path, long Length, DateTime Written) Key(string kind, string path)
    {
        var file = new FileInfo(path);
        if (!file.Exists) throw new MediaException(path, "file not found");
        return (kind, file.FullName, file.Length, file.LastWriteTimeUtc);
    }

    void Store((string, string, long, DateTime) key, Tensor values, GridThw grid, double secondsPerGrid, int frames)
    {
        long bytes = values.numel() * sizeof(float);
        if (bytes > Capacity) return;   // would never fit
        using Tensor flat = values.to(ScalarType.Float32).contiguous().reshape(-1);
        var entry = new Entry(flat.data<float>().ToArray(), values.shape, grid, secondsPerGrid, frames);
        cache.Set(key, entry, new MemoryCacheEntryOptions { Size = bytes });
    }

    static Tensor Tensor(Entry entry) => tensor(entry.Values).reshape(entry.Shape);

    /// <inheritdoc/>
    public void Dispose() => cache.Dispose();
}
