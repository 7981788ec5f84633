namespace OmniTune.Models.Qwen25Omni.Config;

/// <summary>Keys every Hugging Face <c>PretrainedConfig</c> may carry that do not affect the thinker's numerics.</summary>
static class HuggingFaceConfigKeys
{
    /// <summary>Known keys we deliberately do not use.</summary>
    public static readonly IReadOnlySet<string> Ignored = new HashSet<string>(StringComparer.Ordinal)
    {
        "architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "_name_or_path", "_attn_implementation",
        "_attn_implementation_autoset", "use_cache", "initializer_range", "init_std", "return_dict", "output_hidden_states",
        "output_attentions", "torchscript", "use_bfloat16", "tie_encoder_decoder", "is_encoder_decoder", "is_decoder",
        "add_cross_attention", "chunk_size_feed_forward", "pruned_heads", "problem_type", "tokenizer_class", "prefix",
        "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id", "task_specific_params",
        "finetuning_task", "id2label", "label2id", "cross_attention_hidden_size", "tf_legacy_loss", "use_return_dict",
        "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
        "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate",
        "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
        "suppress_tokens", "begin_suppress_tokens", "tie_word_embeddings", "layer_types",
    };
}
