using OmniTune.Data.Datasets;
using OmniTune.Data.Text;
using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Tests.Models;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Data;

public sealed class DatasetTests : IClassFixture<DatasetFixture>
{
    readonly DatasetFixture fixture;

    public DatasetTests(DatasetFixture fixture) => this.fixture = fixture;

    SupervisedDataset Build(DataJsonConfig config, int seq = 1024, TextWriter? log = null) =>
        SupervisedDatasetBuilder.Build(config, fixture.Processor(), new DatasetBuildOptions(seq, Workers: 2), log ?? TextWriter.Null);

    [Fact]
    public void Every_broken_row_is_reported_once_with_its_file_index_and_reason_and_good_rows_are_kept_in_order()
    {
        Assert.True(MediaFixtures.HasFFmpeg, "ffmpeg is required (apt-get install ffmpeg)");
        var log = new StringWriter();
        var dataset = Build(fixture.Config(), log: log);
        Assert.Equal([0, 1, 2, 3, 4, 10], dataset.Samples.Select(s => s.Location.Index));
        var reasons = dataset.Invalid.ToDictionary(i => i.Location.Index, i => i.Reason);
        Assert.Equal([5, 6, 7, 8, 9, 11], reasons.Keys.Order());
        Assert.Contains("role 'user' where 'assistant' is expected", reasons[5]);
        Assert.Contains("2 <image> placeholder(s) but 1 image(s)", reasons[6]);
        Assert.Contains("missing.png: image file not found", reasons[7]);
        Assert.Contains("broken.png: not a decodable image", reasons[8]);
        Assert.Contains("empty answer", reasons[9]);
        Assert.Contains("does not end with an answer", reasons[11]);
        Assert.All(dataset.Invalid, i => Assert.Equal(fixture.DatasetFile, i.Location.File));
        Assert.Contains("skipped 6 of 12 samples", log.ToString());
        Assert.Equal(["text", "image", "audio", "video", "image", "text"], dataset.Samples.Select(s => s.Modalities));
    }

    [Fact]
    public void The_fail_policy_stops_at_a_bad_sample_and_names_it()
    {
        var error = Assert.Throws<InvalidSampleException>(() => Build(fixture.Config(policy: "fail")));
        Assert.Contains(fixture.DatasetFile, error.Message);
    }

    [Fact]
    public void Max_samples_keeps_the_first_rows_of_each_dataset()
    {
        var dataset = Build(fixture.Config(maxSamples: 3));
        Assert.Equal([0, 1, 2], dataset.Samples.Select(s => s.Location.Index));
    }

    [Fact]
    public void Labels_cover_only_the_answers_and_media_tokens_match_the_grids()
    {
        var processor = fixture.Processor();
        var dataset = Build(fixture.Config());
        EncodedSample image = dataset.Samples[1];
        string text = processor.Tokenizer.Decode(image.InputIds);
        Assert.StartsWith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_bos|><|IMAGE|>", text, StringComparison.Ordinal);
        int imageTokens = image.InputIds.Count(t => t == processor.Tokenizer.TokenToId("<|IMAGE|>"));
        Assert.Equal(image.Images[0].Grid.Tokens(2), imageTokens);
        string trained = processor.Tokenizer.Decode(image.Labels.Where(l => l != -100));
        Assert.Equal("A red circle.<|im_end|>\n", trained);
        EncodedSample audio = dataset.Samples[2];
        Assert.Equal(AudioLengths.Tokens(audio.Audios[0].Frames), audio.InputIds.Count(t => t == processor.Tokenizer.TokenToId("<|AUDIO|>")));
        Assert.Equal(80, audio.Audios[0].Frames);
    }

    [Theory]
    [InlineData(3000, 2000, 1000, 600, 400)]
    [InlineData(2000, 3000, 1000, 400, 600)]
    [InlineData(1000, 100, 1000, 900, 100)]
    [InlineData(100, 1000, 1000, 100, 900)]
    [InlineData(100, 500, 1000, 100, 500)]
    [InlineData(500, 100, 1000, 500, 100)]
    [InlineData(10, 10, 1000, 10, 10)]
    [InlineData(40, 20, 10, 7, 3)]
    public void Infer_seqlen_matches_llama_factory(int source, int target, int cutoff, int s, int t) =>
        Assert.Equal((s, t), SupervisedEncoder.InferSeqlen(source, target, cutoff));

