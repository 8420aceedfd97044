#include "convert/hf_config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/error.h"

namespace slm::convert {
namespace {

using Json = nlohmann::json;

// Bounds no real checkpoint comes near (as model/config.cpp's), so a hostile
// file cannot drive huge allocations.
constexpr int64_t kMaxDim = 1 << 20;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxExperts = 4096;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxCtx = int64_t{1} << 24;

struct Reader {
  const Json& j;
  const std::string& name;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error(name + ": " + key + ": " + what);
  }
  const Json* find(const char* key) const {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  int64_t integer(const char* key, int64_t lo, int64_t hi) const {
    const Json* v = find(key);
    if (!v) fail(key, "is missing");
    return range(key, *v, lo, hi);
  }
  int64_t integer_or(const char* key, int64_t fallback, int64_t lo, int64_t hi) const {
    const Json* v = find(key);
    return v ? range(key, *v, lo, hi) : fallback;
  }
  int64_t range(const std::string& key, const Json& v, int64_t lo, int64_t hi) const {
    if (!v.is_number_integer()) fail(key, "expected an integer");
    const int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
                          ? INT64_MAX
                          : v.get<int64_t>();
    if (x < lo || x > hi)
      fail(key, std::to_string(x) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return x;
  }
  float number_or(const char* key, float fallback, double lo, double hi) const {
    const Json* v = find(key);
    return v ? number(key, *v, lo, hi) : fallback;
  }
  float number(const std::string& key, const Json& v, double lo, double hi) const {
    if (!v.is_number()) fail(key, "expected a number");
    const double x = v.get<double>();
    if (!std::isfinite(x) || x < lo || x > hi)
      fail(key, std::to_string(x) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<float>(x);
  }
  bool boolean_or(const char* key, bool fallback) const {
    const Json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(key, "expected true or false");
    return v->get<bool>();
  }
  std::string string_or(const char* key, const std::string& fallback) const {
    const Json* v = find(key);
    if (!v) return fallback;
    if (!v->is_string()) fail(key, "expected a string");
    return v->get<std::string>();
  }
};

// Values transformers fills in when Gemma 3's text_config omits them
// (Gemma3TextConfig's defaults).
const Json& gemma3_text_defaults() {
  static const Json d = {{"vocab_size", 262208},        {"num_attention_heads", 8},
                         {"num_key_value_heads", 4},    {"head_dim", 256},
                         {"rms_norm_eps", 1e-6},        {"rope_theta", 1e6},
                         {"max_position_embeddings", 131072}, {"rope_local_base_freq", 10000.0},
                         {"sliding_window", 4096},      {"sliding_window_pattern", 6},
                         {"tie_word_embeddings", true}};
  return d;
}

void read_rope_scaling(const Reader& r, HfConfig& c) {
  const Json* rs = r.find("rope_scaling");
  if (!rs) return;
  if (!rs->is_object()) r.fail("rope_scaling", "expected an object or null");
  const Reader s{*rs, r.name};
  std::string type = s.string_or("rope_type", "");
  if (type.empty()) type = s.string_or("type", "");
  auto factors = [&](const char* key) {
    const Json* v = s.find(key);
    if (!v || !v->is_array()) s.fail(std::string("rope_scaling.") + key, "expected an array of numbers");
    if (static_cast<int64_t>(v->size()) != c.n_rot / 2)
      s.fail(std::string("rope_scaling.") + key,
             "has " + std::to_string(v->size()) + " values, the rotated dimensions need " + std::to_string(c.n_rot / 2));
    std::vector<float> out;
    for (const Json& x : *v) out.push_back(s.number(std::string("rope_scaling.") + key, x, 1e-6, 1e6));
    return out;
  };
  if (type.empty()) s.fail("rope_scaling.rope_type", "is missing");
  if (type == "default") return;
  if (type == "linear") {
    c.rope_scaling = HfRopeScaling::kLinear;
    c.rope_factor = s.number_or("factor", 1.0f, 1e-6, 1e6);
  } else if (type == "llama3") {
    c.rope_scaling = HfRopeScaling::kLlama3;
    c.rope_factor = s.number_or("factor", 8.0f, 1e-6, 1e6);
    c.rope_low_freq = s.number_or("low_freq_factor", 1.0f, 1e-6, 1e6);
    c.rope_high_freq = s.number_or("high_freq_factor", 4.0f, 1e-6, 1e6);
    c.rope_orig_ctx = s.integer_or("original_max_position_embeddings", 8192, 1, kMaxCtx);
    if (c.rope_high_freq <= c.rope_low_freq)
      s.fail("rope_scaling.high_freq_factor", "must exceed low_freq_factor");
  } else if ((type == "longrope" || type == "su") && c.family->name == "phi3") {
    c.rope_scaling = HfRopeScaling::kLongRope;
    c.rope_long_factor = factors("long_factor");
    c.rope_short_factor = factors("short_factor");
    c.rope_orig_ctx = r.integer("original_max_position_embeddings", 1, kMaxCtx);
  } else {
    s.fail("rope_scaling.rope_type", "'" + type + "' is not supported (supported: linear, llama3" +
                                         std::string(c.family->name == "phi3" ? ", longrope" : "") + ")");
  }
}

}  // namespace

const std::vector<HfArch>& hf_architectures() {
  static const std::vector<HfArch> kArchs = {
      {"LlamaForCausalLM", "llama", true, false, false},
      {"MistralForCausalLM", "llama", true, false, false},
      {"MixtralForCausalLM", "llama", true, false, false},
      {"Qwen2ForCausalLM", "qwen2", false, false, false},
      {"Qwen3ForCausalLM", "qwen3", false, false, false},
      {"Qwen3MoeForCausalLM", "qwen3moe", false, false, false},
      {"Phi3ForCausalLM", "phi3", false, false, false},
      {"Gemma2ForCausalLM", "gemma2", false, true, false},
      {"Gemma3ForCausalLM", "gemma3", false, true, false},
      {"Gemma3ForConditionalGeneration", "gemma3", false, true, true},
  };
  return kArchs;
}

std::string hf_architecture_names() {
  std::string s;
  for (const HfArch& a : hf_architectures()) s += (s.empty() ? "" : ", ") + std::string(a.hf_name);
  return s;
}

HfConfig parse_hf_config(std::string_view json, const std::string& name) {
  HfConfig c;
  try {
    const Json root = Json::parse(json.begin(), json.end());
    if (!root.is_object()) throw Error(name + ": expected a JSON object");
    const Reader top{root, name};
    const Json* archs = top.find("architectures");
    if (!archs || !archs->is_array() || archs->empty() || !(*archs)[0].is_string())
      top.fail("architectures", "expected a list naming the model class");
    const std::string hf = (*archs)[0].get<std::string>();
    for (const HfArch& a : hf_architectures())
      if (a.hf_name == hf) c.arch = &a;
    if (!c.arch)
      top.fail("architectures", "'" + hf + "' is not supported (supported: " + hf_architecture_names() + ")");
    c.family = model::find_family(c.arch->gguf_arch);
    if (!c.family) top.fail("architectures", "no slm family for '" + hf + "'");

    // Gemma 3 (multimodal): the language model's values, over transformers' defaults.
    Json merged;
    const Json* params = &root;
    if (c.arch->gguf_arch == "gemma3") {
      merged = gemma3_text_defaults();
      const Json* text = c.arch->text_config ? top.find("text_config") : &root;
      if (!text || !text->is_object()) top.fail("text_config", "expected an object");
      for (auto it = text->begin(); it != text->end(); ++it) merged[it.key()] = it.value();
      params = &merged;
    }
    const Reader r{*params, c.arch->text_config ? name + ": text_config" : name};

    c.n_embd = r.integer("hidden_size", 1, kMaxDim);
    c.n_layer = r.integer("num_hidden_layers", 1, kMaxLayers);
    c.n_head = r.integer("num_attention_heads", 1, kMaxHeads);
    c.n_head_kv = r.integer_or("num_key_value_heads", c.n_head, 1, c.n_head);
    if (c.n_head % c.n_head_kv != 0) r.fail("num_key_value_heads", "does not divide num_attention_heads");
    c.explicit_head_dim = r.find("head_dim") != nullptr;
    c.head_dim = r.integer_or("head_dim", c.n_embd % c.n_head == 0 ? c.n_embd / c.n_head : 0, 0, kMaxDim);
    if (c.head_dim <= 0 || c.head_dim % 2 != 0)
      r.fail("head_dim", "must be positive and even (hidden_size / num_attention_heads when absent)");
    const float partial = r.number_or("partial_rotary_factor", 1.0f, 1e-3, 1.0);
    c.n_rot = static_cast<int64_t>(std::lround(c.head_dim * static_cast<double>(partial)));
    if (c.n_rot < 2 || c.n_rot % 2 != 0) r.fail("partial_rotary_factor", "gives an odd or empty rotation");
    c.n_ff = r.integer("intermediate_size", 1, kMaxDim);
    c.n_vocab = r.integer("vocab_size", 1, kMaxVocab);
    c.n_ctx = r.integer_or("max_position_embeddings", 2048, 1, kMaxCtx);
    c.rope_base = r.number_or("rope_theta", 10000.0f, 1.0, 1e12);
    c.norm_eps = r.number_or("rms_norm_eps", 1e-5f, 0.0, 1.0);
    c.tied = r.boolean_or("tie_word_embeddings", c.arch->norm_plus_one);  // Gemma ties by default
    if (c.arch->text_config) c.tied = top.boolean_or("tie_word_embeddings", c.tied);
    c.attention_bias = r.boolean_or("attention_bias", false);
    if (r.boolean_or("mlp_bias", false)) r.fail("mlp_bias", "MLP biases are not supported");

    const std::string act = r.string_or("hidden_act", r.string_or("hidden_activation", ""));
    const bool gelu = c.family->ffn_act == model::FfnActivation::kGeluTanh;
    if (!act.empty() && (gelu ? act.rfind("gelu", 0) != 0 : act != "silu"))
      r.fail("hidden_act", "'" + act + "' is not supported for " + std::string(c.arch->hf_name) + " (expected " +
                               (gelu ? "gelu_pytorch_tanh" : "silu") + ")");

    read_rope_scaling(r, c);

    // Sliding windows and soft-caps (families whose layers use them).
    if (c.family->swa != model::SwaPattern::kNone) {
      const bool use_swa = r.boolean_or("use_sliding_window", true);
      c.n_swa = use_swa ? r.integer_or("sliding_window", 0, 0, kMaxCtx) : 0;
    } else if (r.boolean_or("use_sliding_window", false) && r.find("sliding_window")) {
      r.fail("use_sliding_window", "sliding-window attention is not supported for " + std::string(c.arch->hf_name));
    }
    if (c.arch->gguf_arch == "gemma2") {
      c.attn_softcap = r.number_or("attn_logit_softcapping", 0.0f, 0.0, 1e6);
      c.final_softcap = r.number_or("final_logit_softcapping", 0.0f, 0.0, 1e6);
    }
    if (c.arch->gguf_arch == "gemma3") {
      if (r.integer_or("sliding_window_pattern", 6, 1, kMaxLayers) != 6)
        r.fail("sliding_window_pattern", "only 6 (five local layers, one global) is supported");
      if (r.number_or("rope_local_base_freq", 10000.0f, 1.0, 1e12) != c.family->swa_rope_base)
        r.fail("rope_local_base_freq", "only 10000 is supported");
      if (r.find("final_logit_softcapping") || r.find("attn_logit_softcapping"))
        r.fail("final_logit_softcapping", "soft-capping is not supported for Gemma 3");
    }

    // Mixture of experts.
    if (c.arch->hf_name == "MixtralForCausalLM") {
      c.n_expert = r.integer("num_local_experts", 1, kMaxExperts);
      c.n_expert_used = r.integer("num_experts_per_tok", 1, c.n_expert);
      c.n_ff_expert = c.n_ff;
    } else if (c.family->needs_experts) {
      c.n_expert = r.integer("num_experts", 1, kMaxExperts);
      c.n_expert_used = r.integer("num_experts_per_tok", 1, c.n_expert);
      c.n_ff_expert = r.integer("moe_intermediate_size", 1, kMaxDim);
      if (r.integer_or("decoder_sparse_step", 1, 0, kMaxLayers) != 1)
        r.fail("decoder_sparse_step", "only 1 (every layer a mixture of experts) is supported");
      if (const Json* mlp = r.find("mlp_only_layers"); mlp && (!mlp->is_array() || !mlp->empty()))
        r.fail("mlp_only_layers", "dense layers in a mixture-of-experts model are not supported");
      if (r.find("norm_topk_prob")) c.expert_weights_norm = r.boolean_or("norm_topk_prob", true) ? 1 : 0;
    } else if (r.integer_or("num_experts", 0, 0, kMaxExperts) > 0 || r.integer_or("num_local_experts", 0, 0, kMaxExperts) > 0) {
      r.fail("num_experts", "experts are not supported for " + std::string(c.arch->hf_name));
    }

    auto token_id = [&](const char* key) -> int64_t {
      const Json* v = top.find(key);
      if (v && v->is_array() && !v->empty()) v = &(*v)[0];
      return v && v->is_number_integer() ? top.range(key, *v, 0, kMaxVocab) : -1;
    };
    c.bos_id = token_id("bos_token_id");
    c.eos_id = token_id("eos_token_id");
  } catch (const Json::exception& e) {
    throw Error(name + ": invalid JSON: " + e.what());
  }
  return c;
}

}  // namespace slm::convert
