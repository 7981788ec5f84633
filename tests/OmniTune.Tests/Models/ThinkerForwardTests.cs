using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Tests.Testing;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Tests.Models;

public sealed class ThinkerForwardTests
{
    [Fact]
    public void The_tiny_thinker_overfits_a_sample_with_an_image_an_audio_clip_and_a_video_with_audio()
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config, seed: 1);
        var sample = MultimodalSample.Build(config, seed: 2);
        using var optimizer = optim.AdamW(model.parameters(), lr: 3e-3, weight_decay: 0);
        float first = 0, last = 0;
        for (int step = 0; step < 40; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            Tensor loss = CausalLmLoss.Mean(model.Forward(sample.Inputs), sample.Labels);
            loss.backward();
            if (step == 0)
            {
                // Every tower takes part: the encoders receive gradients through the merged embeddings.
                foreach (string key in new[] { "visual.patch_embed.proj.weight", "visual.merger.mlp.2.weight", "audio_tower.conv1.weight", "audio_tower.proj.weight" })
                {
                    var p = model.named_parameters().First(x => x.name == key).parameter;
                    Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"{key} received no gradient");
                }
            }
            optimizer.step();
            if (step == 0) first = loss.item<float>();
            last = loss.item<float>();
        }
        Assert.True(last < first / 5, $"loss {first} -> {last}");
    }

    [Fact]
    public void Placeholder_count_mismatch_names_the_modality_and_both_counts()
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config);
        var sample = MultimodalSample.Build(config, seed: 3);
        Tensor ids = sample.Inputs.InputIds.clone();
        long first = ids[0].eq(config.ImageTokenId).nonzero()[0, 0].item<long>();
        ids[0, first] = tensor((long)config.PadTokenId);
        var error = Assert.Throws<ArgumentException>(() => model.Embed(sample.Inputs with { InputIds = ids }));
        Assert.Contains("image: the prompt has 3 image placeholder tokens but the image encoder produced 4 features", error.Message);
    }

    [Fact]
    public void An_image_row_and_a_video_row_in_one_padded_batch_match_each_row_alone()
    {
        var c = TinyThinker.Config();
        using var model = TinyThinker.Create(c, seed: 4);
        using var noGrad = no_grad();
        GridThw image = new(1, 4, 6), video = new(2, 4, 4);
        long[] imageRow = [c.BosTokenId, 70, c.VisionStartTokenId, .. Enumerable.Repeat((long)c.ImageTokenId, 6), c.VisionEndTokenId, 71];
        long[] videoRow = [c.BosTokenId, c.VisionStartTokenId, .. Enumerable.Repeat((long)c.VideoTokenId, 8), c.VisionEndTokenId, 72, 73];
        var g = new Generator(5);
        Tensor pixels = randn([image.Patches, c.Vision.PatchDim], generator: g);
        Tensor frames = randn([video.Patches, c.Vision.PatchDim], generator: g);
        int s = Math.Max(imageRow.Length, videoRow.Length);
        long[] Pad(long[] row) => [.. Enumerable.Repeat((long)c.PadTokenId, s - row.Length), .. row];
        long[] Mask(long[] row) => [.. Enumerable.Repeat(0L, s - row.Length), .. Enumerable.Repeat(1L, row.Length)];
        var batch = new ThinkerInputs
        {
            InputIds = tensor(Pad(imageRow).Concat(Pad(videoRow)).ToArray(), [2, s]),
            AttentionMask = tensor(Mask(imageRow).Concat(Mask(videoRow)).ToArray(), [2, s]),
            PixelValues = pixels,
            ImageGrids = [image],
            PixelValuesVideos = frames,
            VideoGrids = [video],
            VideoSecondsPerGrid = [0.5],
        };
        Tensor both = model.Forward(batch);
        Tensor imageAlone = model.Forward(new ThinkerInputs { InputIds = tensor(imageRow).unsqueeze(0), PixelValues = pixels, ImageGrids = [image] });
        Tensor videoAlone = model.Forward(new ThinkerInputs
        {
            InputIds = tensor(videoRow).unsqueeze(0),
            PixelValuesVideos = frames,
            VideoGrids = [video],
            VideoSecondsPerGrid = [0.5],
        });
        TensorAssert.Close(imageAlone[0], both[0].narrow(0, s - imageRow.Length, imageRow.Length), 2e-5);
        TensorAssert.Close(videoAlone[0], both[1].narrow(0, s - videoRow.Length, videoRow.Length), 2e-5);
        var (_, deltas) = model.PositionIds(batch);
        Assert.Equal(2, deltas.Length);
    }

    [Fact]
    public void A_one_frame_video_gives_one_temporal_group_of_tokens()
    {
        var c = TinyThinker.Config();
        using var model = TinyThinker.Create(c, seed: 6);
        using var noGrad = no_grad();
        GridThw video = new(1, 2, 4);
        long[] row = [c.BosTokenId, c.VisionStartTokenId, .. Enumerable.Repeat((long)c.VideoTokenId, 2), c.VisionEndTokenId, 74];
        var inputs = new ThinkerInputs
        {
            InputIds = tensor(row).unsqueeze(0),
            PixelValuesVideos = randn([video.Patches, c.Vision.PatchDim]),
            VideoGrids = [video],
            VideoSecondsPerGrid = [1.0],
        };
        var (positions, deltas) = model.PositionIds(inputs);
        Assert.Equal([0L, 1, 2, 2, 4, 5], positions[0, 0].data<long>().ToArray());
        Assert.Equal([0L, 1, 2, 3, 4, 5], positions[2, 0].data<long>().ToArray());
        Assert.Equal(0, deltas[0]);
        Assert.Equal([1L, 6, c.Text.VocabSize], model.Forward(inputs).shape);
    }

    [Fact]
    public void The_interleaved_layout_matches_the_reference_example()
    {
        // Reference §8.3: a 4 s clip at 2 fps (grid (4, 24, 32)) with 4 s of audio (100 tokens).
        var runs = AudioInVideoInterleave.Layout(new GridThw(4, 24, 32), 1.0, 100, 2, 25, 2);
        Assert.Equal([(true, 384), (false, 50), (true, 384), (false, 50)], runs);
    }
}
