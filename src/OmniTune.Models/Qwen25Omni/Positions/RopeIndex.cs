namespace OmniTune.Models.Qwen25Omni.Positions;

/// <summary>Token ids and constants get_rope_index needs (from the thinker config).</summary>
/// <param name="ImageTokenId"><c>&lt;|IMAGE|&gt;</c>.</param>
/// <param name="VideoTokenId"><c>&lt;|VIDEO|&gt;</c>.</param>
/// <param name="AudioTokenId"><c>&lt;|AUDIO|&gt;</c>.</param>
/// <param name="VisionStartTokenId"><c>&lt;|vision_bos|&gt;</c>.</param>
/// <param name="AudioStartTokenId"><c>&lt;|audio_bos|&gt;</c>.</param>
/// <param name="SpatialMergeSize">Vision merge size m.</param>
/// <param name="PositionIdPerSeconds">Temporal positions per second (25).</param>
/// <param name="SecondsPerChunk">Audio-in-video chunk length in seconds (2).</param>
public sealed record RopeIndexSettings(long ImageTokenId, long VideoTokenId, long AudioTokenId, long VisionStartTokenId,
    long AudioStartTokenId, int SpatialMergeSize, int PositionIdPerSeconds, int SecondsPerChunk)
{
    /// <summary>Settings of a thinker config.</summary>
    public static RopeIndexSettings From(Config.Qwen25OmniThinkerConfig c) => new(c.ImageTokenId, c.VideoTokenId, c.AudioTokenId,
        c.VisionStartTokenId, c.AudioStartTokenId, c.Vision.SpatialMergeSize, c.PositionIdPerSeconds, c.SecondsPerChunk);
}

/// <summary>The multimodal layout of a batch, as get_rope_index receives it.</summary>
/// <param name="InputIds">Token ids per row (all rows of equal length, padding included).</param>
/// <param name="AttentionMask">1 for tokens, 0 for padding, per row; null = no padding.</param>
/// <param name="ImageGrids">Grids of the images, in batch order.</param>
/// <param name="VideoGrids">Grids of the videos, in batch order.</param>
/// <param name="VideoSecondsPerGrid">Seconds per temporal group of each video.</param>
/// <param name="AudioFeatureLengths">Mel frames of each audio (feature_attention_mask sums), in batch order.</param>
/// <param name="UseAudioInVideo">Whether each video's audio track is interleaved with it.</param>
public sealed record RopeIndexInputs(long[][] InputIds, int[][]? AttentionMask, IReadOnlyList<GridThw> ImageGrids,
    IReadOnlyList<GridThw> VideoGrids, IReadOnlyList<double> VideoSecondsPerGrid, IReadOnlyList<int> AudioFeatureLengths,
    bool UseAudioInVideo);

/// <summary>Position ids [3][B][S] (rows t, h, w) and the per-row rope delta (before subtracting left padding).</summary>
/// <param name="Positions">Positions indexed [row][batch][token].</param>
/// <param name="Deltas">max position + 1 − real length, per batch row.</param>
public sealed record RopeIndexResult(long[][][] Positions, long[] Deltas);

/// <summary>
/// TMRoPE position ids: Hugging Face's <c>get_rope_index</c> for Qwen2.5-Omni as a pure function over token ids,
/// grids and audio lengths (reference §7), quirks included: <c>next</c> continues from the last appended piece, both
/// vision/audio bos tokens share a position, audio-in-video chunks interleave by <c>seconds_per_chunk</c>.
/// </summary>
public static class RopeIndex
{
    /// <summary>Computes positions and deltas for a batch.</summary>
    public static RopeIndexResult Compute(RopeIndexInputs inputs, RopeIndexSettings settings)
    {
        int batch = inputs.InputIds.Length;
        int length = batch == 0 ? 0 : inputs.InputIds[0].Length;
        var positions = new long[3][][];
        for (int r = 0; r < 3; r++)
        {
            positions[r] = new long[batch][];
            for (int b = 0; b < batch; b++) positions[r][b] = Enumerable.Repeat(1L, length).ToArray();
        }
        var deltas = new long[batch];
        bool multimodal = inputs.ImageGrids.Count > 0 || inputs.VideoGrids.Count > 0;
        var cursor = new ItemCursor();
        for (int b = 0; b < batch; b++)
        {
            if (inputs.InputIds[b].Length != length) throw new ArgumentException($"row {b} has {inputs.InputIds[b].Length} tokens, row 0 has {length}");
            int[] mask = inputs.AttentionMask?[b] ?? Enumerable.Repeat(1, length).ToArray();
            int[] kept = Enumerable.Range(0, length).Where(i => mask[i] == 1).ToArray();
            long[] ids = kept.Select(i => inputs.InputIds[b][i]).ToArray();
            List<long[][]> pieces = multimodal ? RowPieces(ids, inputs, settings, cursor, b) : [Sequential(ids.Length, 0)];
            long[][] row = Concatenate(pieces, ids.Length, b);
            for (int r = 0; r < 3; r++)
            {
                for (int k = 0; k < kept.Length; k++) positions[r][b][kept[k]] = row[r][k];
            }
            long max = ids.Length == 0 ? 0 : row.Max(r => r.Max());
            deltas[b] = max + 1 - ids.Length;
        }
        return new RopeIndexResult(positions, deltas);
    }

