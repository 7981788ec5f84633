using System.Text.Json;
using System.Text.Json.Nodes;
using OmniTune.Data.Datasets;
using OmniTune.Data.Processing;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Data;

/// <summary>A generated multimodal dataset (text-only, image, audio and video rows plus broken rows) with a tiny model.</summary>
public sealed class DatasetFixture : IDisposable
{
    readonly TempFolder folder = new();

    public DatasetFixture()
    {
        Model = Path.Combine(folder.Path, "model");
        TinyQwen25Omni.Write(Model, seed: 1);
        string media = Path.Combine(folder.Path, "data", "media");
        Directory.CreateDirectory(media);
        MediaFixtures.Image(media, "red.png", 80, 60);
        MediaFixtures.Image(media, "wide.jpg", 200, 100);
        MediaFixtures.Tone(media, "tone.wav", 0.8);
        MediaFixtures.Video(media, "clip.mp4", seconds: 2, width: 96, height: 64, fps: 8);
        File.WriteAllBytes(Path.Combine(media, "broken.png"), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        DataDir = Path.Combine(folder.Path, "data");
        JsonArray rows = [];
        void Row(string user, string answer, string? image = null, string? audio = null, string? video = null, string userRole = "user", string assistantRole = "assistant")
        {
            var row = new JsonObject
            {
                ["messages"] = new JsonArray(
                new JsonObject { ["role"] = userRole, ["content"] = user },
                new JsonObject { ["role"] = assistantRole, ["content"] = answer })
            };
            if (image is not null) row["images"] = new JsonArray(image);
            if (audio is not null) row["audios"] = new JsonArray(audio);
            if (video is not null) row["videos"] = new JsonArray(video);
            rows.Add(row);
        }
        Row("Hello, who are you?", "I am a tiny model.");                                        // 0 text
        Row("<image>What is this?", "A red circle.", image: "media/red.png");                    // 1 image
        Row("<audio>What do you hear?", "A tone.", audio: "media/tone.wav");                     // 2 audio
        Row("<video>What happens?", "Moving bars.", video: "media/clip.mp4");                    // 3 video
        Row("<image>Wide?", "Yes, wide.", image: "media/wide.jpg");                              // 4 image
        Row("Say something.", "Something.", assistantRole: "user");                              // 5 bad role order
        Row("<image><image>Two?", "No.", image: "media/red.png");                                // 6 placeholder count
        Row("<image>Missing?", "Yes.", image: "media/missing.png");                              // 7 missing file
        Row("<image>Broken?", "Yes.", image: "media/broken.png");                                // 8 undecodable
        Row("Empty answer?", "  ");                                                              // 9 empty answer
        Row("Count to three.", "One, two, three.");                                              // 10 text
        rows.Add(new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Odd?" }) });   // 11 odd count
        DatasetFile = Path.Combine(DataDir, "mixed.json");
        File.WriteAllText(DatasetFile, rows.ToJsonString());
    }

    public string Model { get; }

    public string DataDir { get; }

    public string DatasetFile { get; }

    public int GoodRows => 6;

    public string Folder => folder.Path;

    /// <summary>A data.json over the generated dataset.</summary>
    public DataJsonConfig Config(string? cacheDir = null, string policy = "skip", int? maxSamples = null, string? dataset = null) =>
        JsonSerializer.Deserialize<DataJsonConfig>($$"""
        {
          "dataset_param": {
            "dataset_type": "huggingface",
            "preprocess_parameters": { "model_name_or_path": {{JsonSerializer.Serialize(Model)}} },
            "basic_parameters": {
              "template": "qwen2_omni", "dataset_dir": {{JsonSerializer.Serialize(DataDir)}}, "dataset": {{JsonSerializer.Serialize(dataset ?? DatasetFile)}},
              "cache_dir": {{JsonSerializer.Serialize(cacheDir)}}, "invalid_sample_policy": "{{policy}}", "max_samples": {{(maxSamples is null ? "null" : maxSamples.ToString())}}
            },
            "attr": { "images": "images", "videos": "videos", "audios": "audios", "messages": "messages",
                      "role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant" }
          },
          "dataloader_param": { "dataloader_mode": "sampler", "drop_last": true, "shuffle": true }
        }
        """)!;

    public Qwen25OmniProcessor Processor() => Qwen25OmniProcessor.Load(Model);

    public void Dispose() => folder.Dispose();
}
