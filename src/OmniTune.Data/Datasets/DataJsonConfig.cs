using System.Text.Json;
using System.Text.Json.Serialization;

namespace OmniTune.Data.Datasets;

/// <summary>MindSpeed-MM's <c>data.json</c> (reference mindspeed_mm.md §3): the dataset and the dataloader.</summary>
public sealed record DataJsonConfig
{
    /// <summary>What to read and how to preprocess it.</summary>
    [JsonPropertyName("dataset_param")] public DatasetParam DatasetParam { get; init; } = new();

    /// <summary>How batches are drawn.</summary>
    [JsonPropertyName("dataloader_param")] public DataloaderParam DataloaderParam { get; init; } = new();

    /// <summary>Keys not modelled.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }

    /// <summary>
    /// Sequence packing: <c>neat_packing</c> (basic_parameters; implies packing, as in LLaMA-Factory) or <c>packing</c>
    /// (basic_parameters, LLaMA-Factory's place, or attr, MindSpeed-MM's).
    /// </summary>
    [JsonIgnore]
    public PackingMode Packing => DatasetParam.BasicParameters.NeatPacking ? PackingMode.Neat
        : DatasetParam.BasicParameters.Packing || DatasetParam.Attr.Packing ? PackingMode.Plain : PackingMode.None;
}

/// <summary><c>dataset_param</c>.</summary>
public sealed record DatasetParam
{
    /// <summary>Only "huggingface" (the LLaMA-Factory-style pipeline) is supported.</summary>
    [JsonPropertyName("dataset_type")] public string DatasetType { get; init; } = "huggingface";

    /// <summary>Processor settings.</summary>
    [JsonPropertyName("preprocess_parameters")] public PreprocessParameters PreprocessParameters { get; init; } = new();

    /// <summary>Template, files and encoding switches.</summary>
    [JsonPropertyName("basic_parameters")] public BasicParameters BasicParameters { get; init; } = new();

    /// <summary>Column and tag names (flat MindSpeed-MM form).</summary>
    [JsonPropertyName("attr")] public AttrParameters Attr { get; init; } = new();

    /// <summary>Keys not modelled.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }
}

/// <summary><c>preprocess_parameters</c> (MindSpeed-MM ProcessorArguments).</summary>
public sealed record PreprocessParameters
{
    /// <summary>Hugging Face model folder: tokenizer and preprocessor_config.json.</summary>
    [JsonPropertyName("model_name_or_path")] public string? ModelNameOrPath { get; init; }

    /// <summary>Accepted for compatibility; the tokenizer is always the fast byte-level BPE.</summary>
    [JsonPropertyName("use_fast_tokenizer")] public bool UseFastTokenizer { get; init; } = true;

    /// <summary>Must be false: special-token strings in text are special tokens.</summary>
    [JsonPropertyName("split_special_tokens")] public bool SplitSpecialTokens { get; init; }

    /// <summary>Image pre-shrink bound.</summary>
    [JsonPropertyName("image_max_pixels")] public long ImageMaxPixels { get; init; } = 768 * 768;

    /// <summary>Images above this many pixels are refused unread (decompression bombs); OmniTune's key, Pillow's limit by default.</summary>
    [JsonPropertyName("image_decode_max_pixels")] public long ImageDecodeMaxPixels { get; init; } = Media.ImageDecoder.DefaultMaxPixels;

    /// <summary>Image pre-enlarge bound.</summary>
    [JsonPropertyName("image_min_pixels")] public long ImageMinPixels { get; init; } = 32 * 32;

    /// <summary>Video frame pre-shrink bound.</summary>
    [JsonPropertyName("video_max_pixels")] public long VideoMaxPixels { get; init; } = 256 * 256;

    /// <summary>Video frame pre-enlarge bound.</summary>
    [JsonPropertyName("video_min_pixels")] public long VideoMinPixels { get; init; } = 16 * 16;

    /// <summary>Frame sampling rate.</summary>
    [JsonPropertyName("video_fps")] public double VideoFps { get; init; } = 2.0;

