using OmniTune.Cli.Demo;
using OmniTune.Data.Datasets;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Testing;
using OmniTune.Training.Arguments;
using OmniTune.Training.Loop;
using static TorchSharp.torch;

namespace OmniTune.Tests.Data;

/// <summary>Sequence packing: LLaMA-Factory's bin packing, and neat-packed rows that give each sample what it gets alone.</summary>
public sealed class SequencePackingTests
{
    static EncodedSample Sample(int index, int length, int images = 0) => new(new SampleLocation("d.json", index), Enumerable.Repeat(7, length).ToArray(),
        Enumerable.Range(0, length).Select(i => 100 + i).ToArray(), Enumerable.Range(0, images).Select(i => new MediaItem($"{index}-{i}.png")).ToArray(), [], [], false);

    [Fact]
    public void The_greedy_knapsack_fills_each_bin_with_the_largest_length_that_fits_as_llamafactory_does()
    {
        // sorted [2, 3, 5, 7, 8]: bin 1 takes 8 then 2, bin 2 takes 7 then 3, bin 3 takes 5.
        Assert.Equal([[2, 3], [4, 1], [0]], SequencePacking.GreedyKnapsack([5, 3, 8, 2, 7], 10));
        // equal lengths: last in, first out.
        Assert.Equal([[2, 1], [0]], SequencePacking.GreedyKnapsack([4, 4, 4], 8));
        var error = Assert.Throws<ArgumentException>(() => SequencePacking.GreedyKnapsack([3, 11], 10));
        Assert.Contains("sample 1 has 11 tokens, which does not fit a packed row of 10", error.Message);
    }

    [Fact]
    public void Packing_concatenates_per_preprocessing_batch_and_hides_each_later_samples_first_label()
    {
        var samples = new[] { Sample(0, 5, images: 1), Sample(1, 3), Sample(2, 8, images: 2), Sample(3, 2) };
        var rows = SequencePacking.Pack(samples, capacity: 10, chunk: 2);   // bins within [0, 1] and within [2, 3]
        Assert.Equal(2, rows.Count);
        Assert.Equal([5, 3], rows[0].PackedLengths!);
        Assert.Equal([8, 2], rows[1].PackedLengths!);
        Assert.Equal(new[] { 100, 101, 102, 103, 104, -100, 101, 102 }, rows[0].Labels);
        Assert.Equal(["2-0.png", "2-1.png"], rows[1].Images.Select(m => m.Path));
        Assert.Equal([1, 1, 1, 1, 1, 2, 2, 2], rows[0].Parts.SelectMany((n, k) => Enumerable.Repeat(k + 1, n)));
    }