    sealed class ItemCursor
    {
        public int Image, Video, Audio;
    }

    static List<long[][]> RowPieces(long[] ids, RopeIndexInputs inputs, RopeIndexSettings s, ItemCursor cursor, int row)
    {
        int m = s.SpatialMergeSize;
        var starts = Enumerable.Range(0, ids.Length - 1).Where(i => ids[i] == s.VisionStartTokenId).Select(i => ids[i + 1]).ToList();
        int audios = ids.Count(t => t == s.AudioStartTokenId);
        int images = starts.Count(t => t == s.ImageTokenId);
        int videos = inputs.UseAudioInVideo ? starts.Count(t => t == s.AudioStartTokenId) : starts.Count(t => t == s.VideoTokenId);
        int items = inputs.UseAudioInVideo ? images + audios : images + videos + audios;
        var pieces = new List<long[][]>();
        long Next() => pieces.Count == 0 ? 0 : pieces[^1].Max(r => r.Max()) + 1;
        void Text(int count)
        {
            if (count > 0) pieces.Add(Sequential(count, Next()));
        }
        int st = 0;
        int remainImages = images, remainVideos = videos, remainAudios = audios;
        for (int item = 0; item < items; item++)
        {
            int edImage = remainImages > 0 ? IndexOf(ids, s.ImageTokenId, st) : int.MaxValue;
            int edVideo = remainVideos > 0 ? IndexOf(ids, s.VideoTokenId, st) : int.MaxValue;
            int edAudio = remainAudios > 0 ? IndexOf(ids, s.AudioTokenId, st) : int.MaxValue;
            int ed = Math.Min(edImage, Math.Min(edVideo, edAudio));
            if (ed == int.MaxValue) throw new ArgumentException($"row {row}: a multimodal start token has no placeholder after position {st}");
            if (ed == edAudio)
            {
                int textLength = ed - st - 1;
                Text(textLength);
                pieces.Add(Sequential(1, Next()));
                int tokens = AudioTokens(inputs, cursor.Audio++, row);
                pieces.Add(Sequential(tokens, Next()));
                pieces.Add(Sequential(1, Next()));
                st += textLength + 1 + tokens + 1;
                remainAudios--;
            }
            else if (ed == edImage)
            {
                int textLength = ed - st - 1;
                Text(textLength);
                pieces.Add(Sequential(1, Next()));
                GridThw grid = Grid(inputs.ImageGrids, cursor.Image++, "image", row);
                long[] t = Enumerable.Range(0, grid.T).Select(i => (long)i * s.PositionIdPerSeconds).ToArray();
                pieces.Add(VisionPositions(Next(), grid, m, t));
                pieces.Add(Sequential(1, Next()));
                st += textLength + 1 + (int)grid.Tokens(m) + 1;
                remainImages--;
            }
            else if (!inputs.UseAudioInVideo)
            {
                int textLength = ed - st - 1;
                Text(textLength);
                pieces.Add(Sequential(1, Next()));
                GridThw grid = Grid(inputs.VideoGrids, cursor.Video, "video", row);
                pieces.Add(VisionPositions(Next(), grid, m, VideoTemporal(grid, SecondsPerGrid(inputs, cursor.Video), s.PositionIdPerSeconds)));
                cursor.Video++;
                pieces.Add(Sequential(1, Next()));
                st += textLength + 1 + (int)grid.Tokens(m) + 1;
                remainVideos--;
            }
            else
            {
                int textLength = ed - st - 2;
                Text(textLength);
                long bos = Next();
                pieces.Add(Sequential(1, bos));
                pieces.Add(Sequential(1, bos));
                long start = Next();
                int audioTokens = AudioTokens(inputs, cursor.Audio++, row);
                long[][] audio = Sequential(audioTokens, start);
                GridThw grid = Grid(inputs.VideoGrids, cursor.Video, "video", row);
                long[][] video = VisionPositions(start, grid, m, VideoTemporal(grid, SecondsPerGrid(inputs, cursor.Video), s.PositionIdPerSeconds));
                cursor.Video++;
                int perChunk = s.PositionIdPerSeconds * s.SecondsPerChunk;
                var videoChunks = ChunkedIndex(video[0], perChunk, start);
                var audioChunks = ChunkedIndex(audio[0], perChunk, start);
                for (int j = 0; j < Math.Max(videoChunks.Count, audioChunks.Count); j++)
                {
                    if (j < videoChunks.Count) pieces.Add(Slice(video, videoChunks[j]));
                    if (j < audioChunks.Count) pieces.Add(Slice(audio, audioChunks[j]));
                }
                long eos = Next();
                pieces.Add(Sequential(1, eos));
                pieces.Add(Sequential(1, eos));
                st += textLength + 2 + audioTokens + (int)grid.Tokens(m) + 2;
                remainVideos--;
                remainAudios--;
            }
        }
        if (st < ids.Length) Text(ids.Length - st);
        return pieces;
    }

