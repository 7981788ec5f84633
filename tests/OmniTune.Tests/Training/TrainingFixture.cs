using System.Text.Json;
using System.Text.Json.Nodes;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Testing;
using OmniTune.Training.Arguments;

namespace OmniTune.Tests.Training;

/// <summary>A tiny model, an 8-sample text dataset (plus one image row), data.json and model.json.</summary>
public sealed class TrainingFixture : IDisposable
{
    readonly TempFolder folder = new();

    public TrainingFixture()
    {
        Model = Path.Combine(folder.Path, "model");
        TinyQwen25Omni.Write(Model, seed: 2);
        string media = Path.Combine(folder.Path, "media");
        Directory.CreateDirectory(media);
        MediaFixtures.Image(media, "dot.png", 56, 56);
        var rows = new JsonArray();
        string[] answers = ["Red.", "Blue is calm.", "Green grass grows.", "Yellow sun.", "Seven.", "The cat sleeps.", "Hello there!", "Goodbye."];
        for (int i = 0; i < answers.Length; i++)
        {
            rows.Add(new JsonObject
            {
                ["messages"] = new JsonArray(
                new JsonObject { ["role"] = "user", ["content"] = i == 2 ? "<image>Question number 2?" : $"Question number {i}?" },
                new JsonObject { ["role"] = "assistant", ["content"] = answers[i] }),
                ["images"] = i == 2 ? new JsonArray("media/dot.png") : new JsonArray()
            });
        }
        File.WriteAllText(Path.Combine(folder.Path, "train.json"), rows.ToJsonString());
        DataJson = Path.Combine(folder.Path, "data.json");
        File.WriteAllText(DataJson, JsonSerializer.Serialize(new
        {
            dataset_param = new
            {
                preprocess_parameters = new { model_name_or_path = Model },
                basic_parameters = new { dataset_dir = folder.Path, dataset = Path.Combine(folder.Path, "train.json") },
                attr = new { images = "images", messages = "messages", role_tag = "role", content_tag = "content", user_tag = "user", assistant_tag = "assistant" },
            },
        }));
        ModelJson = WriteModelJson("model.json", """{"image_encoder":{"vision_encoder":{"freeze":true},"vision_projector":{"freeze":false}},"audio_encoder":{"audio_encoder":{"freeze":true}}}""");
    }

    public string Model { get; }

    public string DataJson { get; }

    public string ModelJson { get; }

    public string Folder => folder.Path;

    public string WriteModelJson(string name, string json)
    {
        string path = Path.Combine(folder.Path, name);
        File.WriteAllText(path, json);
        return path;
    }

    /// <summary>Arguments for a short run; <paramref name="extra"/> flags override.</summary>
    public TrainingArguments Args(params string[] extra) => TrainingArguments.FromFlags(MegatronFlags.Parse([
        "--mm-model", ModelJson, "--mm-data", DataJson, "--seq-length", "256", "--lr", "2e-3", "--lr-decay-style", "constant",
        "--weight-decay", "0.01", "--clip-grad", "1.0", "--train-iters", "4", "--log-interval", "1", "--num-workers", "0", "--seed", "5", .. extra]));

    public void Dispose() => folder.Dispose();
}
