using System.CommandLine;
using OmniTune.Checkpoints.Conversion;
using Spectre.Console;

namespace OmniTune.Cli.Commands;

/// <summary>
/// <c>omnitune convert hf-to-mm | mm-to-hf | reshard</c>, and MindSpeed-MM's spelling
/// <c>omnitune mm-convert Qwen2_5_OmniConverter hf_to_mm --cfg.mm_dir … --cfg.parallel_config.llm_pp_layers [[11,17]] …</c>.
/// </summary>
static class ConvertCommand
{
    public static Command Create()
    {
        var command = new Command("convert", "Convert weights between Hugging Face and MindSpeed-MM layouts");
        command.Subcommands.Add(HfToMm());
        command.Subcommands.Add(MmToHf());
        command.Subcommands.Add(Reshard());
        return command;
    }

    sealed record LayoutOptions(Option<string?> Llm, Option<string?> Vit, Option<string?> Audio, Option<int> Tp, Option<int> VitTp, Option<int> AudioTp)
    {
        /// <summary>--format of the rank files written.</summary>
        public static Option<string> Format(Command command)
        {
            var format = new Option<string>("--format")
            {
                DefaultValueFactory = _ => "pt",
                Description = "Rank files: pt (model_optim_rng.pt, what MindSpeed-MM and Megatron read) or safetensors (model_optim_rng.safetensors, the layout in its metadata)",
            };
            format.AcceptOnlyFromAmong("pt", "safetensors");
            command.Options.Add(format);
            return format;
        }

        public static MmFileFormat ReadFormat(ParseResult parse, Option<string> format) => parse.GetValue(format) == "safetensors" ? MmFileFormat.Safetensors : MmFileFormat.PyTorch;

        public static LayoutOptions Add(Command command)
        {
            var options = new LayoutOptions(
                new Option<string?>("--llm-pp-layers") { Description = "LLM layers per pipeline stage, per virtual chunk, e.g. [[11,17]] (default: one stage)" },
                new Option<string?>("--vit-pp-layers") { Description = "ViT layers per stage, e.g. [[32,0]]" },
                new Option<string?>("--audio-pp-layers") { Description = "Audio layers per stage, e.g. [[32,0]]" },
                new Option<int>("--tp-size") { DefaultValueFactory = _ => 1, Description = "LLM tensor-parallel size (and the encoders' unless set)" },
                new Option<int>("--vit-tp-size") { DefaultValueFactory = _ => 0 },
                new Option<int>("--audio-tp-size") { DefaultValueFactory = _ => 0 });
            foreach (Option o in new Option[] { options.Llm, options.Vit, options.Audio, options.Tp, options.VitTp, options.AudioTp }) command.Options.Add(o);
            return options;
        }

        public ParallelLayout Read(ParseResult parse, OmniTune.Models.Qwen25Omni.Config.Qwen25OmniThinkerConfig config)
        {
            var single = ParallelLayout.Single(config);
            return new ParallelLayout(
                parse.GetValue(Llm) is { } l ? ParallelLayout.ParseLayers(l, "--llm-pp-layers") : single.LlmPpLayers,
                parse.GetValue(Vit) is { } v ? ParallelLayout.ParseLayers(v, "--vit-pp-layers") : single.VitPpLayers,
                parse.GetValue(Audio) is { } a ? ParallelLayout.ParseLayers(a, "--audio-pp-layers") : single.AudioPpLayers,
                parse.GetValue(Tp), parse.GetValue(VitTp), parse.GetValue(AudioTp));
        }
    }

