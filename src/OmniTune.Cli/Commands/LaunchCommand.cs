using System.CommandLine;
using System.Diagnostics;
using System.Globalization;

namespace OmniTune.Cli.Commands;

/// <summary>
/// <c>omnitune launch --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P] [--hostfile F] -- finetune …</c>:
/// maps torchrun's launcher variables onto Open MPI's mpirun (one process per device or per core group).
/// </summary>
static class LaunchCommand
{
    public static Command Create()
    {
        var perNode = new Option<int>("--nproc-per-node") { DefaultValueFactory = _ => 1, Description = "Processes on each node" };
        var nodes = new Option<int>("--nnodes") { DefaultValueFactory = _ => 1, Description = "Nodes (with a --hostfile listing them)" };
        var nodeRank = new Option<int>("--node-rank") { DefaultValueFactory = _ => 0, Description = "Accepted for torchrun compatibility (mpirun starts every node from one place)" };
        var address = new Option<string?>("--master-addr") { Description = "Accepted for torchrun compatibility (MPI needs no rendezvous address)" };
        var port = new Option<int?>("--master-port") { Description = "Accepted for torchrun compatibility" };
        var hostfile = new Option<string?>("--hostfile") { Description = "Open MPI hostfile for several nodes (\"node1 slots=8\" per line)" };
        var command = new Command("launch", "Start N ranks of an omnitune command under mpirun") { perNode, nodes, nodeRank, address, port, hostfile };
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            var rest = parse.UnmatchedTokens.SkipWhile(t => t == "--").ToList();
            if (rest.Count == 0) throw new ArgumentException("nothing to launch: add -- finetune … after the launcher options");
            int total = parse.GetValue(perNode) * parse.GetValue(nodes);
            if (parse.GetValue(nodes) > 1 && parse.GetValue(hostfile) is null)
                throw new ArgumentException("--nnodes > 1 needs --hostfile listing the nodes (under Slurm, run mpirun inside the allocation instead)");
            var start = new ProcessStartInfo("mpirun") { UseShellExecute = false };
            var args = new List<string> { "--allow-run-as-root", "--oversubscribe", "-np", total.ToString(CultureInfo.InvariantCulture),
                "-x", "TERM=dumb", "-x", "MALLOC_MMAP_THRESHOLD_=1048576", "-x", $"OMP_NUM_THREADS={Math.Max(1, Environment.ProcessorCount / parse.GetValue(perNode))}" };
            if (parse.GetValue(hostfile) is string file) args.AddRange(["--hostfile", file]);
            string? self = Environment.ProcessPath;
            string entry = typeof(Program).Assembly.Location;
            if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet") args.AddRange([self, entry]);
            else args.Add(self ?? entry);
            args.AddRange(rest);
            foreach (string a in args) start.ArgumentList.Add(a);
            Console.WriteLine($"mpirun {string.Join(' ', args)}");
            using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start mpirun (Debian: apt-get install openmpi-bin)");
            process.WaitForExit();
            return process.ExitCode;
        }));
        return command;
    }
}