    static ConvertedSample TwoTurns(string extraUser = "") => new(new SampleLocation("x.json", 0),
        [new(ChatRole.User, "First question?" + extraUser), new(ChatRole.Assistant, "First answer."),
         new(ChatRole.User, "Second question?"), new(ChatRole.Assistant, "Second answer.")], "", "", [], [], []);

    [Fact]
    public void Train_on_prompt_labels_everything_and_mask_history_only_the_last_answer()
    {
        var processor = fixture.Processor();
        var onPrompt = new SupervisedEncoder(processor, 1024, trainOnPrompt: true, maskHistory: false).Encode(TwoTurns()).Sample!;
        Assert.Equal(onPrompt.InputIds, onPrompt.Labels);
        var history = new SupervisedEncoder(processor, 1024, trainOnPrompt: false, maskHistory: true).Encode(TwoTurns()).Sample!;
        Assert.Equal("Second answer.<|im_end|>\n", processor.Tokenizer.Decode(history.Labels.Where(l => l != -100)));
        var plain = new SupervisedEncoder(processor, 1024, false, false).Encode(TwoTurns()).Sample!;
        Assert.Equal(plain.InputIds, history.InputIds);
        Assert.Equal("First answer.<|im_end|>\nSecond answer.<|im_end|>\n", processor.Tokenizer.Decode(plain.Labels.Where(l => l != -100)));
    }

    [Fact]
    public void Truncation_cuts_text_but_never_through_a_media_span()
    {
        var processor = fixture.Processor();
        var full = new SupervisedEncoder(processor, 4096, false, false).Encode(TwoTurns()).Sample!;
        var cut = new SupervisedEncoder(processor, full.InputIds.Length - 5, false, false).Encode(TwoTurns()).Sample!;
        Assert.True(cut.Truncated);
        Assert.Equal(full.InputIds.Length - 5, cut.InputIds.Length);
        var image = new ConvertedSample(new SampleLocation("x.json", 1), [new(ChatRole.User, "Look at this carefully please <image>"), new(ChatRole.Assistant, "A circle.")],
            "", "", [Path.Combine(fixture.DataDir, "media/red.png")], [], []);
        var (sample, problem) = new SupervisedEncoder(processor, 40, false, false).Encode(image);
        Assert.Null(sample);
        Assert.Contains("would cut through a media span", problem!.Reason);
    }

    [Fact]
    public void The_cache_is_reused_detected_when_corrupt_and_keyed_by_the_data()
    {
        using var dir = new TempFolder();
        var first = Build(fixture.Config(cacheDir: dir.Path));
        Assert.False(first.FromCache);
        var second = Build(fixture.Config(cacheDir: dir.Path));
        Assert.True(second.FromCache);
        Assert.Equal(first.Samples.Select(s => s.InputIds.Length), second.Samples.Select(s => s.InputIds.Length));
        Assert.Equal(first.Samples.SelectMany(s => s.Labels), second.Samples.SelectMany(s => s.Labels));
        Assert.Equal(first.Invalid.Select(i => i.ToString()), second.Invalid.Select(i => i.ToString()));
        string file = Directory.GetFiles(dir.Path, "*.bin").Single();
        byte[] bytes = File.ReadAllBytes(file);
        bytes[bytes.Length / 2] ^= 0xFF;
        File.WriteAllBytes(file, bytes);
        var log = new StringWriter();
        var rebuilt = Build(fixture.Config(cacheDir: dir.Path), log: log);
        Assert.False(rebuilt.FromCache);
        Assert.Contains("checksum mismatch", log.ToString());
        Assert.False(Build(fixture.Config(cacheDir: dir.Path, maxSamples: 4)).FromCache);
    }

    BatchCollator Collator() => new(fixture.Processor().Settings, RopeIndexSettings.From(TinyThinker.Config()), TinyThinker.Config().PadTokenId);

    [Fact]
    public void Collation_pads_to_a_multiple_of_8_and_the_batch_runs_through_the_tiny_thinker()
    {
        var dataset = Build(fixture.Config());
        using var batch = Collator().Collate(dataset.Samples.Take(4).ToList());
        long length = batch.Inputs.InputIds.shape[1];
        Assert.Equal(0, length % 8);
        Assert.Equal(dataset.Samples.Take(4).Max(s => s.InputIds.Length), (int)batch.Inputs.AttentionMask!.sum(1).max().item<long>());
        Assert.Equal([3L, 4, length], batch.Inputs.PositionIds!.shape);
        Assert.Equal(-100, batch.Labels[0, length - 1].item<long>());
        var (model, _, _) = ThinkerCheckpointLoader.Load(fixture.Model);
        using (model)
        using (no_grad())
        {
            Tensor loss = CausalLmLoss.Mean(model.Forward(batch.Inputs), batch.Labels);
            Assert.True(float.IsFinite(loss.item<float>()));
        }
    }

