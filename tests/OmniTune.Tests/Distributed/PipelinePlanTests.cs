using OmniTune.Distributed.Pipeline;

namespace OmniTune.Tests.Distributed;

/// <summary>Stage plans from pipeline_num_layers and schedules as data: pure functions, checked alone.</summary>
public sealed class PipelinePlanTests
{
    static StagePlan Plan(int[][] vit, int[][] audio, int[][] llm, int stages, int chunks = 1) =>
        StagePlan.Build(new StagePlan.Tower("image_encoder.vision_encoder", vit, 32), new StagePlan.Tower("audio_encoder.audio_encoder", audio, 32),
            new StagePlan.Tower("text_decoder", llm, 28), stages, chunks);

    [Fact]
    public void The_guides_default_7b_layout_puts_both_encoders_and_one_decoder_layer_on_stage_0()
    {
        var plan = Plan([[32, 0, 0, 0]], [[32, 0, 0, 0]], [[1, 10, 10, 7]], 4);
        var s0 = plan.Slot(0, 0);
        Assert.Equal((new LayerRange(0, 32), true, true), (s0.Vision, s0.PatchEmbed, s0.Merger));
        Assert.Equal((new LayerRange(0, 32), true, true), (s0.Audio, s0.AudioFront, s0.AudioBack));
        Assert.Equal((new LayerRange(0, 1), true, false), (s0.Decoder, s0.Embedding, s0.Head));
        Assert.True(s0.DecoderHiddenOut);
        Assert.False(s0.VisionHiddenOut || s0.VisionTokensOut || s0.AudioHiddenOut || s0.AudioTokensOut);
        Assert.Equal([new LayerRange(1, 11), new LayerRange(11, 21), new LayerRange(21, 28)], plan.Slots.Skip(1).Select(s => s.Decoder));
        Assert.True(plan.Slot(3, 0).Head && !plan.Slot(3, 0).DecoderHiddenOut);
        Assert.All(plan.Slots.Skip(1), s => Assert.Equal(0, s.Vision.Count + s.Audio.Count));
    }

    [Fact]
    public void The_guides_wrong_layout_is_refused_with_the_rule_explained()
    {
        var error = Assert.Throws<ArgumentException>(() => Plan([[30, 2, 0, 0]], [[32, 0, 0, 0]], [[1, 10, 10, 7]], 4));
        Assert.Contains("image_encoder.vision_encoder.pipeline_num_layers [30,2,0,0] with text_decoder.pipeline_num_layers [1,10,10,7]", error.Message);
        Assert.Contains("the text decoder starts on stage 0 but the vision encoder still has layers on stage 1", error.Message);
        Assert.Contains("Encoder layers must all come before the decoder's first layer", error.Message);
        // The fix the message suggests is valid, and so is the frozen-first-stage layout of the dummy-optimizer example.
        Plan([[30, 2, 0, 0]], [[32, 0, 0, 0]], [[0, 11, 10, 7]], 4);
        Assert.Contains("sums to 27", Assert.Throws<ArgumentException>(() => Plan([[32, 0]], [[32, 0]], [[20, 7]], 2)).Message);
        Assert.Contains("needs 2 numbers (one per stage)", Assert.Throws<ArgumentException>(() => Plan([[32, 0, 0]], [[32, 0]], [[14, 14]], 2)).Message);
        Assert.Contains("must end on the last stage", Assert.Throws<ArgumentException>(() => Plan([[32, 0]], [[32, 0]], [[28, 0]], 2)).Message);
    }

    [Fact]
    public void Encoders_spanning_stages_carry_their_hidden_rows_and_tokens_until_the_decoder_starts()
    {
        var plan = Plan([[16, 16, 0]], [[20, 12, 0]], [[0, 0, 28]], 3);
        var (s0, s1, s2) = (plan.Slot(0, 0), plan.Slot(1, 0), plan.Slot(2, 0));
        Assert.True(s0.PatchEmbed && !s0.Merger && s0.VisionHiddenOut && s0.AudioHiddenOut && !s0.DecoderHiddenOut);
        Assert.True(s1.Merger && s1.AudioBack && s1.VisionTokensOut && s1.AudioTokensOut && !s1.VisionHiddenOut);
        Assert.Equal(new LayerRange(16, 32), s1.Vision);
        Assert.Equal(new LayerRange(20, 32), s1.Audio);
        Assert.True(s2.Embedding && s2.Head && s2.Decoder == new LayerRange(0, 28));
    }

    [Fact]
    public void Virtual_chunks_place_layers_in_pipeline_order()
    {
        var plan = Plan([[32, 0], [0, 0]], [[32, 0], [0, 0]], [[4, 8], [8, 8]], 2, 2);
        Assert.Equal([0, 1, 0, 1], plan.Slots.Select(s => s.Stage));
        Assert.Equal([new LayerRange(0, 4), new LayerRange(4, 12), new LayerRange(12, 20), new LayerRange(20, 28)], plan.Slots.Select(s => s.Decoder));
        Assert.Equal([0, 1], plan.SlotsOf(1).Select(s => s.Chunk));
        Assert.True(plan.Slot(1, 1).Head);
        Assert.Contains("needs 2 rows of 2 numbers", Assert.Throws<ArgumentException>(() => Plan([[32, 0]], [[32, 0], [0, 0]], [[4, 8], [8, 8]], 2, 2)).Message);
    }

