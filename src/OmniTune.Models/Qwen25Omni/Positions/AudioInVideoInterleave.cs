namespace OmniTune.Models.Qwen25Omni.Positions;

/// <summary>
/// The token layout of a video with its audio track (use_audio_in_video): video and audio placeholders alternate in
/// chunks of <c>seconds_per_chunk</c>, video first (reference §8.3). The processor builds the prompt with it; the same
/// chunking drives get_rope_index, so both agree.
/// </summary>
public static class AudioInVideoInterleave
{
    /// <summary>Runs of (is video, count) between <c>&lt;|vision_bos|&gt;&lt;|audio_bos|&gt;</c> and <c>&lt;|audio_eos|&gt;&lt;|vision_eos|&gt;</c>.</summary>
    public static List<(bool IsVideo, int Count)> Layout(GridThw grid, double secondPerGrid, int audioTokens, int mergeSize,
        int positionIdPerSeconds, int secondsPerChunk)
    {
        int perGroup = grid.H / mergeSize * (grid.W / mergeSize);
        // Video token values: t · second_per_grid · 25 per merged token (float, not truncated, as the processor has it).
        var video = Enumerable.Range(0, grid.T).SelectMany(t => Enumerable.Repeat(t * secondPerGrid * positionIdPerSeconds, perGroup)).ToList();
        int perChunk = positionIdPerSeconds * secondsPerChunk;
        var videoChunks = Chunks(video, perChunk);
        var audioChunks = Chunks(Enumerable.Range(0, audioTokens).Select(i => (double)i).ToList(), perChunk);
        var runs = new List<(bool, int)>();
        for (int j = 0; j < Math.Max(videoChunks.Count, audioChunks.Count); j++)
        {
            if (j < videoChunks.Count && videoChunks[j] > 0) runs.Add((true, videoChunks[j]));
            if (j < audioChunks.Count && audioChunks[j] > 0) runs.Add((false, audioChunks[j]));
        }
        return runs;
    }

    static List<int> Chunks(List<double> values, int perChunk)
    {
        var sizes = new List<int>();
        int start = 0, current = 1;
        for (int i = 0; i < values.Count; i++)
        {
            if (values[i] >= (double)current * perChunk)
            {
                sizes.Add(i - start);
                start = i;
                current++;
            }
        }
        sizes.Add(values.Count - start);
        return sizes;
    }
}