    /// <summary>
    /// Splits <paramref name="values"/> where value − <paramref name="baseValue"/> reaches the next multiple of
    /// <paramref name="perChunk"/>, advancing at most one chunk per element (HF's get_chunked_index).
    /// </summary>
    public static List<(int Start, int End)> ChunkedIndex(IReadOnlyList<long> values, int perChunk, long baseValue)
    {
        var chunks = new List<(int, int)>();
        int start = 0, current = 1;
        for (int i = 0; i < values.Count; i++)
        {
            if (values[i] - baseValue >= (long)current * perChunk)
            {
                chunks.Add((start, i));
                start = i;
                current++;
            }
        }
        chunks.Add((start, values.Count));
        return chunks;
    }

    /// <summary>Temporal positions of a video's groups: trunc(t · second_per_grid · 25) computed in float32 as PyTorch does.</summary>
    public static long[] VideoTemporal(GridThw grid, double secondPerGrid, int positionIdPerSeconds) =>
        Enumerable.Range(0, grid.T).Select(t => (long)((float)t * (float)secondPerGrid * positionIdPerSeconds)).ToArray();

    static long[][] VisionPositions(long start, GridThw grid, int m, long[] temporal)
    {
        int gh = grid.H / m, gw = grid.W / m;
        int n = temporal.Length * gh * gw;
        var rows = new[] { new long[n], new long[n], new long[n] };
        int k = 0;
        foreach (long t in temporal)
        {
            for (int h = 0; h < gh; h++)
            {
                for (int w = 0; w < gw; w++, k++)
                {
                    rows[0][k] = start + t;
                    rows[1][k] = start + h;
                    rows[2][k] = start + w;
                }
            }
        }
        return rows;
    }

    static long[][] Sequential(int count, long start)
    {
        var row = Enumerable.Range(0, count).Select(i => start + i).ToArray();
        return [row, (long[])row.Clone(), (long[])row.Clone()];
    }

    static long[][] Slice(long[][] piece, (int Start, int End) range) =>
        piece.Select(r => r[range.Start..range.End]).ToArray();

    static long[][] Concatenate(List<long[][]> pieces, int expected, int row)
    {
        var result = new long[3][];
        for (int r = 0; r < 3; r++) result[r] = pieces.SelectMany(p => p[r]).ToArray();
        if (result[0].Length != expected)
            throw new ArgumentException($"row {row}: the placeholders give {result[0].Length} positions but the row has {expected} tokens; grids or audio lengths do not match the token counts");
        return result;
    }

    static int IndexOf(long[] ids, long token, int from)
    {
        for (int i = Math.Max(from, 0); i < ids.Length; i++)
        {
            if (ids[i] == token) return i;
        }
        return int.MaxValue;
    }

    static GridThw Grid(IReadOnlyList<GridThw> grids, int index, string kind, int row) =>
        index < grids.Count ? grids[index] : throw new ArgumentException($"row {row}: {kind} #{index + 1} has a placeholder but only {grids.Count} {kind} grid(s) were given");

    static int AudioTokens(RopeIndexInputs inputs, int index, int row) =>
        index < inputs.AudioFeatureLengths.Count
            ? AudioLengths.Tokens(inputs.AudioFeatureLengths[index])
            : throw new ArgumentException($"row {row}: audio #{index + 1} has a placeholder but only {inputs.AudioFeatureLengths.Count} audio length(s) were given");

    static double SecondsPerGrid(RopeIndexInputs inputs, int index) =>
        index < inputs.VideoSecondsPerGrid.Count ? inputs.VideoSecondsPerGrid[index] : 1.0;
}
