using Microsoft.Extensions.Time.Testing;
using OmniTune.Distributed;

namespace OmniTune.Tests.Distributed;

public sealed class CollectiveWatchdogTests
{
    [Fact]
    public void A_call_that_waits_past_the_timeout_is_reported_once_with_its_description()
    {
        var clock = new FakeTimeProvider();
        var reported = new List<string>();
        using var watchdog = new CollectiveWatchdog(TimeSpan.FromSeconds(60), reported.Add, clock);
        using (watchdog.Watch("rank 3 of group 'decoder.dp': all-reduce"))
        {
            clock.Advance(TimeSpan.FromSeconds(59));
            Assert.Empty(reported);
            clock.Advance(TimeSpan.FromSeconds(12));
            clock.Advance(TimeSpan.FromSeconds(30));
        }
        Assert.Equal(["rank 3 of group 'decoder.dp': all-reduce waited more than 60 s for its peers: a rank has died or hung; ending the job " +
                      "(raise --distributed-timeout-minutes if a step legitimately takes this long)"], reported);
    }

    [Fact]
    public void Calls_that_finish_in_time_are_never_reported_however_long_the_idle_time_between_them()
    {
        var clock = new FakeTimeProvider();
        var reported = new List<string>();
        using var watchdog = new CollectiveWatchdog(TimeSpan.FromSeconds(60), reported.Add, clock);
        for (int i = 0; i < 10; i++)
        {
            using (watchdog.Watch($"call {i}")) clock.Advance(TimeSpan.FromSeconds(50));
            clock.Advance(TimeSpan.FromMinutes(5));   // idle time between calls does not count
        }
        Assert.Empty(reported);
    }

    [Fact]
    public void On_the_system_clock_a_stalled_call_is_reported()
    {
        using var fired = new ManualResetEventSlim();
        using var watchdog = new CollectiveWatchdog(TimeSpan.FromMilliseconds(100), _ => fired.Set());
        using (watchdog.Watch("stalled")) Assert.True(fired.Wait(TimeSpan.FromMinutes(1)), "the watchdog never fired");
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
