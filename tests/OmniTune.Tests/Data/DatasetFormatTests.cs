using System.Text.Json;
using System.Text.Json.Nodes;
using OmniTune.Cli;
using OmniTune.Data.Datasets;
using OmniTune.Data.Media;
using OmniTune.Data.Processing;
using OmniTune.Tests.Models;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Data;

public sealed class DatasetFormatTests : IClassFixture<DatasetFixture>
{
    readonly DatasetFixture fixture;

    public DatasetFormatTests(DatasetFixture fixture) => this.fixture = fixture;

    [Fact]
    public void Data_json_rejects_cutoff_len_and_reports_unknown_keys()
    {
        using var dir = new TempFolder();
        string path = dir.File("data.json");
        File.WriteAllText(path, """{"dataset_param":{"basic_parameters":{"dataset":"x.json","cutoff_len":1024}}}""");
        Assert.Contains("cutoff_len is not allowed", Assert.Throws<InvalidDataException>(() => DataJsonLoader.Load(path)).Message);
        File.WriteAllText(path, """{"dataset_param":{"basic_parameters":{"dataset":"x.json","shuffle_seed":3},"attr":{"images":"images"}},"dataloader_param":{"num_workers":2}}""");
        var (config, report) = DataJsonLoader.Load(path);
        Assert.Equal(["dataset_param.basic_parameters.shuffle_seed"], report.UnknownKeys);
        Assert.Equal("images", config.DatasetParam.Attr.Images);
        File.WriteAllText(path, """{"dataset_param":{"basic_parameters":{"dataset":"x.json"},"preprocess_parameters":{"image_max_pixels":10,"image_min_pixels":100}}}""");
        Assert.Contains("image_max_pixels 10 is below image_min_pixels 100", Assert.Throws<InvalidDataException>(() => DataJsonLoader.Load(path)).Message);
    }

    [Fact]
    public void Alpaca_and_sharegpt_entries_of_dataset_info_with_jsonl_files_are_read_and_mixed()
    {
        string info = Path.Combine(fixture.DataDir, DatasetCatalog.DatasetInfoFile);
        File.WriteAllText(info, """
            {
              "my_alpaca": {"file_name": "alpaca.jsonl", "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "sys"}},
              "my_sharegpt": {"file_name": "sharegpt.json", "formatting": "sharegpt"}
            }
            """);
        File.WriteAllText(Path.Combine(fixture.DataDir, "alpaca.jsonl"),
            """{"instruction":"Solve the math problem.","input":"3 + 4","output":"The answer is 7.","sys":"Be exact."}""" + "\n" +
            """{"instruction":"Name a colour.","output":"Red."}""" + "\n");
        File.WriteAllText(Path.Combine(fixture.DataDir, "sharegpt.json"), """
            [{"conversations":[{"from":"system","value":"You are terse."},{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello."}]}]
            """);
        try
        {
            var config = fixture.Config(dataset: "my_alpaca, my_sharegpt");
            var dataset = SupervisedDatasetBuilder.Build(config, fixture.Processor(), new DatasetBuildOptions(512), TextWriter.Null);
            Assert.Equal(3, dataset.Samples.Count);
            var tokenizer = fixture.Processor().Tokenizer;
            string first = tokenizer.Decode(dataset.Samples[0].InputIds);
            Assert.Contains("<|im_start|>system\nBe exact.<|im_end|>", first);
            Assert.Contains("<|im_start|>user\nSolve the math problem.\n3 + 4<|im_end|>", first);
            Assert.Contains("You are terse.", tokenizer.Decode(dataset.Samples[2].InputIds));
        }
        finally
        {
            File.Delete(info);
        }
    }

