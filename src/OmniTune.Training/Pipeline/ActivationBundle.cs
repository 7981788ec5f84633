using System.Text;
using OmniTune.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Training.Pipeline;

/// <summary>
/// What crosses from one pipeline slot to the next: named tensors (decoder hidden states, unfinished encoder rows,
/// finished encoder tokens), whatever the micro-batch's length and media. On the wire a small header comes first (the
/// count and which tensors need gradients back), then the names, then each tensor with its own shape and dtype. The
/// tensors travel through host memory over the MPI group (on GPUs an NCCL point-to-point path would avoid the copies;
/// not built yet).
/// </summary>
public static class ActivationBundle
{
    /// <summary>Forward activations travel on this channel, gradients on <see cref="Gradients"/>.</summary>
    public const int Activations = 1, Gradients = 2;

    /// <summary>
    /// Starts sending <paramref name="tensors"/> (detached, contiguous) to <paramref name="destination"/>; the flags tell the
    /// receiver which of them will need a gradient sent back. Returns the sends in flight.
    /// </summary>
    public static List<PendingOperation> Send(IProcessGroup group, IReadOnlyList<(string Name, Tensor Tensor, bool NeedsGradient)> tensors, int destination, int channel)
    {
        var pending = new List<PendingOperation>(tensors.Count + 2);
        using (var header = tensor(new long[] { tensors.Count }.Concat(tensors.Select(t => t.NeedsGradient ? 1L : 0L)).ToArray()))
            pending.Add(group.SendAsync(header, destination, channel));
        using (var names = tensor(Encoding.UTF8.GetBytes(string.Join('\n', tensors.Select(t => t.Name))), ScalarType.Byte))
            pending.Add(group.SendAsync(names, destination, channel));
        foreach (var (_, t, _) in tensors)
        {
            using Tensor payload = t.detach().cpu().contiguous();
            pending.Add(group.SendAsync(payload, destination, channel));
        }
        return pending;
    }

    /// <summary>Receives a bundle onto <paramref name="device"/>; tensors flagged by the sender come back with requires_grad set.</summary>
    public static List<(string Name, Tensor Tensor, bool NeedsGradient)> Receive(IProcessGroup group, int source, int channel, Device device)
    {
        long[] header;
        using (Tensor h = group.Receive(source, channel)) header = h.data<long>().ToArray();
        string[] names;
        using (Tensor n = group.Receive(source, channel)) names = header[0] == 0 ? [] : Encoding.UTF8.GetString(n.data<byte>().ToArray()).Split('\n');
        if (names.Length != header[0]) throw new InvalidOperationException($"group '{group.Name}': rank {source} sent {header[0]} tensors but {names.Length} names");
        var result = new List<(string, Tensor, bool)>(names.Length);
        for (int i = 0; i < names.Length; i++)
        {
            bool needsGradient = header[1 + i] == 1;
            Tensor t = group.Receive(source, channel);
            if (device.type != DeviceType.CPU)
            {
                using Tensor host = t;
                t = host.to(device);
            }
            if (needsGradient) t.requires_grad_(true);
            result.Add((names[i], t, needsGradient));
        }
        return result;
    }
}
