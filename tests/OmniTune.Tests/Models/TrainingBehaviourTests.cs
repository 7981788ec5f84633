using OmniTune.Tests.Testing;
using OmniTune.Core.Native;
using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Tests.Models;

public sealed class TrainingBehaviourTests : IClassFixture<TinyModelFixture>
{
    readonly TinyModelFixture tiny;

    public TrainingBehaviourTests(TinyModelFixture tiny) => this.tiny = tiny;

    [Fact]
    public void The_tiny_model_overfits_one_fixed_sample_and_then_generates_its_answer()
    {
        using var dir = new TempFolder();
        var result = TextOverfitDemo.Run(dir.Path, steps: 60, seed: 0, TextWriter.Null);
        Assert.True(result.FinalLoss < result.InitialLoss / 10, $"loss {result.InitialLoss} -> {result.FinalLoss}");
        Assert.Equal(result.Expected, result.Generated);
    }

    [Fact]
    public void Live_tensors_and_rss_stay_flat_over_training_steps()
    {
        MallocTuning.Apply();
        var (model, config, _) = ThinkerCheckpointLoader.Load(tiny.Path);
        using (model)
        {
            using var optimizer = optim.AdamW(model.parameters(), lr: 1e-3);
            Tensor ids = randint(0, config.Thinker.Text.VocabSize, [2, 64], generator: new Generator(9));
            void Step()
            {
                using var scope = NewDisposeScope();
                optimizer.zero_grad();
                Tensor loss = CausalLmLoss.Mean(model.Forward(ids), ids);
                loss.backward();
                optimizer.step();
                _ = loss.item<float>();
            }
            for (int i = 0; i < 10; i++) Step();   // warm-up: optimizer state, allocator pools
            long liveBefore = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            long rssBefore = ResidentMemory.AfterCollection();
            for (int i = 0; i < 150; i++) Step();
            long liveAfter = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            long rssAfter = ResidentMemory.AfterCollection();
            Assert.Equal(liveBefore, liveAfter);
            Assert.True(rssAfter - rssBefore < 40L << 20, $"RSS grew by {(rssAfter - rssBefore) >> 20} MiB over 150 steps");
        }
    }

}