    /// <summary>Most frames per video.</summary>
    [JsonPropertyName("video_maxlen")] public int VideoMaxLen { get; init; } = 128;

    /// <summary>Interleave each video's audio with it.</summary>
    [JsonPropertyName("use_audio_in_video")] public bool UseAudioInVideo { get; init; }

    /// <summary>Audio resampling rate.</summary>
    [JsonPropertyName("audio_sampling_rate")] public int AudioSamplingRate { get; init; } = 16000;

    /// <summary>Keys not modelled.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }
}

/// <summary><c>basic_parameters</c> (MindSpeed-MM DataArguments).</summary>
public sealed record BasicParameters
{
    /// <summary>Chat template; only qwen2_omni.</summary>
    [JsonPropertyName("template")] public string Template { get; init; } = "qwen2_omni";

    /// <summary>Replaces the template's default system prompt (LLaMA-Factory's <c>default_system</c>; qwen2_omni's is "You are a helpful assistant.").</summary>
    [JsonPropertyName("default_system")] public string? DefaultSystem { get; init; }

    /// <summary>Folder media paths (and dataset_info.json names) are resolved against.</summary>
    [JsonPropertyName("dataset_dir")] public string DatasetDir { get; init; } = ".";

    /// <summary>Comma-separated JSON/JSONL files, or dataset names of dataset_info.json in dataset_dir.</summary>
    [JsonPropertyName("dataset")] public string Dataset { get; init; } = "";

    /// <summary>Where encoded samples are cached (none when null).</summary>
    [JsonPropertyName("cache_dir")] public string? CacheDir { get; init; }

    /// <summary>Train on prompt tokens too.</summary>
    [JsonPropertyName("train_on_prompt")] public bool TrainOnPrompt { get; init; }

    /// <summary>Train only the last turn.</summary>
    [JsonPropertyName("mask_history")] public bool MaskHistory { get; init; }

    /// <summary>Keep at most this many samples per dataset (after loading, before filtering).</summary>
    [JsonPropertyName("max_samples")] public int? MaxSamples { get; init; }

    /// <summary>Fraction of the dataset held out for validation (MindSpeed-MM's val_rate: a seeded split).</summary>
    [JsonPropertyName("val_rate")] public double? ValRate { get; init; }

    /// <summary>Validation datasets (files or dataset_info names, as <c>dataset</c>); excludes val_rate.</summary>
    [JsonPropertyName("val_dataset")] public string? ValDataset { get; init; }

    /// <summary>Rows read from each validation dataset (as max_samples).</summary>
    [JsonPropertyName("val_max_samples")] public int? ValMaxSamples { get; init; }

    /// <summary>Threads that encode samples.</summary>
    [JsonPropertyName("preprocessing_num_workers")] public int? PreprocessingNumWorkers { get; init; }

    /// <summary>Accepted for compatibility (encoding is streamed).</summary>
    [JsonPropertyName("preprocessing_batch_size")] public int PreprocessingBatchSize { get; init; } = 1000;

    /// <summary>Forbidden: the cutoff is --seq-length.</summary>
    [JsonPropertyName("cutoff_len")] public int? CutoffLen { get; init; }

    /// <summary>Recompute even if a cache exists.</summary>
    [JsonPropertyName("overwrite_cache")] public bool OverwriteCache { get; init; }

    /// <summary>Pack several samples into each row of --seq-length tokens (LLaMA-Factory's <c>packing</c>).</summary>
    [JsonPropertyName("packing")] public bool Packing { get; init; }

    /// <summary>Pack, each sample attending to itself only with its own positions (LLaMA-Factory's <c>neat_packing</c>).</summary>
    [JsonPropertyName("neat_packing")] public bool NeatPacking { get; init; }

    /// <summary>What to do with a bad sample: skip (default) or fail.</summary>
    [JsonPropertyName("invalid_sample_policy")] public string InvalidSamplePolicy { get; init; } = "skip";