    [Fact]
    public void A_present_columns_or_tags_object_leaves_what_it_does_not_name_empty_as_in_llama_factory()
    {
        // LLaMA-Factory's DatasetAttr.join reads every column (tag) from a present "columns" ("tags") object with no default.
        string info = Path.Combine(fixture.DataDir, DatasetCatalog.DatasetInfoFile);
        File.WriteAllText(info, """
            {
              "alpaca_sys_only": {"file_name": "alpaca-sys.jsonl", "columns": {"system": "sys"}},
              "chat_no_system_tag": {"file_name": "chat.json", "formatting": "sharegpt", "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}},
              "chat_system_tag": {"file_name": "chat.json", "formatting": "sharegpt", "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt", "system_tag": "system"}},
              "chat_no_tags": {"file_name": "chat.json", "formatting": "sharegpt"}
            }
            """);
        File.WriteAllText(Path.Combine(fixture.DataDir, "alpaca-sys.jsonl"), """{"instruction":"Name a colour.","output":"Red.","sys":"Be brief."}""" + "\n");
        File.WriteAllText(Path.Combine(fixture.DataDir, "chat.json"), """
            [{"conversations":[{"from":"system","value":"You are terse."},{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello."}]},
             {"conversations":[{"from":"human","value":"Bye"},{"from":"gpt","value":"Goodbye."}]}]
            """);
        try
        {
            SupervisedDataset Build(string name) => SupervisedDatasetBuilder.Build(fixture.Config(dataset: name), fixture.Processor(), new DatasetBuildOptions(512), TextWriter.Null);
            var alpaca = Build("alpaca_sys_only");
            Assert.Empty(alpaca.Samples);
            Assert.Contains("\"response\"", alpaca.Invalid.Single().Reason);
            var dropped = Build("chat_no_system_tag");
            Assert.Single(dropped.Samples);
            var problem = dropped.Invalid.Single();
            Assert.Contains("chat.json", problem.Location.ToString());
            Assert.Contains("declare \"system_tag\": \"system\"", problem.Reason);
            Assert.Equal(2, Build("chat_system_tag").Samples.Count);
            Assert.Equal(2, Build("chat_no_tags").Samples.Count);   // no tags object: LLaMA-Factory's defaults, system_tag "system"
        }
        finally
        {
            File.Delete(info);
        }
    }

    [Fact]
    public void With_use_audio_in_video_a_video_without_a_listed_audio_keeps_a_plain_span_and_a_video_with_one_interleaves()
    {
        // LLaMA-Factory interleaves only when the sample lists audios and videos; it never takes a video's own sound track.
        string file = Path.Combine(fixture.DataDir, "mixed-video.json");
        File.WriteAllText(file, """
            [{"messages":[{"role":"user","content":"<video>What happens?"},{"role":"assistant","content":"Moving bars."}],"videos":["media/clip.mp4"]},
             {"messages":[{"role":"user","content":"<video><audio>And here?"},{"role":"assistant","content":"Bars and a tone."}],"videos":["media/clip.mp4"],"audios":["media/tone.wav"]}]
            """);
        var processor = Qwen25OmniProcessor.Load(fixture.Model, new ProcessorSettings { UseAudioInVideo = true });
        var dataset = SupervisedDatasetBuilder.Build(fixture.Config(dataset: file), processor, new DatasetBuildOptions(4096), TextWriter.Null);
        Assert.Empty(dataset.Invalid);
        Assert.Equal(2, dataset.Samples.Count);
        string silent = processor.Tokenizer.Decode(dataset.Samples[0].InputIds), sounding = processor.Tokenizer.Decode(dataset.Samples[1].InputIds);
        Assert.Contains("<|vision_bos|><|VIDEO|>", silent);
        Assert.DoesNotContain("<|AUDIO|>", silent);
        Assert.Contains("<|vision_bos|><|audio_bos|><|VIDEO|>", sounding);
        Assert.Contains("<|AUDIO|>", sounding);
    }

    [Fact]
    public void Default_system_in_basic_parameters_replaces_the_templates_default_system_prompt()
    {
        var config = fixture.Config();
        config = config with { DatasetParam = config.DatasetParam with { BasicParameters = config.DatasetParam.BasicParameters with { DefaultSystem = "You are a pirate." } } };
        var processor = DataJsonLoader.Processor(config, fixture.Model);
        var dataset = SupervisedDatasetBuilder.Build(config, processor, new DatasetBuildOptions(512), TextWriter.Null);
        string first = processor.Tokenizer.Decode(dataset.Samples[0].InputIds);
        Assert.StartsWith("<|im_start|>system\nYou are a pirate.<|im_end|>", first);
        Assert.Contains("You are a helpful assistant.", fixture.Processor().Tokenizer.Decode(
            SupervisedDatasetBuilder.Build(fixture.Config(), fixture.Processor(), new DatasetBuildOptions(512), TextWriter.Null).Samples[0].InputIds));
        var parsed = System.Text.Json.JsonSerializer.Deserialize<DataJsonConfig>("""{"dataset_param": {"basic_parameters": {"default_system": "Be brief."}}}""")!;
        Assert.Equal("Be brief.", parsed.DatasetParam.BasicParameters.DefaultSystem);
    }

