// config.json reading: the architectures slm converts, their values, and
// refusals that name what is unsupported.
#include "convert/hf_config.h"

#include <gtest/gtest.h>

#include <string>

#include "base/error.h"

namespace slm::convert {
namespace {

std::string error_of(const std::string& json) {
  try {
    parse_hf_config(json, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const char* kLlama = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-05,
  "rope_theta": 500000.0, "max_position_embeddings": 8192, "vocab_size": 1000, "tie_word_embeddings": true,
  "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": [2, 3]})";

TEST(HfConfig, ReadsLlama) {
  const HfConfig c = parse_hf_config(kLlama, "config.json");
  EXPECT_EQ(c.arch->gguf_arch, "llama");
  EXPECT_TRUE(c.arch->permute_qk);
  EXPECT_EQ(c.family->name, "llama");
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_FALSE(c.explicit_head_dim);
  EXPECT_EQ(c.n_rot, 16);
  EXPECT_EQ(c.n_ff, 128);
  EXPECT_EQ(c.n_ctx, 8192);
  EXPECT_FLOAT_EQ(c.rope_base, 5e5f);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_TRUE(c.tied);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);
  EXPECT_EQ(c.rope_scaling, HfRopeScaling::kNone);
}

std::string with(const std::string& extra) {
  std::string s = kLlama;
  s.insert(s.size() - 1, ", " + extra);
  return s;
}

TEST(HfConfig, RopeScaling) {
  const HfConfig l3 = parse_hf_config(with(R"("rope_scaling": {"rope_type": "llama3", "factor": 32.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})"), "c");
  EXPECT_EQ(l3.rope_scaling, HfRopeScaling::kLlama3);
  EXPECT_FLOAT_EQ(l3.rope_factor, 32.0f);
  const HfConfig lin = parse_hf_config(with(R"("rope_scaling": {"type": "linear", "factor": 2.0})"), "c");
  EXPECT_EQ(lin.rope_scaling, HfRopeScaling::kLinear);
  EXPECT_EQ(parse_hf_config(with(R"("rope_scaling": null)"), "c").rope_scaling, HfRopeScaling::kNone);
  const std::string yarn = error_of(with(R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0})"));
  EXPECT_NE(yarn.find("'yarn' is not supported"), std::string::npos) << yarn;
  EXPECT_NE(yarn.find("config.json"), std::string::npos) << yarn;
  EXPECT_NE(error_of(with(R"("rope_scaling": {"rope_type": "dynamic", "factor": 4.0})")).find("'dynamic'"),
            std::string::npos);
  EXPECT_NE(error_of(with(R"("rope_scaling": {"factor": 4.0})")).find("rope_type"), std::string::npos);
  EXPECT_NE(error_of(with(R"("rope_scaling": {"rope_type": "longrope"})")).find("'longrope'"), std::string::npos);
}

TEST(HfConfig, RefusesUnknownArchitecturesAndFeaturesByName) {
  const std::string gpt = error_of(R"({"architectures": ["GPTNeoXForCausalLM"], "hidden_size": 8})");
  EXPECT_NE(gpt.find("'GPTNeoXForCausalLM' is not supported"), std::string::npos) << gpt;
  EXPECT_NE(gpt.find("Qwen3MoeForCausalLM"), std::string::npos) << gpt;  // lists what is
  EXPECT_NE(error_of(R"({"hidden_size": 8})").find("architectures"), std::string::npos);
  EXPECT_NE(error_of(with(R"("mlp_bias": true)")).find("mlp_bias"), std::string::npos);
  const std::string act = error_of(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "hidden_act": "relu"})");
  EXPECT_NE(act.find("'relu'"), std::string::npos) << act;
  EXPECT_NE(error_of(with(R"("num_local_experts": 4)")).find("experts"), std::string::npos);
}

TEST(HfConfig, RefusesBadValuesAndBadJson) {
  EXPECT_NE(error_of("{not json").find("invalid JSON"), std::string::npos);
  EXPECT_NE(error_of("[1]").find("expected a JSON object"), std::string::npos);
  EXPECT_NE(error_of(R"({"architectures": "LlamaForCausalLM"})").find("architectures"), std::string::npos);
  EXPECT_FALSE(error_of(with(R"("num_attention_heads": 3)")).empty());
  EXPECT_NE(error_of(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": -1})").find("hidden_size"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": "64"})").find("hidden_size"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 10})")
                .find("num_key_value_heads"),
            std::string::npos);
  EXPECT_FALSE(error_of(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "rope_theta": 1e400})")
                   .empty());
}