    [Fact]
    public void Data_parallel_ranks_get_disjoint_samples_and_drop_last_applies()
    {
        var samples = Enumerable.Range(0, 11).Select(i => new EncodedSample(new SampleLocation("x", i), [1, 2], [1, 2], [], [], [], false)).ToList();
        var loaders = Enumerable.Range(0, 2).Select(r => new SupervisedDataLoader(samples, Collator(), microBatch: 2, seed: 7, shuffle: true, dataParallelRank: r, dataParallelSize: 2)).ToList();
        Assert.Equal(2, loaders[0].BatchesPerEpoch);
        var seen = loaders.SelectMany(l => Enumerable.Range(0, 2).SelectMany(b => l.SampleIndices(new LoaderPosition(0, b)))).ToList();
        Assert.Equal(8, seen.Distinct().Count());
        Assert.NotEqual(SupervisedDataLoader.EpochOrder(11, 7, 0, true), SupervisedDataLoader.EpochOrder(11, 7, 1, true));
        Assert.Equal(SupervisedDataLoader.EpochOrder(11, 7, 3, true), SupervisedDataLoader.EpochOrder(11, 7, 3, true));
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(1, 4)]
    [InlineData(2, 2)]
    public void Every_data_parallel_size_sees_the_single_process_global_batches_epoch_tails_included(int microBatch, int ranks)
    {
        // 15 samples, global batch 4: each epoch drops 3 samples; the single-process and the DP runs must drop the same ones.
        var samples = Enumerable.Range(0, 15).Select(i => new EncodedSample(new SampleLocation("x", i), [1, 2], [1, 2], [], [], [], false)).ToList();
        using var single = new SupervisedDataLoader(samples, Collator(), microBatch, seed: 7, shuffle: true, globalBatch: 4);
        var loaders = Enumerable.Range(0, ranks).Select(r => new SupervisedDataLoader(samples, Collator(), microBatch, seed: 7, shuffle: true,
            dataParallelRank: r, dataParallelSize: ranks, globalBatch: 4)).ToList();
        int perRank = 4 / (microBatch * ranks), perStep = 4 / microBatch;
        Assert.Equal(3 * perStep, single.BatchesPerEpoch);
        Assert.Equal(3 * perRank, loaders[0].BatchesPerEpoch);
        for (int step = 0; step < 9; step++)   // three epochs
        {
            // The single process's micro-batches of this step, in order; rank r holds micro-batches r, r + DP, …
            var expected = Enumerable.Range(0, perStep).Select(m => single.SampleIndices(Position(single, step * perStep + m))).ToList();
            for (int r = 0; r < ranks; r++)
            {
                for (int j = 0; j < perRank; j++)
                    Assert.Equal(expected[j * ranks + r], loaders[r].SampleIndices(Position(loaders[r], step * perRank + j)));
            }
        }
        foreach (var loader in loaders) loader.Dispose();

        static LoaderPosition Position(SupervisedDataLoader loader, int batch) => new(batch / loader.BatchesPerEpoch, batch % loader.BatchesPerEpoch);
    }

    [Fact]
    public void A_resumed_loader_yields_exactly_the_remaining_batches_with_or_without_workers()
    {
        var dataset = Build(fixture.Config());
        List<string> Run(SupervisedDataLoader loader, int count)
        {
            var result = new List<string>();
            for (int i = 0; i < count; i++)
            {
                using var batch = loader.Next();
                result.Add(string.Join(",", batch.Locations.Select(l => l.Index)) + "|" + batch.Inputs.InputIds.sum().item<long>());
            }
            return result;
        }
        using var straight = new SupervisedDataLoader(dataset.Samples, Collator(), 2, seed: 3, shuffle: true);
        var all = Run(straight, 8);
        using var firstHalf = new SupervisedDataLoader(dataset.Samples, Collator(), 2, seed: 3, shuffle: true, workers: 2);
        var head = Run(firstHalf, 4);
        LoaderPosition saved = firstHalf.Position;
        Assert.Equal(new LoaderPosition(1, 1), saved);
        using var resumed = new SupervisedDataLoader(dataset.Samples, Collator(), 2, seed: 3, shuffle: true, workers: 2, start: saved);
        Assert.Equal(all, head.Concat(Run(resumed, 4)));
    }
}
