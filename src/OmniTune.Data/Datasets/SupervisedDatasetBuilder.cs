using System.Collections.Concurrent;
using System.Text.Json;
using OmniTune.Data.Processing;

namespace OmniTune.Data.Datasets;

/// <summary>Options of a build that do not come from data.json.</summary>
/// <param name="SeqLength">Cutoff (--seq-length).</param>
/// <param name="Workers">Encoding threads (preprocessing_num_workers when null).</param>
/// <param name="UseCache">Read and write the cache when data.json names a cache_dir.</param>
public sealed record DatasetBuildOptions(int SeqLength, int? Workers = null, bool UseCache = true);

/// <summary>
/// Reads every dataset of a data.json, converts, validates and encodes each row (in parallel, order kept), applies the
/// invalid-sample policy, and uses the cache. Progress is reported as (rows done, rows total).
/// </summary>
public static class SupervisedDatasetBuilder
{
    /// <summary>Builds the dataset of <paramref name="config"/> with <paramref name="processor"/>.</summary>
    public static SupervisedDataset Build(DataJsonConfig config, Qwen25OmniProcessor processor, DatasetBuildOptions options, TextWriter log,
        IProgress<(int Done, int Total)>? progress = null)
    {
        var basic = config.DatasetParam.BasicParameters;
        List<DatasetSource> sources = DatasetCatalog.Resolve(basic, config.DatasetParam.Attr);
        string? cachePath = null, key = null;
        if (options.UseCache && basic.CacheDir is not null)
        {
            key = CacheKey(config, processor, options, sources);
            cachePath = DatasetCache.PathFor(basic.CacheDir, key);
            if (!basic.OverwriteCache && DatasetCache.TryRead(cachePath, key, log) is { } cached)
            {
                log.WriteLine($"read {cached.Samples.Count} encoded samples from the cache {cachePath}");
                return cached;
            }
        }

        var rows = new List<(JsonElement Row, SampleLocation Location, SampleConverter Converter)>();
        foreach (DatasetSource source in sources)
        {
            var converter = new SampleConverter(source.Attr, source.MediaDir);
            int taken = 0;
            foreach (string file in source.Files)
            {
                int index = 0;
                foreach (JsonElement row in DatasetFileReader.Rows(file))
                {
                    if (basic.MaxSamples is int max && taken >= max) break;
                    rows.Add((row, new SampleLocation(file, index++), converter));
                    taken++;
                }
            }
        }

        var encoder = new SupervisedEncoder(processor, options.SeqLength, basic.TrainOnPrompt, basic.MaskHistory);
        var results = new (EncodedSample? Sample, InvalidSample? Problem)[rows.Count];
        int done = 0;
        int workers = Math.Max(1, options.Workers ?? basic.PreprocessingNumWorkers ?? Environment.ProcessorCount);
        bool failFast = basic.InvalidSamplePolicy == "fail";
        var failure = new ConcurrentQueue<InvalidSample>();
        Parallel.For(0, rows.Count, new ParallelOptions { MaxDegreeOfParallelism = workers }, (i, state) =>
        {
            var (row, location, converter) = rows[i];
            var (converted, problem) = converter.Convert(row, location);
            results[i] = converted is null ? (null, problem) : encoder.Encode(converted);
            if (results[i].Problem is { } bad && failFast)
            {
                failure.Enqueue(bad);
                state.Stop();
            }
            progress?.Report((Interlocked.Increment(ref done), rows.Count));
        });
        if (failure.TryDequeue(out InvalidSample? first)) throw new InvalidSampleException(first);

        var samples = results.Where(r => r.Sample is not null).Select(r => r.Sample!).ToList();
        var invalid = results.Where(r => r.Problem is not null).Select(r => r.Problem!).ToList();
        foreach (InvalidSample bad in invalid) log.WriteLine($"skipped {bad}");
        if (invalid.Count > 0) log.WriteLine($"skipped {invalid.Count} of {rows.Count} samples (invalid_sample_policy: skip)");
        var dataset = new SupervisedDataset(samples, invalid, FromCache: false);
        if (cachePath is not null && key is not null)
        {
            DatasetCache.Write(cachePath, key, dataset);
            log.WriteLine($"cached {samples.Count} encoded samples in {cachePath}");
        }
        return dataset;
    }

    static string CacheKey(DataJsonConfig config, Qwen25OmniProcessor processor, DatasetBuildOptions options, List<DatasetSource> sources)
    {
        var basic = config.DatasetParam.BasicParameters;
        var text = new List<string>
        {
            $"seq={options.SeqLength} train_on_prompt={basic.TrainOnPrompt} mask_history={basic.MaskHistory} max_samples={basic.MaxSamples}",
            $"system={processor.Template.DefaultSystemPrompt}",
            JsonSerializer.Serialize(processor.Settings),
        };
        text.AddRange(sources.Select(s => $"{s.Name}|{s.MediaDir}|{JsonSerializer.Serialize(s.Attr)}|{string.Join(";", s.Files.Select(Path.GetFullPath))}"));
        string model = config.DatasetParam.PreprocessParameters.ModelNameOrPath ?? "";
        var files = sources.SelectMany(s => s.Files).ToList();
        files.AddRange(new[] { "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "added_tokens.json" }.Select(f => Path.Combine(model, f)));
        return DatasetCache.Key(text, files);
    }
}