    /// <summary>Keys not modelled.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }
}

/// <summary><c>attr</c>: flat column and tag names (MindSpeed-MM DatasetAttr).</summary>
public sealed record AttrParameters
{
    /// <summary>sharegpt (default) or alpaca.</summary>
    [JsonPropertyName("formatting")] public string Formatting { get; init; } = "sharegpt";

    /// <summary>Pack samples (MindSpeed-MM's place for LLaMA-Factory's <c>packing</c>).</summary>
    [JsonPropertyName("packing")] public bool Packing { get; init; }

    /// <summary>Column of the conversation.</summary>
    [JsonPropertyName("messages")] public string? Messages { get; init; } = "conversations";

    /// <summary>Column of the system prompt.</summary>
    [JsonPropertyName("system")] public string? System { get; init; }

    /// <summary>Column of the tool list.</summary>
    [JsonPropertyName("tools")] public string? Tools { get; init; }

    /// <summary>Column of image paths.</summary>
    [JsonPropertyName("images")] public string? Images { get; init; }

    /// <summary>Column of video paths.</summary>
    [JsonPropertyName("videos")] public string? Videos { get; init; }

    /// <summary>Column of audio paths.</summary>
    [JsonPropertyName("audios")] public string? Audios { get; init; }

    /// <summary>Alpaca instruction column.</summary>
    [JsonPropertyName("prompt")] public string? Prompt { get; init; }

    /// <summary>Alpaca input column.</summary>
    [JsonPropertyName("query")] public string? Query { get; init; }

    /// <summary>Alpaca output column.</summary>
    [JsonPropertyName("response")] public string? Response { get; init; }

    /// <summary>Alpaca history column.</summary>
    [JsonPropertyName("history")] public string? History { get; init; }

    /// <summary>Message role key.</summary>
    [JsonPropertyName("role_tag")] public string RoleTag { get; init; } = "from";

    /// <summary>Message content key.</summary>
    [JsonPropertyName("content_tag")] public string ContentTag { get; init; } = "value";

    /// <summary>Role value of the user.</summary>
    [JsonPropertyName("user_tag")] public string UserTag { get; init; } = "human";

    /// <summary>Role value of the assistant.</summary>
    [JsonPropertyName("assistant_tag")] public string AssistantTag { get; init; } = "gpt";

    /// <summary>Role value of a tool result.</summary>
    [JsonPropertyName("observation_tag")] public string? ObservationTag { get; init; } = "observation";

    /// <summary>Role value of a tool call.</summary>
    [JsonPropertyName("function_tag")] public string? FunctionTag { get; init; } = "function_call";

    /// <summary>Role value of a leading system message.</summary>
    [JsonPropertyName("system_tag")] public string? SystemTag { get; init; } = "system";

    /// <summary>Keys not modelled.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }
}

/// <summary><c>dataloader_param</c>.</summary>
public sealed record DataloaderParam
{
    /// <summary>"sampler" (the only mode).</summary>
    [JsonPropertyName("dataloader_mode")] public string DataloaderMode { get; init; } = "sampler";

    /// <summary>Accepted: BaseRandomBatchSampler semantics.</summary>
    [JsonPropertyName("sampler_type")] public string? SamplerType { get; init; }

    /// <summary>Must be true.</summary>
    [JsonPropertyName("drop_last")] public bool DropLast { get; init; } = true;

    /// <summary>Shuffle every epoch.</summary>
    [JsonPropertyName("shuffle")] public bool Shuffle { get; init; } = true;

    /// <summary>Accepted for compatibility.</summary>
    [JsonPropertyName("pin_memory")] public bool PinMemory { get; init; }

    /// <summary>Background batch workers (overridden by --num-workers).</summary>
    [JsonPropertyName("num_workers")] public int NumWorkers { get; init; }

    /// <summary>Collator settings.</summary>
    [JsonPropertyName("collate_param")] public JsonElement? CollateParam { get; init; }

    /// <summary>Keys not modelled.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }
}
