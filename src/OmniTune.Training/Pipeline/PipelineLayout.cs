using OmniTune.Distributed.Pipeline;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Training.Arguments;

namespace OmniTune.Training.Pipeline;

/// <summary>A run's pipeline: the plan and the per-tower tables it came from (the checkpoint layout).</summary>
/// <param name="Plan">Slots and what each runs.</param>
/// <param name="Vision">Vision encoder layers per (chunk, stage).</param>
/// <param name="Audio">Audio encoder layers per (chunk, stage).</param>
/// <param name="Decoder">Decoder layers per (chunk, stage).</param>
/// <param name="TensorSize">Tensor-parallel size of the decoder.</param>
/// <param name="VisionTensorSize">Tensor-parallel size of the vision encoder and projector.</param>
/// <param name="AudioTensorSize">Tensor-parallel size of the audio encoder.</param>
public sealed record PipelineSetup(StagePlan Plan, int[][] Vision, int[][] Audio, int[][] Decoder, int TensorSize = 1, int VisionTensorSize = 1, int AudioTensorSize = 1)
{
    /// <summary>The MindSpeed-MM checkpoint layout of this run (pipeline tables and TP sizes).</summary>
    public OmniTune.Checkpoints.Conversion.ParallelLayout Layout => new(Decoder, Vision, Audio, TensorSize, VisionTensorSize, AudioTensorSize);

    /// <summary>Whether checkpoints are written as MindSpeed rank folders (pipeline or tensor parallel) rather than one Hugging Face folder.</summary>
    public bool RankFolders => Plan.Stages > 1 || TensorSize > 1;
}

/// <summary>The stage plan of a run (flags and model.json's pipeline_num_layers) and the thinker parts one stage builds.</summary>
public static class PipelineLayout
{
    /// <summary>
    /// The plan for --pipeline-model-parallel-size P (and a virtual pipeline): each tower's pipeline_num_layers from
    /// model.json; without one, an encoder sits wholly on the first stage and, with P = 1, the decoder on the only one.
    /// </summary>
    public static PipelineSetup Plan(TrainingArguments args, ModelJsonConfig modelJson, Qwen25OmniThinkerConfig config)
    {
        int stages = args.PipelineSize;
        int chunks = modelJson.TextPipeline?.Length ?? 1;
        if (args.VirtualPipelineSize is int v && v != chunks)
        {
            throw new ArgumentException($"--virtual-pipeline-model-parallel-size {v}, but text_decoder.pipeline_num_layers in {args.ModelJson} has {chunks} " +
                                        $"row(s): give one row per virtual chunk ([[…],[…]]), as MindSpeed-MM requires");
        }
        if (args.LayersPerVirtualStage is int n && chunks > 1 && modelJson.TextPipeline!.Any(r => r.Any(c => c != n)))
            throw new ArgumentException($"--num-layers-per-virtual-pipeline-stage {n} disagrees with text_decoder.pipeline_num_layers in {args.ModelJson}");
        if (args.LayersPerVirtualStage is int m && chunks == 1)
        {
            if (config.Text.NumHiddenLayers % (stages * m) != 0)
                throw new ArgumentException($"--num-layers-per-virtual-pipeline-stage {m}: the decoder's {config.Text.NumHiddenLayers} layers are not a multiple of {stages} stages × {m}");
            chunks = config.Text.NumHiddenLayers / (stages * m);
        }
        int[][] Default(int layers, bool encoder) =>
            Enumerable.Range(0, chunks).Select(c => Enumerable.Range(0, stages).Select(s => encoder ? (c == 0 && s == 0 ? layers : 0)
                : chunks * stages == 1 ? layers : -1).ToArray()).ToArray();
        int[][] decoder = modelJson.TextPipeline ?? (args.LayersPerVirtualStage is int per && chunks > 1
            ? Enumerable.Range(0, chunks).Select(_ => Enumerable.Repeat(per, stages).ToArray()).ToArray()
            : stages == 1 ? Default(config.Text.NumHiddenLayers, encoder: false)
            : throw new ArgumentException($"--pipeline-model-parallel-size {stages} needs text_decoder.pipeline_num_layers in {args.ModelJson} " +
                                          "(the decoder layers of each stage, e.g. [1,10,10,7] for the 7B on 4 stages)"));
        int[][] vision = modelJson.VisionPipeline ?? Default(config.Vision.Depth, encoder: true), audio = modelJson.AudioPipeline ?? Default(config.Audio.EncoderLayers, encoder: true);
        var plan = StagePlan.Build(
            new StagePlan.Tower("image_encoder.vision_encoder", vision, config.Vision.Depth),
            new StagePlan.Tower("audio_encoder.audio_encoder", audio, config.Audio.EncoderLayers),
            new StagePlan.Tower("text_decoder", decoder, config.Text.NumHiddenLayers), stages, chunks);
        int Encoder(int? size, string module)
        {
            int chosen = size ?? args.TensorSize;
            if (args.TensorSize % chosen != 0)
                throw new ArgumentException($"{args.ModelJson}: {module}.tp {chosen} must divide --tensor-model-parallel-size {args.TensorSize} (an encoder's groups lie inside the decoder's)");
            return chosen;
        }
        return new PipelineSetup(plan, vision, audio, decoder, args.TensorSize, Encoder(modelJson.VisionTensorSize, "image_encoder"), Encoder(modelJson.AudioTensorSize, "audio_encoder"));
    }

    /// <summary>The thinker parts <paramref name="stage"/> builds: everything its slots (chunks) run.</summary>
    public static ThinkerParts PartsOf(StagePlan plan, int stage) =>
        plan.SlotsOf(stage).Select(s => new ThinkerParts(
            ThinkerParts.Range(s.Vision.From, s.Vision.To), s.PatchEmbed, s.Merger, ThinkerParts.Range(s.Audio.From, s.Audio.To), s.AudioFront, s.AudioBack,
            ThinkerParts.Range(s.Decoder.From, s.Decoder.To), s.Embedding, s.Head)).Aggregate(ThinkerParts.None, (a, b) => a.Union(b));
}
