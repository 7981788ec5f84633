using OmniTune.Distributed;

namespace OmniTune.Tests.Distributed;

public sealed class CollectiveWatchdogTests
{
    [Fact]
    public void A_call_that_waits_past_the_timeout_is_reported_with_its_description()
    {
        string? reported = null;
        using var fired = new ManualResetEventSlim();
        using var watchdog = new CollectiveWatchdog(TimeSpan.FromMilliseconds(200), m =>
        {
            reported = m;
            fired.Set();
        });
        using (watchdog.Watch("rank 3 of group 'decoder.dp': all-reduce"))
        {
            Assert.True(fired.Wait(TimeSpan.FromSeconds(10)), "the watchdog never fired");
        }
        Assert.Contains("rank 3 of group 'decoder.dp': all-reduce waited more than 0.2 s", reported);
    }

    [Fact]
    public void Calls_that_finish_in_time_are_never_reported()
    {
        string? reported = null;
        using var watchdog = new CollectiveWatchdog(TimeSpan.FromMilliseconds(300), m => reported = m);
        for (int i = 0; i < 10; i++)
        {
            using (watchdog.Watch($"call {i}")) Thread.Sleep(50);
        }
        Thread.Sleep(600);   // idle time between calls does not count
        Assert.Null(reported);
    }

    [Fact]
    public void A_single_rank_group_refuses_point_to_point_with_a_clear_message()
    {
        using var group = new SingleRankGroup("world");
        var e = Assert.Throws<InvalidOperationException>(() => group.Send(TorchSharp.torch.zeros(2), 1));
        Assert.Contains("no rank 1 to send to", e.Message);
        Assert.Throws<InvalidOperationException>(() => group.Receive(0));
    }

    [Fact]
    public void Tower_groups_on_one_process_are_single_rank_groups_named_after_the_tower()
    {
        using var world = new SingleRankGroup("world");
        using var towers = TowerGroups.Build(world, "audio", new ParallelDims(1));
        Assert.Equal(["audio.tp", "audio.cp", "audio.dp", "audio.pp"], towers.All.Select(g => g.Name));
        var e = Assert.Throws<ArgumentException>(() => TowerGroups.Build(world, "decoder", new ParallelDims(2, tp: 2)));
        Assert.Contains("the decoder layout covers 2 ranks but the world has 1", e.Message);
    }
}