    static Command HfToMm()
    {
        var hf = new Option<string>("--hf-dir") { Required = true, Description = "Hugging Face Qwen2.5-Omni folder" };
        var mm = new Option<string>("--mm-dir") { Required = true, Description = "Output root (must not exist or be empty)" };
        var command = new Command("hf-to-mm", "Hugging Face folder → MindSpeed-MM layout (release/mp_rank_XX[_YYY]/model_optim_rng.pt)") { hf, mm };
        var layout = LayoutOptions.Add(command);
        var format = LayoutOptions.Format(command);
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            using var source = new HfTensorSource(parse.GetValue(hf)!);
            var target = layout.Read(parse, source.Config.Thinker);
            WithProgress("hf → mm", progress => CheckpointConverter.ToMm(source, target, parse.GetValue(mm)!, progress, LayoutOptions.ReadFormat(parse, format)));
            Console.WriteLine($"wrote {parse.GetValue(mm)} with layout {target.ToJson()}");
            return 0;
        }));
        return command;
    }

    static Command MmToHf()
    {
        var mm = new Option<string>("--mm-dir") { Required = true, Description = "MindSpeed-MM checkpoint root, or an OmniTune training checkpoint root" };
        var save = new Option<string>("--save-hf-dir") { Required = true, Description = "Output Hugging Face folder" };
        var hf = new Option<string?>("--hf-dir")
        {
            Description = "Original Hugging Face folder: its shard layout, talker/token2wav weights and other files are mirrored, and its config.json serves a checkpoint that has none (Megatron training saves)",
        };
        var command = new Command("mm-to-hf", "MindSpeed-MM layout (any TP/PP/VPP) → Hugging Face folder") { mm, save, hf };
        var layout = LayoutOptions.Add(command);
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            using IThinkerTensorSource source = OpenMm(parse.GetValue(mm)!, parse.GetValue(hf), parse.GetValue(hf));
            if (source is MmCheckpoint checkpoint && (parse.GetValue(layout.Llm) is not null || parse.GetValue(layout.Tp) != 1))
            {
                var given = layout.Read(parse, source.Config.Thinker);
                if (given.Normalized().ToJson() != checkpoint.Layout.Normalized().ToJson())
                    throw new ArgumentException($"the given layout {given.ToJson()} differs from the checkpoint's {checkpoint.Layout.ToJson()}");
            }
            WithProgress("mm → hf", progress => CheckpointConverter.ToHf(source, parse.GetValue(save)!, parse.GetValue(hf), progress: progress));
            Console.WriteLine($"wrote {parse.GetValue(save)}");
            return 0;
        }));
        return command;
    }

    static Command Reshard()
    {
        var mm = new Option<string>("--mm-dir") { Required = true, Description = "MindSpeed-MM checkpoint root" };
        var save = new Option<string>("--save-mm-dir") { Required = true, Description = "Output root in the new layout" };
        var hf = new Option<string?>("--hf-dir") { Description = "Hugging Face folder whose config.json serves a checkpoint that has none (Megatron training saves)" };
        var command = new Command("reshard", "MindSpeed-MM layout → another TP/PP/VPP layout") { mm, save, hf };
        var layout = LayoutOptions.Add(command);
        var format = LayoutOptions.Format(command);
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            using IThinkerTensorSource source = OpenMm(parse.GetValue(mm)!, configFallback: parse.GetValue(hf));
            var target = layout.Read(parse, source.Config.Thinker);
            WithProgress("mm → mm", progress => CheckpointConverter.ToMm(source, target, parse.GetValue(save)!, progress, LayoutOptions.ReadFormat(parse, format)));
            Console.WriteLine($"wrote {parse.GetValue(save)} with layout {target.ToJson()}");
            return 0;
        }));
        return command;
    }

    /// <summary>Any checkpoint folder (MindSpeed-MM layout, training checkpoint of any layout, Hugging Face), LoRA adapters merged into <paramref name="baseHf"/>.</summary>
    static IThinkerTensorSource OpenMm(string root, string? baseHf = null, string? configFallback = null)
    {
        var located = OmniTune.Training.Checkpointing.CheckpointLocator.Locate(root, configFallback: configFallback);
        if (located.OpenWeights is not null) return located.Weights();
        if (baseHf is null) throw new ArgumentException($"{located.AdapterFolder} holds LoRA adapters only: pass --hf-dir with the base model to merge them into");
        var merged = new LoraMergedSource(new HfTensorSource(baseHf), located.AdapterFolder!);
        Console.WriteLine($"merging {merged.AdapterCount} LoRA adapters from {located.AdapterFolder} into {baseHf}");
        return merged;
    }

    static void WithProgress(string title, Action<IProgress<long>> work)
    {
        if (!ConsoleOutput.IsInteractive)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            long last = 0;
            work(new Progress<long>(bytes =>
            {
                if (clock.ElapsedMilliseconds - last < 5000) return;
                last = clock.ElapsedMilliseconds;
                Console.Error.WriteLine($"{title}: {bytes / 1e9:F2} GB, {bytes / 1e6 / Math.Max(0.001, clock.Elapsed.TotalSeconds):F0} MB/s");
            }));
            return;
        }
        AnsiConsole.Progress().Columns(new TaskDescriptionColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new ElapsedTimeColumn()).Start(context =>
        {
            var task = context.AddTask(title, maxValue: double.MaxValue);
            task.IsIndeterminate = true;
            work(new Progress<long>(bytes => task.Value = bytes));
        });
    }

    /// <summary>
    /// MindSpeed-MM's spelling: <c>mm-convert Qwen2_5_OmniConverter {hf_to_mm|mm_to_hf|resplit} --cfg.x value …</c>, mapped onto
    /// the commands above (resplit is a no-op for Omni there; here it reshards).
    /// </summary>
    public static Command CreateMmConvertAlias()
    {
        var command = new Command("mm-convert", "MindSpeed-MM's mm-convert spelling (Qwen2_5_OmniConverter hf_to_mm|mm_to_hf --cfg.…)") { TreatUnmatchedTokensAsErrors = false };
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            var tokens = parse.UnmatchedTokens.ToList();
            if (tokens.Count < 2 || tokens[0] != "Qwen2_5_OmniConverter")
                throw new ArgumentException("usage: mm-convert Qwen2_5_OmniConverter hf_to_mm|mm_to_hf|resplit --cfg.<field> <value> …");
            var cfg = new Dictionary<string, string>(StringComparer.Ordinal);
            for (int i = 2; i < tokens.Count; i++)
            {
                if (!tokens[i].StartsWith("--cfg.", StringComparison.Ordinal)) throw new ArgumentException($"unexpected '{tokens[i]}' (expected --cfg.<field>)");
                string key = tokens[i]["--cfg.".Length..];
                int eq = key.IndexOf('=', StringComparison.Ordinal);
                if (eq >= 0) cfg[key[..eq]] = key[(eq + 1)..];
                else cfg[key] = i + 1 < tokens.Count ? tokens[++i] : throw new ArgumentException($"--cfg.{key} needs a value");
            }
            string Get(string k) => cfg.TryGetValue(k, out string? v) ? v : throw new ArgumentException($"--cfg.{k} is required");
            var args = new List<string>();
            void Map(string cfgKey, string option)
            {
                if (cfg.TryGetValue(cfgKey, out string? v)) args.AddRange([option, v]);
            }
            switch (tokens[1])
            {
                case "hf_to_mm":
                    args.AddRange(["convert", "hf-to-mm", "--hf-dir", Get("hf_config.hf_dir"), "--mm-dir", Get("mm_dir")]);
                    break;
                case "mm_to_hf":
                    args.AddRange(["convert", "mm-to-hf", "--mm-dir", Get("mm_dir"), "--save-hf-dir", Get("save_hf_dir"), "--hf-dir", Get("hf_config.hf_dir")]);
                    break;
                case "resplit":
                    args.AddRange(["convert", "reshard", "--mm-dir", Get("source_dir"), "--save-mm-dir", Get("target_dir")]);
                    break;
                default:
                    throw new ArgumentException($"unknown operation '{tokens[1]}' (hf_to_mm, mm_to_hf, resplit)");
            }
            Map("parallel_config.llm_pp_layers", "--llm-pp-layers");
            Map("parallel_config.vit_pp_layers", "--vit-pp-layers");
            Map("parallel_config.audio_pp_layers", "--audio-pp-layers");
            Map("parallel_config.tp_size", "--tp-size");
            Map("parallel_config.vit_tp_size", "--vit-tp-size");
            Map("parallel_config.audio_tp_size", "--audio-tp-size");
            return Program.Main([.. args]);
        }));
        return command;
    }
}
