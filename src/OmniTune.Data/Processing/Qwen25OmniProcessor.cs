using OmniTune.Data.Media;
using OmniTune.Data.Text;
using OmniTune.Models.Qwen25Omni.Positions;

namespace OmniTune.Data.Processing;

/// <summary>Media files of one sample, in order of appearance per kind.</summary>
/// <param name="Images">Image paths.</param>
/// <param name="Videos">Video paths.</param>
/// <param name="Audios">Audio paths (with use_audio_in_video: the videos' tracks, or empty to take them from the videos).</param>
public sealed record SampleMedia(IReadOnlyList<string> Images, IReadOnlyList<string> Videos, IReadOnlyList<string> Audios)
{
    /// <summary>No media.</summary>
    public static SampleMedia None { get; } = new([], [], []);
}

/// <summary>A conversation turned into token-id pairs and model-ready media.</summary>
/// <param name="Pairs">(source ids, target ids) per turn.</param>
/// <param name="Images">Processed images.</param>
/// <param name="Videos">Processed videos.</param>
/// <param name="Audios">Processed audios (valid frames only).</param>
public sealed record EncodedConversation(List<(List<int> Source, List<int> Target)> Pairs, IReadOnlyList<VisionInput> Images,
    IReadOnlyList<VisionInput> Videos, IReadOnlyList<AudioInput> Audios);

/// <summary>
/// The Qwen2.5-Omni processor as LLaMA-Factory drives it for training: load and process the media, expand the
/// placeholders, render the <c>qwen2_omni</c> template and tokenize per slot.
/// </summary>
public sealed class Qwen25OmniProcessor
{
    /// <summary>Creates a processor.</summary>
    public Qwen25OmniProcessor(Qwen2Tokenizer tokenizer, ProcessorSettings settings, string defaultSystem = Qwen2OmniTemplate.DefaultSystem)
    {
        settings.Validate();
        Tokenizer = tokenizer;
        Settings = settings;
        Template = new Qwen2OmniTemplate(tokenizer, defaultSystem);
    }

    /// <summary>
    /// Tokenizer and preprocessor_config.json from a Hugging Face model folder, with <paramref name="settings"/> for the rest
    /// and <paramref name="defaultSystem"/> (when given) as the template's default system prompt.
    /// </summary>
    public static Qwen25OmniProcessor Load(string modelFolder, ProcessorSettings? settings = null, string? defaultSystem = null) =>
        new(Qwen2Tokenizer.Load(modelFolder), (settings ?? new ProcessorSettings()).WithModelFolder(modelFolder), defaultSystem ?? Qwen2OmniTemplate.DefaultSystem);

    /// <summary>The tokenizer.</summary>
    public Qwen2Tokenizer Tokenizer { get; }

    /// <summary>The media settings.</summary>
    public ProcessorSettings Settings { get; }

    /// <summary>The chat template.</summary>
    public Qwen2OmniTemplate Template { get; }

    /// <summary>Loads and processes the media of a sample.</summary>
    public (List<VisionInput> Images, List<VisionInput> Videos, List<AudioInput> Audios) LoadMedia(SampleMedia media)
    {
        var images = media.Images.Select(p => ImagePreprocessor.Process(p, Settings)).ToList();
        var videos = media.Videos.Select(p => VideoPreprocessor.Process(p, Settings)).ToList();
        bool tracksFromVideos = Settings.UseAudioInVideo && media.Audios.Count == 0;
        IEnumerable<string> audioPaths = tracksFromVideos ? media.Videos : media.Audios;
        var audios = audioPaths.Select(p =>
        {
            if (tracksFromVideos) MediaSummary.RequireAudioTrack(p);
            return WhisperFeatures.FromFile(p, Settings);
        }).ToList();
        return (images, videos, audios);
    }

    /// <summary>
    /// A generation prompt: the messages (ending with a user turn) rendered with the system block and the
    /// assistant header, placeholders expanded, with the processed media.
    /// </summary>
    public EncodedConversation EncodePrompt(IReadOnlyList<ChatMessage> messages, SampleMedia media, string? system = null)
    {
        var (images, videos, audios) = LoadMedia(media);
        bool tracksFromVideos = Settings.UseAudioInVideo && media.Audios.Count == 0 && media.Videos.Count > 0;
        IReadOnlyList<ChatMessage> tagged = tracksFromVideos
            ? messages.Select(m => m with { Content = m.Content.Replace(MultimodalPlaceholders.VideoTag, MultimodalPlaceholders.VideoTag + MultimodalPlaceholders.AudioTag, StringComparison.Ordinal) }).ToList()
            : messages;
        var expanded = MultimodalPlaceholders.Expand(tagged, images.Select(x => x.Grid).ToList(),
            videos.Select(x => (x.Grid, x.SecondsPerGrid)).ToList(), audios.Select(x => x.Frames).ToList(), Settings.UseAudioInVideo, Settings.MergeSize);
        return new EncodedConversation([(Template.EncodePrompt(expanded, system), [])], images, videos, audios);
    }

    /// <summary>Encodes a conversation (alternating prompt/answer messages with placeholders) with its media.</summary>
    public EncodedConversation Encode(IReadOnlyList<ChatMessage> messages, SampleMedia media, string? system = null, string? tools = null)
    {
        // With use_audio_in_video and no audio list, each video's own track is its audio: tag it after the video.
        bool tracksFromVideos = Settings.UseAudioInVideo && media.Audios.Count == 0 && media.Videos.Count > 0;
        IReadOnlyList<ChatMessage> tagged = tracksFromVideos
            ? messages.Select(m => m with { Content = m.Content.Replace(MultimodalPlaceholders.VideoTag, MultimodalPlaceholders.VideoTag + MultimodalPlaceholders.AudioTag, StringComparison.Ordinal) }).ToList()
            : messages;
        MultimodalPlaceholders.Validate(tagged, media.Images.Count, media.Videos.Count, tracksFromVideos ? media.Videos.Count : media.Audios.Count);
        var (images, videos, audios) = LoadMedia(media);
        var expanded = MultimodalPlaceholders.Expand(tagged, images.Select(x => x.Grid).ToList(),
            videos.Select(x => (x.Grid, x.SecondsPerGrid)).ToList(), audios.Select(x => x.Frames).ToList(), Settings.UseAudioInVideo, Settings.MergeSize);
        return new EncodedConversation(Template.EncodeMultiturn(expanded, system, tools), images, videos, audios);
    }
}
