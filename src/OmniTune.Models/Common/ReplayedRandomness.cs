using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Common;

/// <summary>
/// Random generators whose state activation recompute replays besides torch's default CPU generator. TorchSharp does
/// not expose the CUDA default generator's state, so randomness on an accelerator (dropout in LoRA adapters) draws
/// from a generator made here per device, which <see cref="ActivationCheckpoint"/> saves before a segment's forward
/// and restores for its recomputation: the recomputed pass draws the same masks on every device.
/// </summary>
public static class ReplayedRandomness
{
    static readonly object Gate = new();
    static readonly Dictionary<string, Generator> ByDevice = [];
    static readonly List<Generator> Registered = [];

    /// <summary>
    /// The generator to draw from on <paramref name="device"/>: null on CPU (torch's default generator, replayed
    /// directly), else this process's generator for that device, seeded with <paramref name="seed"/> when first made.
    /// </summary>
    public static Generator? For(Device device, long seed = 0)
    {
        if (device.type == DeviceType.CPU) return null;
        lock (Gate)
        {
            if (!ByDevice.TryGetValue(device.ToString(), out Generator? generator))
            {
                generator = new Generator((ulong)seed, device);
                ByDevice[device.ToString()] = generator;
                Registered.Add(generator);
            }
            return generator;
        }
    }

    /// <summary>Adds a generator whose state recompute replays (tests use CPU generators to check the mechanism).</summary>
    public static void Register(Generator generator)
    {
        lock (Gate) Registered.Add(generator);
    }

    /// <summary>Removes a generator added with <see cref="Register"/>.</summary>
    public static void Unregister(Generator generator)
    {
        lock (Gate) Registered.Remove(generator);
    }

    /// <summary>The state of every registered generator, to give back to <see cref="Restore"/>.</summary>
    public static List<(Generator Generator, Tensor State)> Capture()
    {
        lock (Gate) return Registered.Select(g => (g, g.get_state().DetachFromDisposeScope())).ToList();
    }

    /// <summary>Puts captured states back (the tensors are disposed).</summary>
    public static void Restore(List<(Generator Generator, Tensor State)> states)
    {
        foreach (var (generator, state) in states)
        {
            generator.set_state(state);
            state.Dispose();
        }
    }
}