    /// <summary>
    /// The demo's image, audio, video-with-sound and text samples in one neat-packed row through the tiny thinker: each
    /// sample's summed token loss and the gradients of every parameter agree with the samples run one by one (fp32: the
    /// packed row's attention is one masked kernel call where each sample alone is a causal one), and the per-sample loss
    /// mode gives the same value as the samples padded into one micro-batch.
    /// </summary>
    [Fact]
    public void A_neat_packed_row_gives_each_sample_its_own_losses_and_gradients()
    {
        Assert.True(MediaFixtures.HasFFmpeg, "ffmpeg is required (apt-get install ffmpeg)");
        using var dir = new TempFolder();
        string model = Path.Combine(dir.Path, "model"), data = Path.Combine(dir.Path, "data"), json = Path.Combine(dir.Path, "data.json");
        TinyQwen25Omni.Write(model, seed: 3);
        DemoDataset.Write(data);
        DemoDataset.WriteDataJson(json, model, data, Path.Combine(dir.Path, "cache"));
        var (config, _) = DataJsonLoader.Load(json);
        var processor = DataJsonLoader.Processor(config, model);
        var dataset = SupervisedDatasetBuilder.Build(config, processor, new DatasetBuildOptions(1024), TextWriter.Null);
        var samples = dataset.Samples.GroupBy(s => s.Modalities).Select(g => g.First()).ToList();
        Assert.True(samples.Count >= 4, string.Join(", ", samples.Select(s => s.Modalities)));
        var thinkerConfig = Qwen25OmniConfigLoader.Load(model).Config.Thinker;
        var rope = RopeIndexSettings.From(thinkerConfig);
        var alone = new BatchCollator(processor.Settings, rope, thinkerConfig.PadTokenId);
        var neat = new BatchCollator(processor.Settings, rope, thinkerConfig.PadTokenId, packing: PackingMode.Neat);
        var (thinker, _, _) = ThinkerCheckpointLoader.Load(model);
        using (thinker)
        {
            thinker.eval();
            var parameters = thinker.parameters().Where(p => p.requires_grad).ToList();
            var expected = new List<double>();
            foreach (var sample in samples)
            {
                using var scope = NewDisposeScope();
                using var batch = alone.Collate([sample]);
                var (losses, mask) = StepLoss.TokenLosses(thinker.Forward(batch.Inputs), batch.Labels);
                Tensor sum = (losses * mask).sum();
                expected.Add(sum.item<float>());
                sum.backward();
            }
            var expectedGradients = parameters.Select(p => p.grad?.clone().DetachFromDisposeScope()).ToList();
            foreach (var p in parameters) p.grad = null;

            using (var scope = NewDisposeScope())
            using (var batch = neat.Collate([SequencePacking.Concatenate(samples)]))
            {
                var (losses, mask) = StepLoss.TokenLosses(thinker.Forward(batch.Inputs), batch.Labels);
                Tensor owner = batch.Segments!.narrow(1, 1, losses.shape[1]);   // the sample of each target token
                var sums = Enumerable.Range(1, samples.Count).Select(k => (losses * mask * owner.eq(k)).sum()).ToList();
                for (int k = 0; k < samples.Count; k++)
                    Assert.Equal(expected[k], sums[k].item<float>(), Math.Abs(expected[k]) * 1e-5);
                stack(sums).sum().backward();
            }
            Assert.Contains(expectedGradients, g => g is not null);
            for (int i = 0; i < parameters.Count; i++)
            {
                if (expectedGradients[i] is null)
                {
                    Assert.Null(parameters[i].grad);   // a part none of the samples reach
                    continue;
                }
                double scale = expectedGradients[i]!.abs().max().item<float>();
                double worst = (parameters[i].grad! - expectedGradients[i]!).abs().max().item<float>();
                Assert.True(worst <= 1e-4 * scale + 1e-7, $"parameter {i} {string.Join("x", parameters[i].shape)}: gradient differs by {worst} (largest {scale})");
            }

            // Plain packing: one sequence (mask 1 on every real token), the samples still numbered for the per-sample loss.
            using (var plain = new BatchCollator(processor.Settings, rope, thinkerConfig.PadTokenId, packing: PackingMode.Plain).Collate([SequencePacking.Concatenate(samples)]))
            {
                long real = samples.Sum(s => s.InputIds.Length);
                Assert.Equal(real, plain.Inputs.AttentionMask!.sum().item<long>());
                Assert.Equal(samples.Count, plain.Segments!.max().item<long>());
            }

            using var noGrad = no_grad();
            using var padded = alone.Collate(samples);
            using var packed = neat.Collate([SequencePacking.Concatenate(samples)]);
            double perSample = StepLoss.ForMicroBatch(thinker.Forward(padded.Inputs), padded.Labels, LossMode.PerSample, 1, 0).Logged;
            double packedPerSample = StepLoss.ForMicroBatch(thinker.Forward(packed.Inputs), packed.Labels, LossMode.PerSample, 1, 0, segments: packed.Segments).Logged;
            Assert.Equal(perSample, packedPerSample, Math.Abs(perSample) * 1e-5);
        }
    }
}