    [Fact]
    public void An_unknown_dataset_name_says_where_it_was_looked_for()
    {
        var error = Assert.Throws<FileNotFoundException>(() => DatasetCatalog.Resolve(fixture.Config(dataset: "nope.json").DatasetParam.BasicParameters, new AttrParameters()));
        Assert.Contains("dataset 'nope.json' not found", error.Message);
    }

    [Fact]
    public void The_llava_converter_keeps_text_only_records_skips_missing_images_and_refuses_to_overwrite()
    {
        using var dir = new TempFolder();
        string coco = Path.Combine(dir.Path, "COCO2017");
        Directory.CreateDirectory(Path.Combine(coco, "train2017"));
        MediaFixtures.Image(Path.Combine(coco, "train2017"), "000000033471.jpg", 64, 48);
        string llava = dir.File("llava_instruct_150k.json");
        File.WriteAllText(llava, """
            [
              {"id":"000000033471","image":"000000033471.jpg","conversations":[
                {"from":"human","value":"<image>\nWhat are the colors of the bus in the image?"},{"from":"gpt","value":"The bus in the image is white and red."}]},
              {"id":"missing","image":"000000000001.jpg","conversations":[{"from":"human","value":"<image>\nHi"},{"from":"gpt","value":"Hello"}]},
              {"id":"text","conversations":[{"from":"human","value":"Tell me a joke."},{"from":"gpt","value":"No."}]}
            ]
            """);
        string output = Path.Combine(dir.Path, "out", "mllm.json");
        var report = LlavaToMllmConverter.Convert(llava, coco, output);
        Assert.Equal((2, 1), (report.Written, report.TextOnly));
        Assert.Equal([(1, "./train2017/000000000001.jpg")], report.MissingImages);
        var json = JsonNode.Parse(File.ReadAllText(output))!.AsArray();
        Assert.StartsWith("""[{"images":["./train2017/000000033471.jpg"],"messages":[{"role":"user","content":"<image>\nWhat are the colors of the bus in the image?"},{"role":"assistant","content":"The bus in the image is white and red."}]}""",
            File.ReadAllText(output), StringComparison.Ordinal);
        Assert.Empty(json[1]!["images"]!.AsArray());
        Assert.Throws<IOException>(() => LlavaToMllmConverter.Convert(llava, coco, output));
        File.WriteAllText(llava, """[{"image":"","conversations":[{"from":"robot","value":"x"}]}]""");
        Assert.Contains("unknown role 'robot'", Assert.Throws<InvalidDataException>(() => LlavaToMllmConverter.Convert(llava, coco, output, overwrite: true)).Message);
        Assert.Equal(2, JsonNode.Parse(File.ReadAllText(output))!.AsArray().Count);   // a failed run leaves the previous output intact
    }

    [Fact]
    public void The_converted_llava_data_trains_through_data_json_with_the_coco_root_as_dataset_dir()
    {
        using var dir = new TempFolder();
        string coco = Path.Combine(dir.Path, "COCO2017");
        Directory.CreateDirectory(Path.Combine(coco, "train2017"));
        MediaFixtures.Image(Path.Combine(coco, "train2017"), "1.jpg", 64, 48);
        string llava = dir.File("llava.json");
        File.WriteAllText(llava, """[{"image":"1.jpg","conversations":[{"from":"human","value":"<image>\nWhat is it?"},{"from":"gpt","value":"A circle."}]}]""");
        string output = dir.File("mllm.json");
        LlavaToMllmConverter.Convert(llava, coco, output);
        var config = JsonSerializer.Deserialize<DataJsonConfig>($$"""
            {"dataset_param":{"preprocess_parameters":{"model_name_or_path":{{JsonSerializer.Serialize(fixture.Model)}}},
             "basic_parameters":{"dataset_dir":{{JsonSerializer.Serialize(coco)}},"dataset":{{JsonSerializer.Serialize(output)}}},
             "attr":{"images":"images","messages":"messages","role_tag":"role","content_tag":"content","user_tag":"user","assistant_tag":"assistant"} } }
            """)!;
        var dataset = SupervisedDatasetBuilder.Build(config, fixture.Processor(), new DatasetBuildOptions(512), TextWriter.Null);
        Assert.Single(dataset.Samples);
        Assert.Single(dataset.Samples[0].Images);
    }

