using OmniTune.Core.Safetensors;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Tiny;

/// <summary>
/// A Qwen2.5-Omni of the real structure (all three towers, real key names, real special tokens) but tiny widths,
/// written as a Hugging Face folder: config.json, model.safetensors, and a byte-level BPE tokenizer.
/// </summary>
public static class TinyQwen25Omni
{
    /// <summary>Standard deviation of the random matrices (Hugging Face's initializer_range).</summary>
    public const double InitStd = 0.02;

    /// <summary>Qwen2.5-Omni-7B's preprocessor_config.json values (image processor and Whisper feature extractor).</summary>
    public const string PreprocessorConfig = """
        {
          "processor_class": "Qwen2_5OmniProcessor",
          "image_processor_type": "Qwen2VLImageProcessor",
          "feature_extractor_type": "WhisperFeatureExtractor",
          "min_pixels": 3136,
          "max_pixels": 12845056,
          "patch_size": 14,
          "temporal_patch_size": 2,
          "merge_size": 2,
          "image_mean": [0.48145466, 0.4578275, 0.40821073],
          "image_std": [0.26862954, 0.26130258, 0.27577711],
          "do_resize": true,
          "do_rescale": true,
          "rescale_factor": 0.00392156862745098,
          "do_normalize": true,
          "do_convert_rgb": true,
          "resample": 3,
          "feature_size": 128,
          "sampling_rate": 16000,
          "hop_length": 160,
          "n_fft": 400,
          "chunk_length": 300,
          "n_samples": 4800000,
          "nb_max_frames": 30000,
          "padding_value": 0.0,
          "padding_side": "right",
          "dither": 0.0,
          "return_attention_mask": true
        }

        """;

    /// <summary>The tiny configuration whose token ids are those of <paramref name="tokenizer"/>.</summary>
    public static Qwen25OmniConfig Config(TinyTokenizer tokenizer)
    {
        const int hidden = 64;
        int Id(string special) => tokenizer.SpecialIds[special];
        int vocab = (tokenizer.Count + 63) / 64 * 64;
        var thinker = new Qwen25OmniThinkerConfig
        {
            Text = new Qwen25OmniTextConfig
            {
                VocabSize = vocab,
                HiddenSize = hidden,
                IntermediateSize = 176,
                NumHiddenLayers = 2,
                NumAttentionHeads = 4,
                NumKeyValueHeads = 2,
                RopeScaling = new RopeScalingConfig { MropeSection = [2, 3, 3] },
                MaxWindowLayers = 2,
            },
            Vision = new Qwen25OmniVisionConfig
            {
                Depth = 2,
                HiddenSize = 32,
                IntermediateSize = 64,
                NumHeads = 2,
                FullAttBlockIndexes = [1],
                OutHiddenSize = hidden,
            },
            Audio = new Qwen25OmniAudioConfig
            {
                DModel = 32,
                EncoderLayers = 2,
                EncoderAttentionHeads = 2,
                EncoderFfnDim = 64,
                OutputDim = hidden,
            },
            AudioTokenId = Id("<|AUDIO|>"),
            ImageTokenId = Id("<|IMAGE|>"),
            VideoTokenId = Id("<|VIDEO|>"),
            AudioStartTokenId = Id("<|audio_bos|>"),
            AudioEndTokenId = Id("<|audio_eos|>"),
            VisionStartTokenId = Id("<|vision_bos|>"),
            VisionEndTokenId = Id("<|vision_eos|>"),
            VisionTokenId = Id("<|vision_pad|>"),
            BosTokenId = Id("<|im_start|>"),
            EosTokenId = Id("<|im_end|>"),
            PadTokenId = Id("<|endoftext|>"),
            UserTokenId = tokenizer.IdOf("user") ?? tokenizer.IdOf("u")!.Value,
        };
        return new Qwen25OmniConfig { Thinker = thinker, TorchDtype = "float32" };
    }

    /// <summary>Writes the whole folder; returns its config (changed by <paramref name="adjust"/> first, e.g. more layers).</summary>
    public static Qwen25OmniConfig Write(string folder, int seed = 0, ScalarType dtype = ScalarType.Float32, Func<Qwen25OmniConfig, Qwen25OmniConfig>? adjust = null)
    {
        Directory.CreateDirectory(folder);
        TinyTokenizer tokenizer = TinyTokenizerBuilder.Build();
        Qwen25OmniConfig config = Config(tokenizer) with { TorchDtype = dtype == ScalarType.BFloat16 ? "bfloat16" : "float32" };
        if (adjust is not null) config = adjust(config);
        TinyTokenizerBuilder.Write(tokenizer, folder);
        Qwen25OmniConfigLoader.Save(config, folder);
        File.WriteAllText(Path.Combine(folder, "preprocessor_config.json"), PreprocessorConfig);
        WriteRandomWeights(Path.Combine(folder, SafetensorsCheckpoint.SingleFileName), config.Thinker, seed, dtype);
        return config;
    }

    /// <summary>Writes deterministic random weights for every thinker tensor, under the <c>thinker.</c> prefix.</summary>
    public static void WriteRandomWeights(string path, Qwen25OmniThinkerConfig config, int seed, ScalarType dtype)
    {
        using var generator = new Generator((ulong)seed);
        var tensors = ThinkerWeightLayout.For(config)
            .Select(w => new TensorToWrite(ThinkerWeightLayout.Prefix + w.Key, dtype, w.Shape, () => RandomValue(w, generator).to(dtype)))
            .ToList();
        SafetensorsWriter.WriteFile(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>
    /// Norm weights 1 + N(0, σ²), everything else N(0, σ²) with σ = <see cref="InitStd"/> (biases non-zero so that a
    /// mix-up of tensors is visible in tests).
    /// </summary>
    static Tensor RandomValue(ThinkerWeight weight, Generator generator)
    {
        Tensor noise = randn(weight.Shape, ScalarType.Float32, generator: generator) * InitStd;
        bool isNormWeight = weight.Key.EndsWith(".weight", StringComparison.Ordinal)
            && (weight.Key.Contains("norm", StringComparison.Ordinal) || weight.Key.Contains("ln_", StringComparison.Ordinal));
        return isNormWeight ? noise + 1 : noise;
    }
}
