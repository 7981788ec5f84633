using System.Diagnostics;
using System.Text.Json;
using OmniTune.Data.Datasets;
using OmniTune.Data.Processing;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Tiny;

namespace OmniTune.Bench;

/// <summary>Samples/s of encoding (cold, no cache) and of loading (collation with media) with 0, 1 and 2 workers on LLaMA-Factory's demo sets.</summary>
static class DataBenchmark
{
    public static void Run(TextWriter log)
    {
        string demo = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../../shared/assets/llamafactory-demo"));
        if (!Directory.Exists(demo))
        {
            log.WriteLine($"RESULT data: skipped, {demo} is absent");
            return;
        }
        string dir = Path.Combine(Path.GetTempPath(), "omnitune-bench-data");
        string model = Path.Combine(dir, "model");
        TinyQwen25Omni.Write(model);
        var config = JsonSerializer.Deserialize<DataJsonConfig>($$"""
            {"dataset_param":{"preprocess_parameters":{"model_name_or_path":{{JsonSerializer.Serialize(model)}}},
             "basic_parameters":{"dataset_dir":{{JsonSerializer.Serialize(demo)}},"dataset":"mllm_demo,mllm_audio_demo,mllm_video_demo"} } }
            """)!;
        var processor = Qwen25OmniProcessor.Load(model, DataJsonLoader.ToProcessorSettings(config.DatasetParam.PreprocessParameters));
        foreach (int workers in new[] { 1, 2 })
        {
            var clock = Stopwatch.StartNew();
            var built = SupervisedDatasetBuilder.Build(config, processor, new DatasetBuildOptions(4096, workers, UseCache: false), TextWriter.Null);
            log.WriteLine($"RESULT data-encode: {built.Samples.Count / clock.Elapsed.TotalSeconds:F1} samples/s with {workers} encoding thread(s) ({built.Samples.Count} demo samples: image, audio, video)");
        }
        var dataset = SupervisedDatasetBuilder.Build(config, processor, new DatasetBuildOptions(4096, UseCache: false), TextWriter.Null);
        var thinker = TinyQwen25Omni.Config(TinyTokenizerBuilder.Build()).Thinker;
        var collator = new BatchCollator(processor.Settings, RopeIndexSettings.From(thinker), thinker.PadTokenId);
        foreach (int workers in new[] { 0, 1, 2 })
        {
            using var loader = new SupervisedDataLoader(dataset.Samples, collator, microBatch: 2, seed: 1, shuffle: true, workers: workers);
            using (loader.Next()) { }
            int batches = 12;
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < batches; i++)
            {
                using var batch = loader.Next();
            }
            log.WriteLine($"RESULT data-load: {batches * 2 / clock.Elapsed.TotalSeconds:F1} samples/s collated (media decoded, processed, padded, positions) with {workers} worker(s), micro-batch 2");
        }
    }
}
