using System.Diagnostics;
using OmniTune.Data.Datasets;
using OmniTune.Distributed;
using OmniTune.Distributed.Pipeline;
using OmniTune.Models.Qwen25Omni.Thinker;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Training.Pipeline;

/// <summary>
/// Runs the forward and backward passes of one optimizer step on this pipeline stage by following its schedule (a list
/// of actions; one stage with 1F1B is the plain single-process loop). A forward receives the previous slot's bundle
/// (or starts from the micro-batch), runs the slot and sends its bundle on; a backward back-propagates the loss (last
/// slot) or the gradients the next slot sends back, and sends the gradients of what it received. Sends never block,
/// receives do, so neighbours that both send cannot deadlock; the step ends when every send has completed.
/// </summary>
public sealed class PipelineStepRunner
{
    readonly Qwen25OmniThinkerForConditionalGeneration model;
    readonly StagePlan plan;
    readonly IProcessGroup pipeline;
    readonly Device device;
    readonly IProcessGroup? sequence, context;
    readonly EncoderShares? encoderShare;
    readonly Dictionary<int, IReadOnlyList<PipelineAction>> schedules = [];

    /// <summary>
    /// Runs <paramref name="model"/> (this stage's parts) as stage <paramref name="pipeline"/>.Rank of <paramref name="plan"/>;
    /// <paramref name="sequence"/>: the tensor-parallel group the decoder's sequence is cut across (sequence parallel);
    /// <paramref name="context"/>: the context-parallel group that holds the sequence's load-balanced chunks;
    /// <paramref name="encoderShare"/>: the group whose ranks share the whole encoders' media items (heterogeneous parallel).
    /// </summary>
    public PipelineStepRunner(Qwen25OmniThinkerForConditionalGeneration model, StagePlan plan, IProcessGroup pipeline, Device device, IProcessGroup? sequence = null,
        IProcessGroup? context = null, EncoderShares? encoderShare = null)
    {
        if (pipeline.Size != plan.Stages) throw new ArgumentException($"group '{pipeline.Name}' has {pipeline.Size} ranks, the plan {plan.Stages} stages");
        (this.model, this.plan, this.pipeline, this.device, this.sequence, this.context, this.encoderShare) = (model, plan, pipeline, device, sequence, context, encoderShare);
    }

    /// <summary>Milliseconds spent computing (forward and backward) since the start.</summary>
    public double BusyMilliseconds { get; private set; }

    /// <summary>Milliseconds spent waiting for a neighbour's activations or gradients since the start.</summary>
    public double WaitMilliseconds { get; private set; }

    /// <summary>This stage's schedule for <paramref name="microBatches"/> micro-batches per step.</summary>
    public IReadOnlyList<PipelineAction> Schedule(int microBatches)
    {
        if (!schedules.TryGetValue(microBatches, out var actions))
            schedules[microBatches] = actions = PipelineSchedule.Interleaved(plan.Stages, plan.Chunks, pipeline.Rank, microBatches);
        return actions;
    }

    sealed record Saved(List<(string Name, Tensor Tensor, bool NeedsGradient)> Received, Dictionary<string, Tensor> Outputs, Tensor? Loss);

    /// <summary>Called before each micro-batch's forward (of each chunk) with its index (the overlapped reduction counts each micro-batch's passes).</summary>
    public Action<int>? BeforeForward { get; set; }

    /// <summary>Called before each micro-batch's backward with its index and the step's micro-batch count (overlapped reduction arms on the last).</summary>
    public Action<int, int>? BeforeBackward { get; set; }

    /// <summary>
    /// One step over <paramref name="batches"/> (this data-parallel rank's micro-batches; every stage reads the same);
    /// <paramref name="loss"/> turns the final (normed) hidden states and the batch (its labels, and for packed rows its
    /// samples' numbers) into the micro-batch's backward loss
    /// (it applies the LM head) and its logged value. Returns the sum of the logged values on the stage that computes the
    /// loss, 0 elsewhere.
    /// </summary>
    public double Run(IReadOnlyList<TrainingBatch> batches, Func<Tensor, TrainingBatch, (Tensor Backward, double Logged)> loss)
    {
        var saved = new Dictionary<(int, int), Saved>();
        var sends = new List<PendingOperation>();
        double logged = 0;
        int stages = plan.Stages;
        try
        {
            foreach (PipelineAction action in Schedule(batches.Count))
            {
                StageSlot slot = plan.Slot(pipeline.Rank, action.Chunk);
                if (action.Step == PipelineStep.Forward)
                {
                    BeforeForward?.Invoke(action.MicroBatch);
                    var received = slot.Index == 0 ? [] : Timed(() => ActivationBundle.Receive(pipeline, (slot.Index - 1) % stages, ActivationBundle.Activations, device), wait: true);
                    var clock = Stopwatch.StartNew();
                    using (var scope = NewDisposeScope())
                    {
                        TrainingBatch batch = batches[action.MicroBatch];
                        var (outputs, final) = StageForward.Run(model, slot, OnDevice(batch.Inputs), received.ToDictionary(r => r.Name, r => r.Tensor), sequence, context, encoderShare);
                        if (final is not null)
                        {
                            var (backward, value) = loss(final, batch);
                            logged += value;
                            saved[(action.MicroBatch, action.Chunk)] = new(received, [], backward.DetachFromDisposeScope());
                        }
                        else
                        {
                            foreach (Tensor t in outputs.Values) t.DetachFromDisposeScope();
                            sends.AddRange(ActivationBundle.Send(pipeline, outputs.Select(o => (o.Key, o.Value, o.Value.requires_grad)).ToList(),
                                (slot.Index + 1) % stages, ActivationBundle.Activations));
                            saved[(action.MicroBatch, action.Chunk)] = new(received, outputs, null);
                        }
                    }
                    BusyMilliseconds += clock.Elapsed.TotalMilliseconds;
                }
                else
                {
                    Saved s = saved[(action.MicroBatch, action.Chunk)];
                    saved.Remove((action.MicroBatch, action.Chunk));
                    BeforeBackward?.Invoke(action.MicroBatch, batches.Count);
                    Backward(slot, s, sends);
                }
            }
        }
        finally
        {
            foreach (PendingOperation send in sends) send.Dispose();
            foreach (Saved s in saved.Values) Release(s);
        }
        return logged;
    }

