using System.CommandLine;
using OmniTune.Distributed;
using OmniTune.Distributed.TensorParallel;

namespace OmniTune.Cli.Commands;

/// <summary>
/// <c>mpirun -np N omnitune comm-check</c>: runs every collective and send/receive on known values over all ranks and
/// reports all-reduce bandwidth; with --tp, also checks the tensor-parallel mappings and layers, forward and backward, against
/// the single-process maths; the first command to run on a new machine or cluster.
/// </summary>
static class CommCheckCommand
{
    public static Command Create()
    {
        var megabytes = new Option<int>("--size-mib") { DefaultValueFactory = _ => 16, Description = "All-reduce payload for the bandwidth figure" };
        var timeout = new Option<double>("--timeout-seconds")
        {
            DefaultValueFactory = _ => MpiProcessGroup.DefaultTimeout.TotalSeconds,
            Description = "A call that waits longer for its peers ends the job (as finetune's --distributed-timeout-minutes)",
        };
        var tp = new Option<int>("--tp") { DefaultValueFactory = _ => 1, Description = "Also check the decoder's tensor-parallel groups of this size" };
        var cp = new Option<int>("--cp") { DefaultValueFactory = _ => 1, Description = "Also check the decoder's context-parallel groups of this size" };
        var pp = new Option<int>("--pp") { DefaultValueFactory = _ => 1, Description = "Also check the decoder's pipeline groups of this size" };
        var stall = new Option<int?>("--stall-rank") { Description = "Fault injection: this rank sleeps instead of joining, to see the timeout end the job" };
        var command = new Command("comm-check", "Check every collective over the ranks mpirun started and report all-reduce bandwidth") { megabytes, timeout, tp, cp, pp, stall };
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            var limit = TimeSpan.FromSeconds(parse.GetValue(timeout));
            if (limit <= TimeSpan.Zero) throw new ArgumentException("--timeout-seconds must be positive");
            using IProcessGroup world = ProcessGroups.World(limit);
            if (parse.GetValue(stall) is int stalled && stalled == world.Rank)
            {
                Console.Error.WriteLine($"rank {world.Rank}: --stall-rank given, sleeping instead of joining the collectives");
                Thread.Sleep(limit * 3 + TimeSpan.FromSeconds(30));
            }
            TextWriter log = world.Rank == 0 ? Console.Out : TextWriter.Null;
            log.WriteLine($"memory allocator: {OmniTune.Core.Native.CachingAllocator.Describe()}");
            CollectivesCheck.Run(world, log, parse.GetValue(megabytes));
            // Heterogeneous layout: the encoders data-parallel over every rank, the decoder as --tp/--cp/--pp say.
            using var vision = TowerGroups.Build(world, "vision", new ParallelDims(world.Size));
            using var decoder = TowerGroups.Build(world, "decoder", new ParallelDims(world.Size, parse.GetValue(tp), parse.GetValue(cp), parse.GetValue(pp)));
            log.WriteLine($"decoder layout: tp {decoder.Dims.Tp} × cp {decoder.Dims.Cp} × dp {decoder.Dims.Dp} × pp {decoder.Dims.Pp}; vision: dp {vision.Dims.Dp}");
            foreach (var group in decoder.All.Concat(vision.All))
            {
                // Every member of a group runs its check; rank 0 of each group reports, rank 0 of the world prints.
                CollectivesCheck.Run(group, group.Rank == 0 && world.Rank == 0 ? log : TextWriter.Null, megabytes: 1);
                world.Barrier();
            }
            if (decoder.Tp.Size > 1) TensorParallelCheck.Run(decoder.Tp, log);   // the parallel layers the decoder's group will run
            if (decoder.Cp.Size > 1) OmniTune.Distributed.Context.ContextParallelCheck.Run(decoder.Cp, log);   // its context-parallel attention
            return 0;
        }));
        return command;
    }
}