    static string Names(IEnumerable<PipelineAction> actions) => string.Join(" ", actions);

    [Fact]
    public void One_forward_one_backward_has_megatrons_warm_up_steady_state_and_cool_down()
    {
        // PP 2, 4 micro-batches.
        Assert.Equal("F0 F1 B0 F2 B1 F3 B2 B3", Names(PipelineSchedule.OneForwardOneBackward(2, 0, 4)));
        Assert.Equal("F0 B0 F1 B1 F2 B2 F3 B3", Names(PipelineSchedule.OneForwardOneBackward(2, 1, 4)));
        // PP 4, 8 micro-batches: stage r warms up with 3 − r forwards.
        Assert.Equal("F0 F1 F2 F3 B0 F4 B1 F5 B2 F6 B3 F7 B4 B5 B6 B7", Names(PipelineSchedule.OneForwardOneBackward(4, 0, 8)));
        Assert.Equal("F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 B6 B7", Names(PipelineSchedule.OneForwardOneBackward(4, 1, 8)));
        Assert.Equal("F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7", Names(PipelineSchedule.OneForwardOneBackward(4, 3, 8)));
        // Fewer micro-batches than stages: all forwards, then all backwards.
        Assert.Equal("F0 F1 B0 B1", Names(PipelineSchedule.OneForwardOneBackward(4, 0, 2)));
    }

    [Fact]
    public void The_interleaved_schedule_has_megatrons_order()
    {
        // PP 2, VPP 2, 4 micro-batches: warm-up (2 − r − 1)·2 + (2 − 1)·2.
        Assert.Equal("F0 F1 F0.1 F1.1 F2 B0.1 F3 B1.1 F2.1 B0 F3.1 B1 B2.1 B3.1 B2 B3", Names(PipelineSchedule.Interleaved(2, 2, 0, 4)));
        Assert.Equal("F0 F1 F0.1 B0.1 F1.1 B1.1 F2 B0 F3 B1 F2.1 B2.1 F3.1 B3.1 B2 B3", Names(PipelineSchedule.Interleaved(2, 2, 1, 4)));
        // PP 4, VPP 2, 8 micro-batches: stage 0 warms up with 10 forwards, stage 3 with 4 (then the steady state opens with one more).
        var s0 = PipelineSchedule.Interleaved(4, 2, 0, 8);
        var s3 = PipelineSchedule.Interleaved(4, 2, 3, 8);
        Assert.Equal(10 + 1, s0.TakeWhile(a => a.Step == PipelineStep.Forward).Count());
        Assert.Equal(4 + 1, s3.TakeWhile(a => a.Step == PipelineStep.Forward).Count());
        // As many micro-batches as stages: all forwards first (Megatron's all-warm-up case).
        Assert.Equal(8, PipelineSchedule.Interleaved(4, 2, 2, 4).TakeWhile(a => a.Step == PipelineStep.Forward).Count());
        Assert.Contains("multiple of the pipeline size (4)", Assert.Throws<ArgumentException>(() => PipelineSchedule.Interleaved(4, 2, 0, 6)).Message);
    }

    [Theory]
    [InlineData(2, 1, 4)]
    [InlineData(4, 1, 8)]
    [InlineData(4, 1, 3)]
    [InlineData(2, 2, 4)]
    [InlineData(4, 2, 8)]
    [InlineData(4, 2, 4)]
    [InlineData(3, 3, 6)]
    public void Every_schedule_runs_to_the_end_with_buffered_sends_and_blocking_receives(int stages, int chunks, int microBatches)
    {
        // Each stage runs its list in order; a forward waits for the previous slot's forward of the same micro-batch, a
        // backward for the next slot's backward (or, on the last slot, its own forward). Sends never block.
        var lists = Enumerable.Range(0, stages).Select(s => PipelineSchedule.Interleaved(stages, chunks, s, microBatches)).ToArray();
        var done = new HashSet<(PipelineStep, int, int)>();   // (step, micro-batch, slot)
        int[] next = new int[stages];
        int slots = stages * chunks;
        bool progress = true;
        while (progress)
        {
            progress = false;
            for (int s = 0; s < stages; s++)
            {
                if (next[s] == lists[s].Count) continue;
                var a = lists[s][next[s]];
                int slot = a.Chunk * stages + s;
                bool ready = a.Step == PipelineStep.Forward
                    ? slot == 0 || done.Contains((PipelineStep.Forward, a.MicroBatch, slot - 1))
                    : slot == slots - 1 ? done.Contains((PipelineStep.Forward, a.MicroBatch, slot)) : done.Contains((PipelineStep.Backward, a.MicroBatch, slot + 1));
                if (!ready) continue;
                done.Add((a.Step, a.MicroBatch, slot));
                next[s]++;
                progress = true;
            }
        }
        Assert.All(Enumerable.Range(0, stages), s => Assert.Equal(lists[s].Count, next[s]));
        Assert.Equal(2 * microBatches * slots, done.Count);
    }
}
