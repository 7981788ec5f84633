using System.Text.Json.Nodes;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Distributed;

/// <summary>
/// Neat sequence packing through <c>omnitune finetune</c> (data.json <c>neat_packing</c>): the demo's image, audio,
/// video-with-sound and text samples packed into rows; one process against context parallel over two (the chunks of a
/// packed row cut across its samples, attention kept inside each sample), in the per-sample loss mode, which averages
/// by the packed samples.
/// </summary>
public sealed class PackingTests : IClassFixture<PipelineFixture>
{
    readonly PipelineFixture fixture;

    public PackingTests(PipelineFixture fixture) => this.fixture = fixture;

    string PackedDataJson()
    {
        var json = JsonNode.Parse(File.ReadAllText(fixture.DataJson))!;
        json["dataset_param"]!["basic_parameters"]!["neat_packing"] = true;
        string path = Path.Combine(fixture.Folder, "data-neat.json");
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    string Flags(string extra) =>
        $"finetune --mm-model {fixture.ModelJson("packing.json", null, null, null)} --mm-data {PackedDataJson()} --seq-length 256 --lr 2e-3 " +
        $"--lr-decay-style constant --weight-decay 0.01 --clip-grad 1.0 --log-interval 1 --num-workers 0 --seed 5 --micro-batch-size 1 --global-batch-size 2 " +
        $"--train-iters 3 --calculate-per-sample-loss {extra}";

    [Fact]
    public void Neat_packed_rows_train_alike_in_one_process_and_under_context_parallel()
    {
        MpiJob.Require();
        var single = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags("")}");
        Assert.True(single.Code == 0, single.Output);
        var packed = System.Text.RegularExpressions.Regex.Match(single.Output,
            @"neat packing \(each sample attends to itself, its positions its own\): (\d+) training samples in (\d+) rows? of at most 255 tokens");
        Assert.True(packed.Success, single.Output);
        Assert.True(int.Parse(packed.Groups[2].Value) * 2 <= int.Parse(packed.Groups[1].Value), packed.Value);   // rows hold two samples or more on average
        var (code, output, _) = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags("--context-parallel-size 2")}");
        Assert.True(code == 0, output);
        CheckpointBytes.AssertLossesClose(MpiJob.Losses(single.Output), MpiJob.Losses(output), 2e-5);
    }
}
