using System.Text.Json;

namespace OmniTune.Data.Media;

/// <summary>
/// Everything that decides how media become model inputs. The first group is LLaMA-Factory's / MindSpeed-MM's
/// pre-processing (data.json <c>preprocess_parameters</c>, LF defaults); the second is the Hugging Face processor's
/// <c>preprocessor_config.json</c> (Qwen2.5-Omni-7B values as defaults).
/// </summary>
public sealed record ProcessorSettings
{
    /// <summary>Images larger than this are shrunk first (LF image_max_pixels, 768·768).</summary>
    public long ImageMaxPixels { get; init; } = 768 * 768;

    /// <summary>Images of more pixels than this are refused before decoding (Pillow's decompression-bomb limit, 2 × 89,478,485).</summary>
    public long ImageDecodeMaxPixels { get; init; } = ImageDecoder.DefaultMaxPixels;

    /// <summary>
    /// Apply the EXIF orientation when decoding images (Hugging Face's <c>load_image</c>, the generate path); false for
    /// training data, as LLaMA-Factory and MindSpeed-MM load images without it.
    /// </summary>
    public bool ExifTranspose { get; init; }

    /// <summary>Images smaller than this are enlarged first (LF image_min_pixels, 32·32).</summary>
    public long ImageMinPixels { get; init; } = 32 * 32;

    /// <summary>Per-frame shrink bound for videos (LF video_max_pixels, 256·256).</summary>
    public long VideoMaxPixels { get; init; } = 256 * 256;

    /// <summary>Per-frame enlarge bound for videos (LF video_min_pixels, 16·16).</summary>
    public long VideoMinPixels { get; init; } = 16 * 16;

    /// <summary>Frames sampled per second of video (LF video_fps).</summary>
    public double VideoFps { get; init; } = 2.0;

    /// <summary>Most frames sampled from one video (LF video_maxlen).</summary>
    public int VideoMaxLen { get; init; } = 128;

    /// <summary>Interleave each video's audio track with it.</summary>
    public bool UseAudioInVideo { get; init; }

    /// <summary>Audio is resampled to this rate (16 kHz for Whisper features).</summary>
    public int AudioSamplingRate { get; init; } = 16000;

    /// <summary>HF image processor min_pixels.</summary>
    public long ProcessorMinPixels { get; init; } = 3136;

    /// <summary>HF image processor max_pixels.</summary>
    public long ProcessorMaxPixels { get; init; } = 12_845_056;

    /// <summary>HF video processor min_pixels (the checkpoint's preprocessor_config value).</summary>
    public long ProcessorVideoMinPixels { get; init; } = 3136;

    /// <summary>HF video processor max_pixels.</summary>
    public long ProcessorVideoMaxPixels { get; init; } = 12_845_056;

    /// <summary>Patch side in pixels.</summary>
    public int PatchSize { get; init; } = 14;

    /// <summary>Frames per temporal patch.</summary>
    public int TemporalPatchSize { get; init; } = 2;

    /// <summary>Patch block merged into one token.</summary>
    public int MergeSize { get; init; } = 2;

    /// <summary>Normalisation mean (OpenAI CLIP).</summary>
    public float[] ImageMean { get; init; } = [0.48145466f, 0.4578275f, 0.40821073f];

    /// <summary>Normalisation std (OpenAI CLIP).</summary>
    public float[] ImageStd { get; init; } = [0.26862954f, 0.26130258f, 0.27577711f];

    /// <summary>Log-mel bins.</summary>
    public int MelBins { get; init; } = 128;

    /// <summary>STFT size.</summary>
    public int FftSize { get; init; } = 400;

    /// <summary>STFT hop in samples.</summary>
    public int HopLength { get; init; } = 160;

    /// <summary>Longest audio kept, in seconds (longer audio is truncated).</summary>
    public int ChunkLengthSeconds { get; init; } = 300;

    /// <summary>Resize factor: patch · merge.</summary>
    public int Factor => PatchSize * MergeSize;

    /// <summary>Reads the HF processor values of <c>preprocessor_config.json</c> in <paramref name="folder"/>, if present.</summary>
    public ProcessorSettings WithModelFolder(string folder)
    {
        string path = Path.Combine(folder, "preprocessor_config.json");
        if (!File.Exists(path)) return this;
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement root = document.RootElement;
        long Long(string key, long fallback) => root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt64() : fallback;
        int Int(string key, int fallback) => (int)Long(key, fallback);
        float[] Floats(string key, float[] fallback) => root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Array
            ? v.EnumerateArray().Select(e => e.GetSingle()).ToArray() : fallback;
        return this with
        {
            ProcessorMinPixels = Long("min_pixels", ProcessorMinPixels),
            ProcessorMaxPixels = Long("max_pixels", ProcessorMaxPixels),
            ProcessorVideoMinPixels = Long("min_pixels", ProcessorVideoMinPixels),
            ProcessorVideoMaxPixels = Long("max_pixels", ProcessorVideoMaxPixels),
            PatchSize = Int("patch_size", PatchSize),
            TemporalPatchSize = Int("temporal_patch_size", TemporalPatchSize),
            MergeSize = Int("merge_size", MergeSize),
            ImageMean = Floats("image_mean", ImageMean),
            ImageStd = Floats("image_std", ImageStd),
            MelBins = Int("feature_size", MelBins),
            FftSize = Int("n_fft", FftSize),
            HopLength = Int("hop_length", HopLength),
            ChunkLengthSeconds = Int("chunk_length", ChunkLengthSeconds),
        };
    }

    /// <summary>Checks the bounds; an error names the setting.</summary>
    public void Validate()
    {
        if (ImageDecodeMaxPixels < 1) throw new ArgumentException($"image_decode_max_pixels {ImageDecodeMaxPixels} must be positive");
        if (ImageMaxPixels < ImageMinPixels) throw new ArgumentException($"image_max_pixels {ImageMaxPixels} is below image_min_pixels {ImageMinPixels}");
        if (VideoMaxPixels < VideoMinPixels) throw new ArgumentException($"video_max_pixels {VideoMaxPixels} is below video_min_pixels {VideoMinPixels}");
        if (VideoFps <= 0) throw new ArgumentException($"video_fps {VideoFps} must be positive");
        if (VideoMaxLen < 1) throw new ArgumentException($"video_maxlen {VideoMaxLen} must be at least 1");
    }
}