TEST(HfConfig, Qwen3MoeAndMixtral) {
  const HfConfig q = parse_hf_config(R"({"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 32,
    "intermediate_size": 96, "moe_intermediate_size": 16, "num_experts": 8, "num_experts_per_tok": 2,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "vocab_size": 100, "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": []})", "c");
  EXPECT_EQ(q.arch->gguf_arch, "qwen3moe");
  EXPECT_EQ(q.n_expert, 8);
  EXPECT_EQ(q.n_expert_used, 2);
  EXPECT_EQ(q.n_ff_expert, 16);
  EXPECT_EQ(q.expert_weights_norm, 1);
  EXPECT_TRUE(q.explicit_head_dim);
  EXPECT_NE(error_of(R"({"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 32, "intermediate_size": 96,
    "moe_intermediate_size": 16, "num_experts": 8, "num_experts_per_tok": 2, "num_hidden_layers": 2,
    "num_attention_heads": 4, "vocab_size": 100, "mlp_only_layers": [1]})")
                .find("mlp_only_layers"),
            std::string::npos);
  const HfConfig m = parse_hf_config(R"({"architectures": ["MixtralForCausalLM"], "hidden_size": 32,
    "intermediate_size": 64, "num_local_experts": 4, "num_experts_per_tok": 2, "num_hidden_layers": 1,
    "num_attention_heads": 4, "num_key_value_heads": 1, "vocab_size": 100, "sliding_window": null})", "c");
  EXPECT_EQ(m.arch->gguf_arch, "llama");
  EXPECT_EQ(m.n_expert, 4);
  EXPECT_EQ(m.n_ff_expert, 64);
}

TEST(HfConfig, GemmaFamilies) {
  const HfConfig g2 = parse_hf_config(R"({"architectures": ["Gemma2ForCausalLM"], "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
    "head_dim": 16, "vocab_size": 100, "hidden_activation": "gelu_pytorch_tanh", "sliding_window": 16,
    "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "query_pre_attn_scalar": 16})", "c");
  EXPECT_TRUE(g2.arch->norm_plus_one);
  EXPECT_TRUE(g2.tied);
  EXPECT_EQ(g2.n_swa, 16);
  EXPECT_FLOAT_EQ(g2.attn_softcap, 50.0f);
  EXPECT_FLOAT_EQ(g2.final_softcap, 30.0f);
  // Gemma 3 multimodal: the text part, over transformers' defaults.
  const HfConfig g3 = parse_hf_config(R"({"architectures": ["Gemma3ForConditionalGeneration"],
    "text_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 6, "sliding_window": 32,
    "rope_scaling": {"rope_type": "linear", "factor": 8.0}}, "vision_config": {}})", "c");
  EXPECT_EQ(g3.arch->gguf_arch, "gemma3");
  EXPECT_EQ(g3.n_head, 8);
  EXPECT_EQ(g3.n_head_kv, 4);
  EXPECT_EQ(g3.head_dim, 256);
  EXPECT_EQ(g3.n_vocab, 262208);
  EXPECT_EQ(g3.n_swa, 32);
  EXPECT_EQ(g3.rope_scaling, HfRopeScaling::kLinear);
  EXPECT_TRUE(g3.tied);
  EXPECT_NE(error_of(R"({"architectures": ["Gemma3ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 6, "sliding_window_pattern": 4})")
                .find("sliding_window_pattern"),
            std::string::npos);
}

}  // namespace
}  // namespace slm::convert
