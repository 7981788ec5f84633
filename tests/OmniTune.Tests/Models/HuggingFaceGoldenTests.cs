using OmniTune.Core.Safetensors;
using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Models;

/// <summary>A fact skipped, with the reason shown, when the golden dump file is absent.</summary>
public sealed class GoldenDumpFactAttribute : FactAttribute
{
    public const string RelativePath = "tests/golden/thinker-tiny.safetensors";

    public GoldenDumpFactAttribute()
    {
        if (!File.Exists(Path.Combine(RepositoryPaths.Root, RelativePath)))
            Skip = $"no Hugging Face dump at {RelativePath}: write one with tools/golden/make_thinker_golden.py on a machine with transformers";
    }
}

/// <summary>
/// Compares the whole thinker with Hugging Face transformers on a tiny random model (fp32): merged embeddings, encoder
/// outputs, TMRoPE positions, logits and loss. Tolerance 1e-4 absolute on activations (different kernels, same math).
/// </summary>
public sealed class HuggingFaceGoldenTests
{
    const double Tolerance = 1e-4;

    [GoldenDumpFact]
    public void The_thinker_matches_hugging_face_on_a_multimodal_sample()
    {
        using var dump = SafetensorsFile.Open(Path.Combine(RepositoryPaths.Root, GoldenDumpFactAttribute.RelativePath));
        using var dir = new TempFolder();
        int seed = int.Parse(dump.Metadata["model_seed"], System.Globalization.CultureInfo.InvariantCulture);
        TinyQwen25Omni.Write(dir.Path, seed);
        string sha = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(dir.Path, "model.safetensors"))));
        Assert.True(sha == dump.Metadata["model_sha256"], "init-tiny no longer writes the weights the dump was made from: regenerate the dump");

        var (model, _, _) = ThinkerCheckpointLoader.Load(dir.Path);
        using (model)
        using (no_grad())
        {
            static GridThw[] Grids(Tensor t) => Enumerable.Range(0, (int)t.shape[0]).Select(i => new GridThw((int)t[i, 0].item<long>(), (int)t[i, 1].item<long>(), (int)t[i, 2].item<long>())).ToArray();
            var inputs = new ThinkerInputs
            {
                InputIds = dump.Read("input_ids"),
                AttentionMask = dump.Read("attention_mask"),
                PixelValues = dump.Read("pixel_values"),
                ImageGrids = Grids(dump.Read("image_grid_thw")),
                PixelValuesVideos = dump.Read("pixel_values_videos"),
                VideoGrids = Grids(dump.Read("video_grid_thw")),
                VideoSecondsPerGrid = dump.Read("video_second_per_grid").data<float>().ToArray().Select(v => (double)v).ToArray(),
                InputFeatures = dump.Read("input_features"),
                FeatureAttentionMask = dump.Read("feature_attention_mask"),
                UseAudioInVideo = dump.Read("use_audio_in_video").item<long>() == 1,
            };
            var (positions, deltas) = model.PositionIds(inputs);
            TensorAssert.BitEqual(dump.Read("position_ids"), positions);
            Assert.Equal(dump.Read("rope_deltas").data<long>().ToArray(), deltas);
            TensorAssert.Close(dump.Read("image_embeds"), model.Visual.Forward(inputs.PixelValues!, inputs.ImageGrids), Tolerance);
            TensorAssert.Close(dump.Read("video_embeds"), model.Visual.Forward(inputs.PixelValuesVideos!, inputs.VideoGrids), Tolerance);
            TensorAssert.Close(dump.Read("inputs_embeds"), model.Embed(inputs), Tolerance);
            Tensor logits = model.Forward(inputs);
            TensorAssert.Close(dump.Read("logits"), logits, Tolerance);
            Assert.Equal(dump.Read("loss").item<float>(), CausalLmLoss.Mean(logits, dump.Read("labels")).item<float>(), 4);
        }
    }
}
