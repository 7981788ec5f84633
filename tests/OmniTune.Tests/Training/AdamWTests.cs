using OmniTune.Tests.Testing;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Tests.Training;

/// <summary>OmniTune's AdamW (a dispose scope per parameter) against TorchSharp's: the same steps bit for bit, the same state file.</summary>
public sealed class AdamWTests
{
    static List<Parameter> Parameters(int seed)
    {
        var generator = new Generator((ulong)seed);
        // The last is longer than one slice of the update (4M elements): its update runs in two slices and a tail.
        return [new Parameter(randn([64, 32], generator: generator)), new Parameter(randn([32], generator: generator)), new Parameter(randn([8, 8, 4], generator: generator)),
            new Parameter(randn([3, (1 << 22) * 2 / 3 + 5], generator: generator))];
    }

    static void SetGradients(IReadOnlyList<Parameter> parameters, int step)
    {
        var generator = new Generator((ulong)(100 + step));
        foreach (var p in parameters) p.grad = randn(p.shape, generator: generator).DetachFromDisposeScope();
    }

    [Fact]
    public void Its_steps_equal_torchsharps_bit_for_bit_and_each_reads_the_others_state()
    {
        var (mine, theirs) = (Parameters(1), Parameters(1));
        using var lean = new OmniTune.Training.Optimization.AdamW([new TorchSharp.Modules.AdamW.ParamGroup(mine)], lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1);
        using var reference = optim.AdamW([new TorchSharp.Modules.AdamW.ParamGroup(theirs)], lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1);
        for (int step = 0; step < 3; step++)
        {
            SetGradients(mine, step);
            SetGradients(theirs, step);
            lean.step();
            reference.step();
        }
        for (int i = 0; i < mine.Count; i++)
            Assert.Equal(CheckpointBytes.Of(theirs[i].detach().clone()), CheckpointBytes.Of(mine[i].detach().clone()));

        using var dir = new TempFolder();
        string file = Path.Combine(dir.Path, "optimizer.bin");
        reference.save_state_dict(file);
        var again = Parameters(1);
        using var loaded = new OmniTune.Training.Optimization.AdamW([new TorchSharp.Modules.AdamW.ParamGroup(again)], lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1);
        loaded.load_state_dict(file);   // TorchSharp's file (its type name) loads into OmniTune's optimizer
        Assert.True(reference.state_dict().State.Zip(loaded.state_dict().State).All(s => s.First.ApproximatelyEquals(s.Second)));
    }
}
