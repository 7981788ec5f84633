namespace OmniTune.Tests.Models;

/// <summary>config.json texts carrying the 7B and 3B values of reference §1.2, in the real nesting.</summary>
public static class ReferenceConfigs
{
    public static string Omni(int vocab, int hidden, int intermediate, int layers, int heads, int kvHeads, string extraThinkerKey = "") => $$"""
        {
          "architectures": ["Qwen2_5OmniModel"],
          "model_type": "qwen2_5_omni",
          "enable_audio_output": true,
          "enable_talker": true,
          "torch_dtype": "bfloat16",
          "transformers_version": "4.50.0.dev0",
          "thinker_config": {
            "model_type": "qwen2_5_omni_thinker",
            "architectures": ["Qwen2OmniNaViTThinkerForConditionalGeneration"],
            "audio_token_index": 151646, "image_token_index": 151655, "video_token_index": 151656,
            "audio_start_token_id": 151647, "audio_end_token_id": 151648,
            "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
            "user_token_id": 872, "bos_token_id": 151644, "eos_token_id": 151645, "pad_token_id": 151643,
            "position_id_per_seconds": 25, "seconds_per_chunk": 2, "initializer_range": 0.02, {{extraThinkerKey}}
            "audio_config": {
              "model_type": "qwen2_5_omni_audio_encoder", "num_mel_bins": 128, "d_model": 1280, "encoder_layers": 32,
              "encoder_attention_heads": 20, "encoder_ffn_dim": 5120, "activation_function": "gelu",
              "max_source_positions": 1500, "n_window": 100, "output_dim": {{hidden}}, "scale_embedding": false,
              "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0, "encoder_layerdrop": 0.0, "init_std": 0.02
            },
            "vision_config": {
              "model_type": "qwen2_5_omni_vision_encoder", "depth": 32, "embed_dim": 1280, "hidden_size": 1280,
              "intermediate_size": 3420, "num_heads": 16, "hidden_act": "silu", "in_channels": 3, "in_chans": 3,
              "patch_size": 14, "spatial_patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2,
              "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "out_hidden_size": {{hidden}},
              "tokens_per_second": 25
            },
            "text_config": {
              "model_type": "qwen2_5_omni_text", "vocab_size": {{vocab}}, "hidden_size": {{hidden}},
              "intermediate_size": {{intermediate}}, "num_hidden_layers": {{layers}}, "num_attention_heads": {{heads}},
              "num_key_value_heads": {{kvHeads}}, "hidden_act": "silu", "max_position_embeddings": 32768,
              "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
              "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"},
              "use_sliding_window": false, "sliding_window": 32768, "max_window_layers": 28,
              "tie_word_embeddings": false, "attention_dropout": 0.0
            }
          },
          "talker_config": {"model_type": "qwen2_5_omni_talker", "hidden_size": 896},
          "token2wav_config": {"model_type": "qwen2_5_omni_token2wav"}
        }
        """;

    public static string SevenB(string extraThinkerKey = "") => Omni(152064, 3584, 18944, 28, 28, 4, extraThinkerKey);

    public static string ThreeB() => Omni(151936, 2048, 11008, 36, 16, 2);
}