    [Fact]
    public void Data_check_prints_modalities_lengths_and_every_rejected_sample()
    {
        using var dir = new TempFolder();
        string dataJson = dir.File("data.json");
        File.WriteAllText(dataJson, JsonSerializer.Serialize(fixture.Config()));
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        using var output = new StringWriter();
        Console.SetOut(output);
        Console.SetError(TextWriter.Null);
        int code;
        try
        {
            code = Program.Main(["data", "check", "--mm-data", dataJson, "--seq-length", "1024", "--no-cache"]);
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
        string text = output.ToString();
        Assert.Equal(0, code);
        Assert.Contains("samples: 6 usable, 6 rejected", text);
        Assert.Contains("token length: min", text);
        Assert.Contains("trained (labelled) tokens", text);
        Assert.Contains("mixed.json#8:", text);
    }
}

/// <summary>LLaMA-Factory's four multimodal demo datasets end to end (../shared/assets/llamafactory-demo).</summary>
public sealed class DemoDatasetTests
{
    const string Demo = "assets/llamafactory-demo";

    [SharedAssetFact(Demo + "/dataset_info.json")]
    public void The_four_demo_datasets_encode_collate_and_run_through_the_tiny_thinker()
    {
        using var dir = new TempFolder();
        string model = Path.Combine(dir.Path, "model");
        OmniTune.Models.Qwen25Omni.Tiny.TinyQwen25Omni.Write(model);
        DataJsonConfig Config(string datasets, bool audioInVideo) => JsonSerializer.Deserialize<DataJsonConfig>($$"""
            {"dataset_param":{"preprocess_parameters":{"model_name_or_path":{{JsonSerializer.Serialize(model)}},"use_audio_in_video":{{(audioInVideo ? "true" : "false")}},
               "image_max_pixels":262144,"image_min_pixels":0,"video_max_pixels":16384,"video_min_pixels":0},
             "basic_parameters":{"dataset_dir":{{JsonSerializer.Serialize(Path.Combine(RepositoryPaths.Shared, Demo))}},"dataset":"{{datasets}}"} } }
            """)!;
        var settings = DataJsonLoader.ToProcessorSettings(Config("", false).DatasetParam.PreprocessParameters);
        var plain = SupervisedDatasetBuilder.Build(Config("mllm_demo,mllm_audio_demo,mllm_video_demo", false),
            Qwen25OmniProcessor.Load(model, settings), new DatasetBuildOptions(2048), TextWriter.Null);
        Assert.Empty(plain.Invalid);
        Assert.Equal(12, plain.Samples.Count);
        var interleaved = SupervisedDatasetBuilder.Build(Config("mllm_video_audio_demo", true),
            Qwen25OmniProcessor.Load(model, settings with { UseAudioInVideo = true }), new DatasetBuildOptions(2048), TextWriter.Null);
        Assert.Equal(3, interleaved.Samples.Count);
        var thinker = TinyThinker.Config();
        var (loaded, _, _) = OmniTune.Models.Qwen25Omni.Loading.ThinkerCheckpointLoader.Load(model);
        using (loaded)
        using (TorchSharp.torch.no_grad())
        {
            foreach (var (dataset, audioInVideo) in new[] { (plain, false), (interleaved, true) })
            {
                var collator = new BatchCollator(settings with { UseAudioInVideo = audioInVideo }, OmniTune.Models.Qwen25Omni.Positions.RopeIndexSettings.From(thinker), thinker.PadTokenId);
                using var batch = collator.Collate(dataset.Samples.Take(3).ToList());
                float loss = OmniTune.Models.Common.CausalLmLoss.Mean(loaded.Forward(batch.Inputs), batch.Labels).item<float>();
                Assert.True(float.IsFinite(loss));
            }
        }
    }
}
