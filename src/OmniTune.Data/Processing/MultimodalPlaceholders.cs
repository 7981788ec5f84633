using System.Text;
using OmniTune.Data.Text;
using OmniTune.Models.Qwen25Omni.Positions;

namespace OmniTune.Data.Processing;

/// <summary>
/// LLaMA-Factory's <c>Qwen2OmniPlugin.process_messages</c> (llamafactory_data.md §4.2): <c>&lt;image&gt;</c>,
/// <c>&lt;video&gt;</c> and <c>&lt;audio&gt;</c> in the message texts become bos + N placeholder tokens + eos, N from
/// the grids and audio lengths; with use_audio_in_video each <c>&lt;video&gt;</c> takes the next audio and the two
/// interleave in 2-second chunks, the video's <c>&lt;audio&gt;</c> tag being removed.
/// </summary>
public static class MultimodalPlaceholders
{
    /// <summary>Placeholder tags as they appear in datasets.</summary>
    public const string ImageTag = "<image>", VideoTag = "<video>", AudioTag = "<audio>";

    /// <summary>Counts the placeholders of each kind over all messages.</summary>
    public static (int Images, int Videos, int Audios) Count(IEnumerable<ChatMessage> messages)
    {
        int images = 0, videos = 0, audios = 0;
        foreach (ChatMessage m in messages)
        {
            images += Occurrences(m.Content, ImageTag);
            videos += Occurrences(m.Content, VideoTag);
            audios += Occurrences(m.Content, AudioTag);
        }
        return (images, videos, audios);
    }

    /// <summary>
    /// Checks that the placeholders match the media lists; the message names both counts. With use_audio_in_video a
    /// video's audio is counted as an audio item too.
    /// </summary>
    public static void Validate(IReadOnlyList<ChatMessage> messages, int images, int videos, int audios)
    {
        var (i, v, a) = Count(messages);
        if (i != images) throw new ArgumentException($"the sample has {i} {ImageTag} placeholder(s) but {images} image(s)");
        if (v != videos) throw new ArgumentException($"the sample has {v} {VideoTag} placeholder(s) but {videos} video(s)");
        if (a != audios) throw new ArgumentException($"the sample has {a} {AudioTag} placeholder(s) but {audios} audio(s)");
    }

    /// <summary>Expands every tag; media are consumed in the order LLaMA-Factory visits them.</summary>
    public static List<ChatMessage> Expand(IReadOnlyList<ChatMessage> messages, IReadOnlyList<GridThw> images,
        IReadOnlyList<(GridThw Grid, double SecondsPerGrid)> videos, IReadOnlyList<int> audioFrames, bool useAudioInVideo,
        int mergeSize, int positionIdPerSeconds = 25, int secondsPerChunk = 2)
    {
        Validate(messages, images.Count, videos.Count, audioFrames.Count);
        int unit = mergeSize * mergeSize, ni = 0, nv = 0, na = 0;
        var result = new List<ChatMessage>(messages.Count);
        foreach (ChatMessage message in messages)
        {
            string c = message.Content;
            while (c.Contains(ImageTag, StringComparison.Ordinal))
                c = ReplaceFirst(c, ImageTag, Wrap("<|vision_bos|>", "<|IMAGE|>", (int)(images[ni++].Patches / unit), "<|vision_eos|>"));
            if (useAudioInVideo && audioFrames.Count > 0 && videos.Count > 0)
            {
                if (videos.Count != audioFrames.Count)
                    throw new ArgumentException($"use_audio_in_video needs one audio per video; the sample has {videos.Count} video(s) and {audioFrames.Count} audio(s)");
                while (c.Contains(VideoTag, StringComparison.Ordinal))
                {
                    int videoAt = c.IndexOf(VideoTag, StringComparison.Ordinal);
                    if (c.IndexOf(AudioTag, videoAt, StringComparison.Ordinal) < 0)
                        throw new ArgumentException($"each {VideoTag} must be followed by an {AudioTag} when use_audio_in_video is set");
                    var (grid, spg) = videos[nv++];
                    c = ReplaceFirst(c, VideoTag, Interleaved(grid, spg, AudioLengths.Tokens(audioFrames[na++]), mergeSize, positionIdPerSeconds, secondsPerChunk));
                    c = ReplaceFirst(c, AudioTag, "");
                }
            }
            else
            {
                while (c.Contains(AudioTag, StringComparison.Ordinal))
                    c = ReplaceFirst(c, AudioTag, Wrap("<|audio_bos|>", "<|AUDIO|>", AudioLengths.Tokens(audioFrames[na++]), "<|audio_eos|>"));
                while (c.Contains(VideoTag, StringComparison.Ordinal))
                    c = ReplaceFirst(c, VideoTag, Wrap("<|vision_bos|>", "<|VIDEO|>", (int)(videos[nv++].Grid.Patches / unit), "<|vision_eos|>"));
            }
            result.Add(message with { Content = c });
        }
        return result;
    }

    static string Interleaved(GridThw grid, double spg, int audioTokens, int merge, int perSecond, int secondsPerChunk)
    {
        var text = new StringBuilder("<|vision_bos|><|audio_bos|>");
        foreach (var (isVideo, count) in AudioInVideoInterleave.Layout(grid, spg, audioTokens, merge, perSecond, secondsPerChunk))
            text.Insert(text.Length, isVideo ? "<|VIDEO|>" : "<|AUDIO|>", count);
        return text.Append("<|audio_eos|><|vision_eos|>").ToString();
    }

    static string Wrap(string bos, string token, int count, string eos) =>
        new StringBuilder(bos).Insert(bos.Length, token, count).Append(eos).ToString();

    static string ReplaceFirst(string text, string tag, string replacement)
    {
        int at = text.IndexOf(tag, StringComparison.Ordinal);
        return string.Concat(text.AsSpan(0, at), replacement, text.AsSpan(at + tag.Length));
    }

    static int Occurrences(string text, string tag)
    {
        int count = 0;
        for (int at = text.IndexOf(tag, StringComparison.Ordinal); at >= 0; at = text.IndexOf(tag, at + tag.Length, StringComparison.Ordinal)) count++;
        return count;
    }
}
