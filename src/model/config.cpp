#include "model/config.h"

#include <cmath>

#include "base/error.h"
#include "gguf/writer.h"

namespace slm::model {
namespace {

// Upper bounds that no real checkpoint comes near; they keep hostile metadata
// from driving huge allocations (n_embd * n_ctx ...) before tensors are checked.
constexpr int64_t kMaxDim = 1 << 20;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxExperts = 4096;

struct Reader {
  const gguf::File& f;
  std::string prefix;

  std::string key(const char* k) const { return prefix + "." + k; }

  [[noreturn]] void fail(const std::string& k, const std::string& what) const {
    throw Error(f.name() + ": metadata key '" + k + "' " + what);
  }

  int64_t integer(const char* k, int64_t lo, int64_t hi) const {
    const std::string name = key(k);
    const auto v = f.get_int(name);
    if (!v) fail(name, "is missing");
    if (*v < lo || *v > hi)
      fail(name, "is " + std::to_string(*v) + ", outside [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
    return *v;
  }

  int64_t integer_or(const char* k, int64_t fallback, int64_t lo, int64_t hi) const {
    if (!f.find(key(k))) return fallback;
    return integer(k, lo, hi);
  }

  float number_or(const char* k, float fallback, float lo, float hi) const {
    const std::string name = key(k);
    const auto v = f.get_float(name);
    if (!v) return fallback;
    if (!std::isfinite(*v) || *v < lo || *v > hi)
      fail(name, "is " + std::to_string(*v) + ", outside [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
    return static_cast<float>(*v);
  }
};

}  // namespace

ModelConfig read_config(const gguf::File& file) {
  ModelConfig c;
  const auto arch = file.get_string("general.architecture");
  if (!arch) throw Error(file.name() + ": metadata key 'general.architecture' is missing");
  c.arch_name = std::string(*arch);
  c.family = find_family(*arch);
  if (c.family == nullptr)
    throw Error(file.name() + ": unsupported architecture '" + c.arch_name + "' (supported: " + family_names() + ")");
  const Reader r{file, c.arch_name};

  c.n_embd = r.integer("embedding_length", 1, kMaxDim);
  c.n_layer = r.integer("block_count", 1, kMaxLayers);
  c.n_head = r.integer("attention.head_count", 1, kMaxHeads);
  c.n_head_kv = r.integer_or("attention.head_count_kv", c.n_head, 1, c.n_head);
  if (c.n_head % c.n_head_kv != 0)
    r.fail(r.key("attention.head_count_kv"), "does not divide attention.head_count");
  const int64_t default_head_dim = c.n_embd % c.n_head == 0 ? c.n_embd / c.n_head : 0;
  c.head_dim = r.integer_or("attention.key_length", default_head_dim, 1, kMaxDim);
  if (c.head_dim == 0)
    r.fail(r.key("attention.key_length"), "is missing and n_embd is not a multiple of n_head");
  c.head_dim_v = r.integer_or("attention.value_length", c.head_dim, 1, kMaxDim);
  if (c.head_dim_v != c.head_dim)
    r.fail(r.key("attention.value_length"), "differs from attention.key_length (unsupported)");
  c.n_ff = r.integer_or("feed_forward_length", 0, 0, kMaxDim);
  c.n_ctx_train = r.integer_or("context_length", 2048, 1, int64_t{1} << 24);
  c.norm_eps = r.number_or("attention.layer_norm_rms_epsilon", 1e-5f, 0.0f, 1.0f);

  c.rope_order = c.family->rope_order;
  c.n_rot = r.integer_or("rope.dimension_count", c.head_dim, 2, c.head_dim);
  if (c.n_rot % 2 != 0) r.fail(r.key("rope.dimension_count"), "must be even");
  c.rope_base = r.number_or("rope.freq_base", 10000.0f, 1.0f, 1e12f);
  if (const auto type = file.get_string(r.key("rope.scaling.type"))) {
    if (*type == "none") {
      c.rope_scaling = RopeScaling::kNone;
    } else if (*type == "linear") {
      c.rope_scaling = RopeScaling::kLinear;
    } else if (*type == "llama3") {
      c.rope_scaling = RopeScaling::kLlama3;
    } else {
      r.fail(r.key("rope.scaling.type"), "is '" + std::string(*type) + "' (supported: none, linear, llama3)");
    }
  }
  c.rope_scale_factor = r.number_or("rope.scaling.factor", 1.0f, 1e-6f, 1e6f);
  // Older files give the linear factor as "rope.scale_linear".
  if (c.rope_scaling == RopeScaling::kNone && file.find(r.key("rope.scale_linear"))) {
    c.rope_scale_factor = r.number_or("rope.scale_linear", 1.0f, 1e-6f, 1e6f);
    if (c.rope_scale_factor != 1.0f) c.rope_scaling = RopeScaling::kLinear;
  }
  c.rope_low_freq_factor = r.number_or("rope.scaling.low_freq_factor", 1.0f, 1e-6f, 1e6f);
  c.rope_high_freq_factor = r.number_or("rope.scaling.high_freq_factor", 4.0f, 1e-6f, 1e6f);
  c.rope_orig_ctx = r.integer_or("rope.scaling.original_context_length", 8192, 1, int64_t{1} << 24);
  if (c.rope_scaling == RopeScaling::kLlama3 && c.rope_high_freq_factor <= c.rope_low_freq_factor)
    r.fail(r.key("rope.scaling.high_freq_factor"), "must exceed rope.scaling.low_freq_factor");

  c.n_expert = r.integer_or("expert_count", 0, 0, kMaxExperts);
  if (c.n_expert > 0) {
    c.n_expert_used = r.integer("expert_used_count", 1, c.n_expert);
    c.n_ff_expert = r.integer_or("expert_feed_forward_length", c.n_ff, 1, kMaxDim);
    if (const auto norm = file.get_bool(r.key("expert_weights_norm"))) c.expert_weights_norm = *norm;
  } else if (c.family->needs_experts) {
    r.fail(r.key("expert_count"), "is missing (" + std::string(c.family->name) + " needs experts)");
  }
  if (!c.is_moe() && c.n_ff <= 0) r.fail(r.key("feed_forward_length"), "is missing");

  // Attention and output shaping; families without these keys keep them off.
  const Family& fam = *c.family;
  c.rope_attn_factor = r.number_or("rope.scaling.attn_factor", 1.0f, 1e-3f, 1e3f);
  c.n_swa = r.integer_or("attention.sliding_window", 0, 0, int64_t{1} << 24);
  c.attn_softcap = r.number_or("attn_logit_softcapping", 0.0f, 0.0f, 1e6f);
  c.final_softcap = r.number_or("final_logit_softcapping", 0.0f, 0.0f, 1e6f);
  const bool q_by_embd = fam.q_scale_by_embd_at_layers > 0 && c.n_layer == fam.q_scale_by_embd_at_layers;
  c.attn_scale = 1.0f / std::sqrt(static_cast<float>(q_by_embd ? c.n_embd / c.n_head : c.head_dim));
  c.embd_scale = fam.scale_embeddings ? std::sqrt(static_cast<float>(c.n_embd)) : 1.0f;
  c.ffn_act = fam.ffn_act;
  c.rope_base_swa = fam.swa_rope_base;
  c.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    LayerConfig& l = c.layers[static_cast<size_t>(il)];
    l.sliding = c.n_swa > 0 && is_sliding(fam.swa, il);
    l.rope_table = l.sliding && c.rope_base_swa > 0 ? 1 : 0;
  }
  return c;
}

void write_core_hparams(gguf::Writer& w, const CoreHparams& h) {
  const std::string& a = h.arch;
  auto u32 = [](int64_t v) { return static_cast<uint32_t>(v); };
  w.add_u32(a + ".context_length", u32(h.n_ctx));
  w.add_u32(a + ".embedding_length", u32(h.n_embd));
  w.add_u32(a + ".block_count", u32(h.n_layer));
  w.add_u32(a + ".feed_forward_length", u32(h.n_ff));
  w.add_u32(a + ".attention.head_count", u32(h.n_head));
  w.add_u32(a + ".attention.head_count_kv", u32(h.n_head_kv));
  if (h.head_dim > 0) {
    w.add_u32(a + ".attention.key_length", u32(h.head_dim));
    w.add_u32(a + ".attention.value_length", u32(h.head_dim));
  }
  if (h.n_rot > 0) w.add_u32(a + ".rope.dimension_count", u32(h.n_rot));
  w.add_f32(a + ".rope.freq_base", h.rope_base);
  w.add_f32(a + ".attention.layer_norm_rms_epsilon", h.norm_eps);
}

}  // namespace slm::model
