#include "model/arch.h"

#include "model/config.h"
#include "model/weights.h"

namespace slm::model {
namespace {

using backend::Role;
using D = Dim;

TensorSpec spec(const char* name, Kind kind, std::vector<Dim> shape, Need need, Role role = Role::kQ) {
  TensorSpec t;
  t.name = name;
  t.kind = kind;
  t.shape = std::move(shape);
  t.need = need;
  t.role = role;
  return t;
}

TensorSpec vec(const char* name, D d, Need need, std::vector<float> LayerWeights::*field, Init init = {1.0f, 0.1f}) {
  TensorSpec t = spec(name, Kind::kVector, {d}, need);
  t.init = init;
  t.vector = field;
  return t;
}

TensorSpec mat(const char* name, D in, D out, Need need, Role role, backend::Linear LayerWeights::*field,
               float spread = 1.0f) {
  TensorSpec t = spec(name, Kind::kMatrix, {in, out}, need, role);
  t.init = {0.0f, spread};
  t.matrix = field;
  return t;
}

TensorSpec experts(const char* name, D in, D out, Role role, std::vector<backend::Linear> LayerWeights::*field) {
  TensorSpec t = spec(name, Kind::kExperts, {in, out, D::kExpert}, Need::kMoe, role);
  t.experts = field;
  return t;
}

Family family(std::string_view name, std::vector<std::string_view> aliases, RopeOrder rope, bool needs_experts,
              bool writes_expert_ff, std::vector<TensorSpec> globals, std::vector<TensorSpec> layer) {
  Family f;
  f.name = name;
  f.aliases = std::move(aliases);
  f.rope_order = rope;
  f.needs_experts = needs_experts;
  f.writes_expert_ff_length = writes_expert_ff;
  f.globals = std::move(globals);
  f.layer = std::move(layer);
  return f;
}

TensorSpec fused(const char* name, D in, std::vector<TensorSpec::Part> parts) {
  TensorSpec t = spec(name, Kind::kFused, {in}, Need::kRequired);
  t.parts = std::move(parts);
  return t;
}

// token_embd, output_norm, output (tied to token_embd when absent) and the
// optional Llama 3.1 RoPE divisors: the same in every family here.
std::vector<TensorSpec> globals() {
  TensorSpec embd = spec("token_embd.weight", Kind::kTable, {D::kEmbd, D::kVocab}, Need::kRequired);
  embd.init = {0.0f, 1.0f};
  embd.global_table = &ModelWeights::token_embd;
  TensorSpec norm = spec("output_norm.weight", Kind::kVector, {D::kEmbd}, Need::kRequired);
  norm.init = {1.0f, 0.1f};
  norm.global_vector = &ModelWeights::output_norm;
  TensorSpec out = spec("output.weight", Kind::kMatrix, {D::kEmbd, D::kVocab}, Need::kOptional, Role::kOutput);
  out.global_matrix = &ModelWeights::output;
  TensorSpec freqs = spec("rope_freqs.weight", Kind::kVector, {D::kRotHalf}, Need::kOptional);
  freqs.global_vector = &ModelWeights::rope_freqs;
  return {embd, norm, out, freqs};
}

// Phi-3's LongRoPE: per-pair divisors for contexts within the original
// length (short) and beyond it (long).
std::vector<TensorSpec> longrope_globals() {
  std::vector<TensorSpec> g = globals();
  for (auto [name, field] : {std::pair{"rope_factors_long.weight", &ModelWeights::rope_factors_long},
                             std::pair{"rope_factors_short.weight", &ModelWeights::rope_factors_short}}) {
    TensorSpec t = spec(name, Kind::kVector, {D::kRotHalf}, Need::kOptional);
    t.init = {1.0f, 0.5f};  // divisors around 1 (synth)
    t.global_vector = field;
    g.push_back(t);
  }
  return g;
}

// Phi-3: q, k and v in one matrix, gate and up in one (ffn_up holds both).
std::vector<TensorSpec> phi3_block() {
  using L = LayerWeights;
  return {
      vec("attn_norm.weight", D::kEmbd, Need::kRequired, &L::attn_norm),
      fused("attn_qkv.weight", D::kEmbd,
            {{D::kQ, &L::wq, Role::kQ}, {D::kKv, &L::wk, Role::kK}, {D::kV, &L::wv, Role::kV}}),
      mat("attn_output.weight", D::kOut, D::kEmbd, Need::kRequired, Role::kO, &L::wo),
      vec("ffn_norm.weight", D::kEmbd, Need::kRequired, &L::ffn_norm),
      fused("ffn_up.weight", D::kEmbd, {{D::kFf, &L::ffn_gate, Role::kGate}, {D::kFf, &L::ffn_up, Role::kUp}}),
      mat("ffn_down.weight", D::kFf, D::kEmbd, Need::kRequired, Role::kDown, &L::ffn_down),
  };
}

std::vector<TensorSpec> block(Need bias, Need qk_norm, bool dense, bool moe);

// Gemma 2/3: a norm after attention and after the feed-forward too (their
// GGUF weights already hold Gemma's 1 + w); Gemma 3 adds per-head q/k norms.
std::vector<TensorSpec> gemma_block(Need qk_norm) {
  using L = LayerWeights;
  std::vector<TensorSpec> t = block(Need::kOptional, qk_norm, true, false);
  auto after = [&t](const char* name, TensorSpec v) {
    for (size_t i = 0; i < t.size(); ++i)
      if (std::string_view(t[i].name) == name) {
        t.insert(t.begin() + static_cast<std::ptrdiff_t>(i) + 1, std::move(v));
        return;
      }
  };
  after("attn_output.weight", vec("post_attention_norm.weight", D::kEmbd, Need::kRequired, &L::post_attn_norm));
  t.push_back(vec("post_ffw_norm.weight", D::kEmbd, Need::kRequired, &L::post_ffn_norm));
  return t;
}

Family gemma(std::string_view name, Need qk_norm, SwaPattern swa, float swa_base, int64_t big_layers) {
  Family f = family(name, {name}, RopeOrder::kNeox, false, false, globals(), gemma_block(qk_norm));
  f.ffn_act = FfnActivation::kGeluTanh;
  f.swa = swa;
  f.swa_rope_base = swa_base;
  f.scale_embeddings = true;
  f.q_scale_by_embd_at_layers = big_layers;
  return f;
}

// A pre-norm transformer block with grouped-query attention and a SwiGLU
// feed-forward that is dense or a mixture of experts by the config.
// bias / qk_norm: whether the family requires the q/k/v biases (qwen2) or
// the per-head q/k RMSNorm (qwen3); otherwise they are optional (some llama
// fine-tunes carry biases).
std::vector<TensorSpec> block(Need bias, Need qk_norm, bool dense, bool moe) {
  using L = LayerWeights;
  std::vector<TensorSpec> t = {
      vec("attn_norm.weight", D::kEmbd, Need::kRequired, &L::attn_norm),
      mat("attn_q.weight", D::kEmbd, D::kQ, Need::kRequired, Role::kQ, &L::wq),
      mat("attn_k.weight", D::kEmbd, D::kKv, Need::kRequired, Role::kK, &L::wk),
      mat("attn_v.weight", D::kEmbd, D::kV, Need::kRequired, Role::kV, &L::wv),
      mat("attn_output.weight", D::kOut, D::kEmbd, Need::kRequired, Role::kO, &L::wo),
      vec("attn_q.bias", D::kQ, bias, &L::bq, {0.0f, 0.1f}),
      vec("attn_k.bias", D::kKv, bias, &L::bk, {0.0f, 0.1f}),
      vec("attn_v.bias", D::kV, bias, &L::bv, {0.0f, 0.1f}),
      vec("attn_q_norm.weight", D::kHeadDim, qk_norm, &L::q_norm),
      vec("attn_k_norm.weight", D::kHeadDim, qk_norm, &L::k_norm),
      vec("ffn_norm.weight", D::kEmbd, Need::kRequired, &L::ffn_norm),
  };
  if (moe) {
    TensorSpec router = mat("ffn_gate_inp.weight", D::kEmbd, D::kExpert, Need::kMoe, Role::kRouter, &L::gate_inp);
    t.push_back(router);
    t.push_back(experts("ffn_gate_exps.weight", D::kEmbd, D::kFfExpert, Role::kGate, &L::gate_exps));
    t.push_back(experts("ffn_up_exps.weight", D::kEmbd, D::kFfExpert, Role::kUp, &L::up_exps));
    t.push_back(experts("ffn_down_exps.weight", D::kFfExpert, D::kEmbd, Role::kDown, &L::down_exps));
  }
  if (dense) {
    t.push_back(mat("ffn_gate.weight", D::kEmbd, D::kFf, Need::kDense, Role::kGate, &L::ffn_gate));
    t.push_back(mat("ffn_up.weight", D::kEmbd, D::kFf, Need::kDense, Role::kUp, &L::ffn_up));
    t.push_back(mat("ffn_down.weight", D::kFf, D::kEmbd, Need::kDense, Role::kDown, &L::ffn_down));
  }
  return t;
}

const std::vector<Family>& table() {
  static const std::vector<Family> kFamilies = {
      // Llama 1/2/3, Mistral, TinyLlama, SmolLM; Mixtral-style experts when expert_count is set.
      family("llama", {"llama", "mistral"}, RopeOrder::kNormal, false, false, globals(),
             block(Need::kOptional, Need::kOptional, true, true)),
      family("qwen2", {"qwen2"}, RopeOrder::kNeox, false, false, globals(),
             block(Need::kRequired, Need::kOptional, true, true)),
      family("qwen3", {"qwen3"}, RopeOrder::kNeox, false, false, globals(),
             block(Need::kOptional, Need::kRequired, true, true)),
      family("qwen3moe", {"qwen3moe"}, RopeOrder::kNeox, true, true, globals(),
             block(Need::kOptional, Need::kRequired, false, true)),
      [] {
        Family f = family("phi3", {"phi3"}, RopeOrder::kNeox, false, false, longrope_globals(), phi3_block());
        f.swa = SwaPattern::kAll;
        return f;
      }(),
      gemma("gemma2", Need::kOptional, SwaPattern::kEven, 0.0f, 46),
      gemma("gemma3", Need::kRequired, SwaPattern::kFiveLocalOneGlobal, 10000.0f, 62),
  };
  return kFamilies;
}

}  // namespace

int64_t dim_value(Dim d, const ModelConfig& c) {
  switch (d) {
    case D::kEmbd: return c.n_embd;
    case D::kVocab: return c.n_vocab;
    case D::kQ: return c.q_dim();
    case D::kKv: return c.kv_dim();
    case D::kV: return c.v_dim();
    case D::kOut: return c.n_head * c.head_dim_v;
    case D::kHeadDim: return c.head_dim;
    case D::kFf: return c.n_ff;
    case D::kFfExpert: return c.n_ff_expert;
    case D::kExpert: return c.n_expert;
    case D::kRotHalf: return c.n_rot / 2;
  }
  return 0;
}

std::span<const Family> families() { return table(); }

const Family* find_family(std::string_view arch) {
  for (const Family& f : table())
    for (std::string_view a : f.aliases)
      if (a == arch) return &f;
  return nullptr;
}

std::string family_names() {
  std::string s;
  for (const Family& f : table())
    for (std::string_view a : f.aliases) s += (s.empty() ? "" : ", ") + std::string(a);
  return s;
}

std::string tensor_name(const TensorSpec& t, int64_t layer) {
  return layer < 0 ? std::string(t.name) : "blk." + std::to_string(layer) + "." + t.name;
}

const TensorSpec* find_spec(const Family& family, std::string_view tensor) {
  std::string_view rest = tensor;
  const std::vector<TensorSpec>* table = &family.globals;
  if (rest.substr(0, 4) == "blk.") {
    rest.remove_prefix(4);
    const size_t dot = rest.find('.');
    if (dot == 0 || dot == std::string_view::npos) return nullptr;
    for (size_t i = 0; i < dot; ++i)
      if (rest[i] < '0' || rest[i] > '9') return nullptr;
    rest.remove_prefix(dot + 1);
    table = &family.layer;
  }
  for (const TensorSpec& t : *table)
    if (rest == t.name) return &t;
  return nullptr;
}

std::string spec_label(const TensorSpec& t) {
  switch (t.kind) {
    case Kind::kTable: return "embedding";
    case Kind::kMatrix: return std::string(backend::role_name(t.role));
    case Kind::kExperts: return std::string(backend::role_name(t.role)) + " experts";
    case Kind::kFused: {
      std::string s;
      for (const TensorSpec::Part& p : t.parts) {
        if (!s.empty()) s.push_back('+');
        s.append(backend::role_name(p.role));
      }
      return s;
    }
    case Kind::kVector: break;
  }
  const std::string_view name = t.name;
  if (name.find("bias") != std::string_view::npos) return "bias";
  if (name.find("rope") != std::string_view::npos) return "rope";
  return "norm";
}

std::vector<int64_t> tensor_shape(const TensorSpec& t, const ModelConfig& c) {
  std::vector<int64_t> shape;
  for (const Dim d : t.shape) shape.push_back(dim_value(d, c));
  if (t.kind == Kind::kFused) {
    int64_t rows = 0;
    for (const TensorSpec::Part& p : t.parts) rows += dim_value(p.rows, c);
    shape.push_back(rows);
  }
  return shape;
}

bool is_sliding(SwaPattern p, int64_t il) {
  switch (p) {
    case SwaPattern::kNone: return false;
    case SwaPattern::kAll: return true;
    case SwaPattern::kEven: return il % 2 == 0;
    case SwaPattern::kFiveLocalOneGlobal: return il % 6 != 5;
  }
  return false;
}

bool applies(const TensorSpec& t, const ModelConfig& c) {
  switch (t.need) {
    case Need::kDense: return !c.is_moe();
    case Need::kMoe: return c.is_moe();
    default: return true;
  }
}

bool required(const TensorSpec& t, const ModelConfig& c) {
  return t.need == Need::kRequired || ((t.need == Need::kDense || t.need == Need::kMoe) && applies(t, c));
}

}  // namespace slm::model