    /// <summary>
    /// Forward passes only (validation), without gradients: every slot of this stage runs each micro-batch in turn (chunk
    /// after chunk), receiving and sending activations as in training. Returns the sum of <paramref name="loss"/> over the
    /// micro-batches on the stage that computes the loss, 0 elsewhere.
    /// </summary>
    public double Evaluate(IReadOnlyList<TrainingBatch> batches, Func<Tensor, TrainingBatch, double> loss)
    {
        double logged = 0;
        int stages = plan.Stages;
        var sends = new List<PendingOperation>();
        var sent = new List<Tensor>();
        try
        {
            using var noGrad = no_grad();
            foreach (TrainingBatch batch in batches)
            {
                for (int chunk = 0; chunk < plan.Chunks; chunk++)
                {
                    StageSlot slot = plan.Slot(pipeline.Rank, chunk);
                    var received = slot.Index == 0 ? [] : ActivationBundle.Receive(pipeline, (slot.Index - 1) % stages, ActivationBundle.Activations, device);
                    using (var scope = NewDisposeScope())
                    {
                        var (outputs, final) = StageForward.Run(model, slot, OnDevice(batch.Inputs), received.ToDictionary(r => r.Name, r => r.Tensor), sequence, context, encoderShare);
                        if (final is not null)
                        {
                            logged += loss(final, batch);
                        }
                        else
                        {
                            foreach (Tensor t in outputs.Values) sent.Add(t.DetachFromDisposeScope());
                            sends.AddRange(ActivationBundle.Send(pipeline, outputs.Select(o => (o.Key, o.Value, false)).ToList(), (slot.Index + 1) % stages, ActivationBundle.Activations));
                        }
                    }
                    foreach (var (_, t, _) in received) t.Dispose();
                }
            }
        }
        finally
        {
            foreach (PendingOperation send in sends) send.Dispose();
            foreach (Tensor t in sent) t.Dispose();
        }
        return logged;
    }

    void Backward(StageSlot slot, Saved s, List<PendingOperation> sends)
    {
        int stages = plan.Stages;
        try
        {
            var needing = s.Outputs.Where(o => o.Value.requires_grad).ToList();
            var gradients = s.Loss is null && needing.Count > 0
                ? Timed(() => ActivationBundle.Receive(pipeline, (slot.Index + 1) % stages, ActivationBundle.Gradients, device), wait: true)
                : [];
            var clock = Stopwatch.StartNew();
            using (var scope = NewDisposeScope())
            {
                if (s.Loss is not null)
                {
                    s.Loss.backward();
                }
                else if (needing.Count > 0)
                {
                    var byName = gradients.ToDictionary(g => g.Name, g => g.Tensor);
                    var outputs = needing.Where(o => byName.ContainsKey(o.Key)).ToList();
                    if (outputs.Count > 0) autograd.backward(outputs.Select(o => o.Value).ToList(), outputs.Select(o => byName[o.Key]).ToList());
                }
                var inputs = s.Received.Where(r => r.NeedsGradient).ToList();
                if (slot.Index > 0 && inputs.Count > 0)
                {
                    var grads = inputs.Select(r => (r.Name, r.Tensor.grad ?? zeros_like(r.Tensor), false)).ToList();
                    sends.AddRange(ActivationBundle.Send(pipeline, grads, (slot.Index - 1) % stages, ActivationBundle.Gradients));
                }
            }
            foreach (var (_, g, _) in gradients) g.Dispose();
            BusyMilliseconds += clock.Elapsed.TotalMilliseconds;
        }
        finally
        {
            Release(s);
        }
    }

    static void Release(Saved s)
    {
        foreach (var (_, t, _) in s.Received) t.Dispose();
        foreach (Tensor t in s.Outputs.Values) t.Dispose();
        s.Loss?.Dispose();
    }

    T Timed<T>(Func<T> call, bool wait)
    {
        var clock = Stopwatch.StartNew();
        T result = call();
        if (wait) WaitMilliseconds += clock.Elapsed.TotalMilliseconds;
        else BusyMilliseconds += clock.Elapsed.TotalMilliseconds;
        return result;
    }

    ThinkerInputs OnDevice(ThinkerInputs inputs) => device.type == DeviceType.CPU ? inputs : inputs with
    {
        InputIds = inputs.InputIds.to(device),
        AttentionMask = inputs.AttentionMask?.to(device),
        PositionIds = inputs.PositionIds?.to(device),
        PixelValues = inputs.PixelValues?.to(device),
        PixelValuesVideos = inputs.PixelValuesVideos?.to(device),
        InputFeatures = inputs.InputFeatures?.to(device),
        FeatureAttentionMask = inputs.FeatureAttentionMask?.to(device),
    };
}
