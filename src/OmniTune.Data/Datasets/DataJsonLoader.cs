using System.Text.Json;
using OmniTune.Core.Json;
using OmniTune.Data.Media;

using OmniTune.Data.Processing;

namespace OmniTune.Data.Datasets;

/// <summary>Reads and validates a MindSpeed-MM <c>data.json</c>.</summary>
public static class DataJsonLoader
{
    static readonly JsonSerializerOptions Options = new() { ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };
    static readonly HashSet<string> Accepted = new(StringComparer.Ordinal)
    {
        "enable_thinking", "streaming", "val_dataset", "val_max_samples", "val_rate", "preprocess_on_fly",
        "async_preprocess", "async_preprocess_buffer_size", "use_pmcc_data", "tool_format", "image_resolution", "video_resolution",
        "image_do_pan_and_scan", "crop_to_patches", "trust_remote_code", "fix_mistral_regex", "ranking", "kto_tag", "chosen", "rejected",
        "pretrain",
    };

    /// <summary>Loads <paramref name="path"/>; relative folders inside are resolved against the working directory, as MindSpeed-MM does.</summary>
    public static (DataJsonConfig Config, ConfigKeyReport Report) Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: data.json not found", path);
        DataJsonConfig config;
        try
        {
            config = JsonSerializer.Deserialize<DataJsonConfig>(File.ReadAllText(path), Options) ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: {e.Path}: {e.Message}", e);
        }
        Validate(path, config);
        var report = new ConfigKeyReport(path);
        report.Collect("", config.Extra, Accepted);
        report.Collect("dataset_param", config.DatasetParam.Extra, Accepted);
        report.Collect("dataset_param.preprocess_parameters", config.DatasetParam.PreprocessParameters.Extra, Accepted);
        report.Collect("dataset_param.basic_parameters", config.DatasetParam.BasicParameters.Extra, Accepted);
        report.Collect("dataset_param.attr", config.DatasetParam.Attr.Extra, Accepted);
        report.Collect("dataloader_param", config.DataloaderParam.Extra, Accepted);
        return (config, report);
    }

    static void Validate(string path, DataJsonConfig c)
    {
        void Require(bool ok, string message)
        {
            if (!ok) throw new InvalidDataException($"{path}: {message}");
        }
        var d = c.DatasetParam;
        Require(d.DatasetType == "huggingface", $"dataset_param.dataset_type '{d.DatasetType}' is not supported (huggingface)");
        Require(d.BasicParameters.Template == "qwen2_omni", $"dataset_param.basic_parameters.template '{d.BasicParameters.Template}' is not supported (qwen2_omni)");
        Require(d.BasicParameters.CutoffLen is null, "dataset_param.basic_parameters.cutoff_len is not allowed: the cutoff is --seq-length");
        Require(!string.IsNullOrWhiteSpace(d.BasicParameters.Dataset), "dataset_param.basic_parameters.dataset is empty");
        Require(d.BasicParameters.InvalidSamplePolicy is "skip" or "fail", $"dataset_param.basic_parameters.invalid_sample_policy '{d.BasicParameters.InvalidSamplePolicy}' must be skip or fail");
        Require(!(d.BasicParameters.MaskHistory && d.BasicParameters.TrainOnPrompt), "dataset_param.basic_parameters: mask_history and train_on_prompt cannot both be true");
        Require(d.Attr.Formatting is "sharegpt" or "alpaca", $"dataset_param.attr.formatting '{d.Attr.Formatting}' is not supported (sharegpt, alpaca)");
        Require(!d.PreprocessParameters.SplitSpecialTokens, "dataset_param.preprocess_parameters.split_special_tokens must be false");
        Require(c.DataloaderParam.DropLast, "dataloader_param.drop_last must be true");
        Require(c.DataloaderParam.DataloaderMode == "sampler", $"dataloader_param.dataloader_mode '{c.DataloaderParam.DataloaderMode}' is not supported (sampler)");
        try
        {
            ToProcessorSettings(d.PreprocessParameters).Validate();
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: dataset_param.preprocess_parameters: {e.Message}", e);
        }
    }

    /// <summary>
    /// The processor a data.json describes over the tokenizer and preprocessor files of <paramref name="modelFolder"/>:
    /// its preprocess parameters and its <c>basic_parameters.default_system</c>.
    /// </summary>
    public static Qwen25OmniProcessor Processor(DataJsonConfig config, string modelFolder) =>
        Qwen25OmniProcessor.Load(modelFolder, ToProcessorSettings(config.DatasetParam.PreprocessParameters), config.DatasetParam.BasicParameters.DefaultSystem);

    /// <summary>The processor settings of the preprocess parameters (HF processor values come from the model folder).</summary>
    public static ProcessorSettings ToProcessorSettings(PreprocessParameters p) => new()
    {
        ImageMaxPixels = p.ImageMaxPixels,
        ImageDecodeMaxPixels = p.ImageDecodeMaxPixels,
        ImageMinPixels = p.ImageMinPixels,
        VideoMaxPixels = p.VideoMaxPixels,
        VideoMinPixels = p.VideoMinPixels,
        VideoFps = p.VideoFps,
        VideoMaxLen = p.VideoMaxLen,
        UseAudioInVideo = p.UseAudioInVideo,
        AudioSamplingRate = p.AudioSamplingRate,
    };
}
