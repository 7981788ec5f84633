using System.CommandLine;
using OmniTune.Data.Datasets;
using OmniTune.Data.Processing;
using Spectre.Console;

namespace OmniTune.Cli.Commands;

/// <summary><c>omnitune data check</c> and <c>omnitune data llava-to-mllm</c>.</summary>
static class DataCommand
{
    public static Command Create() => new("data", "Dataset tools") { Check(), LlavaToMllm(), Tokenize() };

    /// <summary><c>omnitune data tokenize</c>: the ids of texts, one JSON string per input line, one JSON array per output line.</summary>
    static Command Tokenize()
    {
        var model = new Option<string>("--model") { Description = "Folder with the tokenizer files (vocab.json, merges.txt, tokenizer_config.json)", Required = true };
        var input = new Option<string?>("--input") { Description = "File of JSON strings, one per line (default: standard input)" };
        var command = new Command("tokenize", "Print the token ids of texts (JSON string per input line → JSON array per output line), as training encodes them") { model, input };
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            var tokenizer = OmniTune.Data.Text.Qwen2Tokenizer.Load(parse.GetValue(model)!);
            using TextReader reader = parse.GetValue(input) is { } path ? new StreamReader(path) : Console.In;
            int line = 0;
            while (reader.ReadLine() is { } text)
            {
                line++;
                if (text.Length == 0) continue;
                string value = System.Text.Json.JsonSerializer.Deserialize<string>(text)
                    ?? throw new InvalidDataException($"line {line}: not a JSON string");
                Console.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(tokenizer.Encode(value)));
            }
            return 0;
        }));
        return command;
    }

    static Command Check()
    {
        var data = new Option<string>("--mm-data") { Description = "MindSpeed-MM data.json", Required = true };
        var seq = new Option<int>("--seq-length") { Description = "Sequence length (cutoff)", DefaultValueFactory = _ => 3072 };
        var model = new Option<string?>("--model") { Description = "Hugging Face model folder (default: preprocess_parameters.model_name_or_path)" };
        var workers = new Option<int?>("--preprocessing-workers") { Description = "Encoding threads (default: preprocessing_num_workers)" };
        var noCache = new Option<bool>("--no-cache") { Description = "Neither read nor write the cache" };
        var command = new Command("check", "Validate and encode a data.json without training; print statistics and every rejected sample")
        {
            data, seq, model, workers, noCache,
        };
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            var (config, report) = DataJsonLoader.Load(parse.GetValue(data)!);
            if (report.Describe() is { } unknown) Console.WriteLine(unknown);
            var processor = LoadProcessor(config, parse.GetValue(model));
            var options = new DatasetBuildOptions(parse.GetValue(seq), parse.GetValue(workers), !parse.GetValue(noCache));
            SupervisedDataset dataset = WithProgress("encoding samples", progress =>
                SupervisedDatasetBuilder.Build(config, processor, options, TextWriter.Null, progress));
            Console.Write(DatasetStatistics.Describe(dataset, options.SeqLength));
            return 0;
        }));
        return command;
    }

    /// <summary>The processor of a data.json (model folder from the file unless overridden).</summary>
    public static Qwen25OmniProcessor LoadProcessor(DataJsonConfig config, string? modelOverride)
    {
        string model = modelOverride ?? config.DatasetParam.PreprocessParameters.ModelNameOrPath
            ?? throw new ArgumentException("no model folder: set preprocess_parameters.model_name_or_path or pass --model");
        return DataJsonLoader.Processor(config, model);
    }

    static Command LlavaToMllm()
    {
        var llava = new Option<string>("--llava-json", "--llava_json_path") { Description = "llava_instruct_150k.json", Required = true };
        var coco = new Option<string>("--coco-path", "--coco_path") { Description = "COCO root holding train2017/", Required = true };
        var output = new Option<string>("--output", "--output_json_path") { Description = "mllm-format json to write", Required = true };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an existing output" };
        var command = new Command("llava-to-mllm", "Convert LLaVA-Instruct json + COCO images into the mllm format (images + messages)")
        {
            llava, coco, output, overwrite,
        };
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            var result = WithProgress("converting records", progress =>
                LlavaToMllmConverter.Convert(parse.GetValue(llava)!, parse.GetValue(coco)!, parse.GetValue(output)!, parse.GetValue(overwrite),
                    new Progress<int>(n => progress.Report((n, 0)))));
            foreach (var (index, image) in result.MissingImages.Take(20)) Console.WriteLine($"skipped record {index}: image {image} not found under {parse.GetValue(coco)}");
            if (result.MissingImages.Count > 20) Console.WriteLine($"… and {result.MissingImages.Count - 20} more records with missing images");
            Console.WriteLine($"wrote {result.Written} records ({result.TextOnly} text-only) to {parse.GetValue(output)}; skipped {result.MissingImages.Count} with missing images");
            return 0;
        }));
        return command;
    }

    /// <summary>Runs work with a progress bar on a terminal, or with periodic lines otherwise.</summary>
    static T WithProgress<T>(string title, Func<IProgress<(int Done, int Total)>, T> work)
    {
        if (ConsoleOutput.IsInteractive)
        {
            T result = default!;
            AnsiConsole.Progress().Start(context =>
            {
                var task = context.AddTask(title, maxValue: 1);
                result = work(new Progress<(int Done, int Total)>(p =>
                {
                    if (p.Total > 0) task.MaxValue = p.Total;
                    task.Value = p.Done;
                }));
            });
            return result;
        }
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long last = 0;
        return work(new Progress<(int Done, int Total)>(p =>
        {
            long now = clock.ElapsedMilliseconds;
            if (now - Interlocked.Read(ref last) < 5000) return;
            Interlocked.Exchange(ref last, now);
            Console.Error.WriteLine(p.Total > 0 ? $"{title}: {p.Done}/{p.Total}" : $"{title}: {p.Done}");
        }));
    }
}
