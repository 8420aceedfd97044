#include "convert/convert.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "base/error.h"
#include "convert/hf_config.h"
#include "convert/hf_tokenizer.h"
#include "formats/safetensors.h"
#include "gguf/writer.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "model/model.h"

namespace slm::convert {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;
using formats::Safetensors;
using formats::StTensor;
using model::Kind;
using model::TensorSpec;

// ---------------------------------------------------------------------------
// Hugging Face tensor names per family: GGUF table entry -> HF name, with
// {L} for the layer and {E} for the expert. Written once here; the GGUF side
// comes from model/arch.cpp's tables.

struct HfName {
  std::string_view gguf;  // a table entry's name ("attn_q.weight", "token_embd.weight")
  std::string_view hf;    // "model.layers.{L}.self_attn.q_proj.weight"
};

std::vector<HfName> hf_names(const HfArch& a) {
  std::vector<HfName> n = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
      {"attn_norm.weight", "model.layers.{L}.input_layernorm.weight"},
      {"attn_q.weight", "model.layers.{L}.self_attn.q_proj.weight"},
      {"attn_k.weight", "model.layers.{L}.self_attn.k_proj.weight"},
      {"attn_v.weight", "model.layers.{L}.self_attn.v_proj.weight"},
      {"attn_output.weight", "model.layers.{L}.self_attn.o_proj.weight"},
      {"attn_q.bias", "model.layers.{L}.self_attn.q_proj.bias"},
      {"attn_k.bias", "model.layers.{L}.self_attn.k_proj.bias"},
      {"attn_v.bias", "model.layers.{L}.self_attn.v_proj.bias"},
      {"attn_q_norm.weight", "model.layers.{L}.self_attn.q_norm.weight"},
      {"attn_k_norm.weight", "model.layers.{L}.self_attn.k_norm.weight"},
      {"ffn_gate.weight", "model.layers.{L}.mlp.gate_proj.weight"},
      {"ffn_up.weight", "model.layers.{L}.mlp.up_proj.weight"},
      {"ffn_down.weight", "model.layers.{L}.mlp.down_proj.weight"},
  };
  const std::string_view arch = a.gguf_arch;
  if (a.norm_plus_one) {  // Gemma 2/3: four norms per block
    n.push_back({"post_attention_norm.weight", "model.layers.{L}.post_attention_layernorm.weight"});
    n.push_back({"ffn_norm.weight", "model.layers.{L}.pre_feedforward_layernorm.weight"});
    n.push_back({"post_ffw_norm.weight", "model.layers.{L}.post_feedforward_layernorm.weight"});
  } else {
    n.push_back({"ffn_norm.weight", "model.layers.{L}.post_attention_layernorm.weight"});
  }
  if (a.hf_name == "MixtralForCausalLM") {
    n.push_back({"ffn_gate_inp.weight", "model.layers.{L}.block_sparse_moe.gate.weight"});
    n.push_back({"ffn_gate_exps.weight", "model.layers.{L}.block_sparse_moe.experts.{E}.w1.weight"});
    n.push_back({"ffn_down_exps.weight", "model.layers.{L}.block_sparse_moe.experts.{E}.w2.weight"});
    n.push_back({"ffn_up_exps.weight", "model.layers.{L}.block_sparse_moe.experts.{E}.w3.weight"});
  } else if (arch == "qwen3moe") {
    n.push_back({"ffn_gate_inp.weight", "model.layers.{L}.mlp.gate.weight"});
    n.push_back({"ffn_gate_exps.weight", "model.layers.{L}.mlp.experts.{E}.gate_proj.weight"});
    n.push_back({"ffn_up_exps.weight", "model.layers.{L}.mlp.experts.{E}.up_proj.weight"});
    n.push_back({"ffn_down_exps.weight", "model.layers.{L}.mlp.experts.{E}.down_proj.weight"});
  } else if (arch == "phi3") {
    n.push_back({"attn_qkv.weight", "model.layers.{L}.self_attn.qkv_proj.weight"});
    std::erase_if(n, [](const HfName& x) { return x.gguf == "ffn_up.weight"; });
    n.push_back({"ffn_up.weight", "model.layers.{L}.mlp.gate_up_proj.weight"});  // gate rows, then up rows
  }
  return n;
}

std::string expand(std::string_view pattern, int64_t layer, int64_t expert) {
  std::string s(pattern);
  for (auto [key, value] : {std::pair{std::string("{L}"), layer}, std::pair{std::string("{E}"), expert}})
    if (const size_t at = s.find(key); at != std::string::npos) s.replace(at, key.size(), std::to_string(value));
  return s;
}

// Tensors a checkpoint may carry that the GGUF does not need.
bool ignorable(const std::string& name, const HfArch& a) {
  if (name.find("rotary_emb.inv_freq") != std::string::npos) return true;
  if (a.text_config)  // Gemma 3's vision tower and projector
    for (const char* p : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."})
      if (name.rfind(p, 0) == 0) return true;
  return false;
}

// ---------------------------------------------------------------------------
// The checkpoint's tensors: one safetensors file, or shards listed in
// model.safetensors.index.json.

struct Checkpoint {
  std::vector<std::unique_ptr<Safetensors>> files;
  std::map<std::string, const StTensor*> tensors;
  std::set<std::string> used;
};


Checkpoint open_checkpoint(const fs::path& dir) {
  Checkpoint ck;
  std::vector<std::string> shards;
  std::map<std::string, std::string> index;  // tensor -> shard
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    try {
      const Json j = Json::parse(read_text(index_path));
      const auto wm = j.is_object() ? j.find("weight_map") : j.end();
      if (wm == j.end() || !wm->is_object()) throw Error(index_path.string() + ": weight_map: expected an object");
      for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it.value().is_string()) throw Error(index_path.string() + ": weight_map." + it.key() + ": expected a file name");
        const std::string shard = it.value().get<std::string>();
        // Shards are files beside the index, never paths elsewhere.
        if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
            shard == "." || shard == "..")
          throw Error(index_path.string() + ": weight_map." + it.key() + ": '" + shard + "' is not a file name");
        index[it.key()] = shard;
        if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
      }
    } catch (const Json::exception& e) {
      throw Error(index_path.string() + ": invalid JSON: " + e.what());
    }
    if (shards.empty()) throw Error(index_path.string() + ": weight_map lists no tensors");
  } else if (fs::exists(dir / "model.safetensors")) {
    shards.push_back("model.safetensors");
  } else {
    throw Error(dir.string() + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const std::string& s : shards) {
    ck.files.push_back(Safetensors::open((dir / s).string()));
    for (const StTensor& t : ck.files.back()->tensors()) {
      if (!ck.tensors.emplace(t.name, &t).second)
        throw Error((dir / s).string() + ": tensor '" + t.name + "' is also in another shard");
    }
  }
  for (const auto& [name, shard] : index) {
    auto it = ck.tensors.find(name);
    if (it == ck.tensors.end()) throw Error((dir / shard).string() + ": tensor '" + name + "' listed in the index is missing");
  }
  return ck;
}

// ---------------------------------------------------------------------------

struct Source {
  std::vector<const StTensor*> parts;  // row blocks in order (experts: one per expert)
  int64_t permute_heads = 0;           // > 0: q/k rows from rotate-half order
  bool plus_one = false;               // Gemma norm: 1 + w
};

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

uint32_t gguf_file_type(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q8_0: return 7;
    case DType::BF16: return 32;
    default: return 1;
  }
}

model::ModelConfig shape_config(const HfConfig& h, int64_t n_vocab) {
  model::ModelConfig c;
  c.family = h.family;
  c.arch_name = std::string(h.arch->gguf_arch);
  c.n_vocab = n_vocab;
  c.n_embd = h.n_embd;
  c.n_layer = h.n_layer;
  c.n_head = h.n_head;
  c.n_head_kv = h.n_head_kv;
  c.head_dim = c.head_dim_v = h.head_dim;
  c.n_rot = h.n_rot;
  c.n_ff = h.n_ff;
  c.n_expert = h.n_expert;
  c.n_expert_used = h.n_expert_used;
  c.n_ff_expert = h.n_ff_expert;
  c.rope_base = h.rope_base;
  return c;
}

void write_metadata(gguf::Writer& w, const HfConfig& h, int64_t n_vocab, const ConvertOptions& o,
                    const std::string& name) {
  const std::string a(h.arch->gguf_arch);
  auto u32 = [](int64_t v) { return static_cast<uint32_t>(v); };
  w.add_string("general.architecture", a);
  w.add_string("general.name", name);
  w.add_u32("general.file_type", gguf_file_type(o.type));
  w.add_u32("general.quantization_version", 2);
  const bool head_dim = h.explicit_head_dim || h.head_dim * h.n_head != h.n_embd;
  model::write_core_hparams(w, {.arch = a, .n_ctx = h.n_ctx, .n_embd = h.n_embd,
                                .n_layer = h.n_layer, .n_ff = h.n_ff, .n_head = h.n_head,
                                .n_head_kv = h.n_head_kv, .head_dim = head_dim ? h.head_dim : 0,
                                .n_rot = h.n_rot, .rope_base = h.rope_base,
                                .norm_eps = h.norm_eps});
  w.add_u32(a + ".vocab_size", u32(n_vocab));
  if (h.rope_scaling == HfRopeScaling::kLinear) {
    w.add_string(a + ".rope.scaling.type", "linear");
    w.add_f32(a + ".rope.scaling.factor", h.rope_factor);
  }
  if (h.rope_scaling == HfRopeScaling::kLongRope) {
    w.add_u32(a + ".rope.scaling.original_context_length", u32(h.rope_orig_ctx));
    const double scale = static_cast<double>(h.n_ctx) / static_cast<double>(h.rope_orig_ctx);
    const double attn = scale > 1.0 ? std::sqrt(1.0 + std::log(scale) / std::log(static_cast<double>(h.rope_orig_ctx))) : 1.0;
    w.add_f32(a + ".rope.scaling.attn_factor", static_cast<float>(attn));
  }
  if (h.n_swa > 0) w.add_u32(a + ".attention.sliding_window", u32(h.n_swa));
  if (h.attn_softcap > 0) w.add_f32(a + ".attn_logit_softcapping", h.attn_softcap);
  if (h.final_softcap > 0) w.add_f32(a + ".final_logit_softcapping", h.final_softcap);
  if (h.n_expert > 0) {
    w.add_u32(a + ".expert_count", u32(h.n_expert));
    w.add_u32(a + ".expert_used_count", u32(h.n_expert_used));
    if (h.family->writes_expert_ff_length) w.add_u32(a + ".expert_feed_forward_length", u32(h.n_ff_expert));
    if (h.expert_weights_norm >= 0) w.add_bool(a + ".expert_weights_norm", h.expert_weights_norm == 1);
  }
}

// Llama 3.1's frequency divisors (llama.cpp writes them as rope_freqs.weight).
std::vector<float> llama3_divisors(const HfConfig& h, int64_t n_vocab) {
  model::ModelConfig plain = shape_config(h, n_vocab);
  model::ModelConfig scaled = plain;
  scaled.rope_scaling = model::RopeScaling::kLlama3;
  scaled.rope_scale_factor = h.rope_factor;
  scaled.rope_low_freq_factor = h.rope_low_freq;
  scaled.rope_high_freq_factor = h.rope_high_freq;
  scaled.rope_orig_ctx = h.rope_orig_ctx;
  const std::vector<float> f0 = model::compute_rope_inv_freq(plain), f1 = model::compute_rope_inv_freq(scaled);
  std::vector<float> d(f0.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = f0[i] / f1[i];
  return d;
}

}  // namespace

int64_t permuted_qk_row(int64_t row, int64_t n_rows, int64_t n_head) {
  // GGUF row (h, i, j) of [n_head, head_dim / 2, 2] is HF row (h, j, i) of [n_head, 2, head_dim / 2].
  const int64_t head_dim = n_rows / n_head, half = head_dim / 2;
  const int64_t h = row / head_dim, rest = row % head_dim;
  const int64_t i = rest / 2, j = rest % 2;
  return h * head_dim + j * half + i;
}

ConvertResult convert_hf(const std::string& hf_dir, const std::string& out_path, const ConvertOptions& options) {
  const fs::path dir(hf_dir);
  if (!fs::is_directory(dir)) throw Error(hf_dir + ": not a folder");
  const DType type = options.type;
  if (type != DType::F32 && type != DType::F16 && type != DType::BF16 && type != DType::Q8_0)
    throw Error("convert: type " + std::string(dtype_name(type)) + " is not supported (F32, F16, BF16, Q8_0)");

  const fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path)) throw Error(config_path.string() + ": missing");
  const HfConfig h = parse_hf_config(read_text(config_path), config_path.string());
  Checkpoint ck = open_checkpoint(dir);

  // Finds an HF tensor by name (Gemma 3 multimodal nests the language model).
  auto lookup = [&](const std::string& name) -> const StTensor* {
    std::vector<std::string> candidates = {name};
    if (h.arch->text_config) {
      if (name.rfind("model.", 0) == 0) {
        candidates.push_back("language_model." + name);
        candidates.push_back("model.language_model." + name.substr(6));
      } else {
        candidates.push_back("language_model." + name);
      }
    }
    for (const std::string& c : candidates)
      if (auto it = ck.tensors.find(c); it != ck.tensors.end()) {
        ck.used.insert(c);
        return it->second;
      }
    return nullptr;
  };

  const std::vector<HfName> names = hf_names(*h.arch);
  auto hf_pattern = [&](const TensorSpec& t) -> std::string_view {
    for (const HfName& n : names)
      if (n.gguf == t.name) return n.hf;
    return {};
  };

  // The embedding decides the vocabulary size (config vocab_size may differ).
  const StTensor* embd = lookup(std::string(hf_pattern(h.family->globals[0])));
  if (!embd) throw Error(hf_dir + ": tensor 'model.embed_tokens.weight' is missing");
  if (embd->shape.size() != 2 || embd->shape[1] != h.n_embd)
    throw Error(hf_dir + ": tensor '" + embd->name + "' has shape " + shape_text(embd->shape) + ", expected [n_vocab, " +
                std::to_string(h.n_embd) + "]");
  const int64_t n_vocab = embd->shape[0];
  const model::ModelConfig mc = shape_config(h, n_vocab);

  gguf::Writer w;
  const std::string name = options.name.empty() ? fs::absolute(dir).lexically_normal().filename().string() : options.name;
  write_metadata(w, h, n_vocab, options, name.empty() ? std::string("model") : name);
  add_hf_tokenizer(w, hf_dir, h, n_vocab);

  int64_t n_tensors = 0;
  auto add_values = [&](const std::string& gguf_name, std::vector<float> v) {
    w.add_tensor(gguf_name, DType::F32, {static_cast<int64_t>(v.size())},
                 {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)});
    ++n_tensors;
  };

  // One GGUF tensor from its HF sources, converted when the writer asks for it.
  auto add = [&](const TensorSpec& t, int64_t layer) {
    const std::string gname = model::tensor_name(t, layer);
    if (t.global_vector == &model::ModelWeights::rope_freqs) {
      if (h.rope_scaling == HfRopeScaling::kLlama3) add_values(gname, llama3_divisors(h, n_vocab));
      return;
    }
    if (t.global_vector == &model::ModelWeights::rope_factors_long) {
      if (h.rope_scaling == HfRopeScaling::kLongRope) add_values(gname, h.rope_long_factor);
      return;
    }
    if (t.global_vector == &model::ModelWeights::rope_factors_short) {
      if (h.rope_scaling == HfRopeScaling::kLongRope) add_values(gname, h.rope_short_factor);
      return;
    }
    if (t.global_matrix == &model::ModelWeights::output && h.tied) return;
    if (!model::applies(t, mc)) return;
    const std::string_view pattern = hf_pattern(t);
    const bool needed = model::required(t, mc) || (t.global_matrix == &model::ModelWeights::output) ||
                        ((t.name == std::string_view("attn_q.bias") || t.name == std::string_view("attn_k.bias") ||
                          t.name == std::string_view("attn_v.bias")) && h.attention_bias);
    if (pattern.empty()) {
      if (needed) throw Error(hf_dir + ": no Hugging Face name for '" + gname + "' in " + std::string(h.arch->hf_name));
      return;
    }
    const std::vector<int64_t> shape = model::tensor_shape(t, mc);  // ggml order
    const int64_t cols = shape[0];
    int64_t rows = 1;
    for (size_t i = 1; i < shape.size(); ++i) rows *= shape[i];

    Source src;
    const int64_t n_parts = t.kind == Kind::kExperts ? h.n_expert : 1;
    for (int64_t e = 0; e < n_parts; ++e) {
      const std::string hname = expand(pattern, layer, e);
      const StTensor* st = lookup(hname);
      if (!st) {
        if (!needed) return;
        throw Error(hf_dir + ": tensor '" + hname + "' (for " + gname + ") is missing");
      }
      // HF stores [out, in] (experts: each [out, in]); a vector is [n].
      std::vector<int64_t> want = t.kind == Kind::kVector ? std::vector<int64_t>{cols}
                                                          : std::vector<int64_t>{rows / n_parts, cols};
      if (st->shape != want)
        throw Error(hf_dir + ": tensor '" + hname + "' has shape " + shape_text(st->shape) + ", expected " +
                    shape_text(want));
      if (!formats::st_is_float(st->dtype))
        throw Error(hf_dir + ": tensor '" + hname + "' has dtype " + std::string(formats::st_dtype_name(st->dtype)) +
                    " (F32, F16 or BF16 expected)");
      src.parts.push_back(st);
    }
    if (h.arch->permute_qk) {
      if (t.matrix == &model::LayerWeights::wq || t.vector == &model::LayerWeights::bq) src.permute_heads = h.n_head;
      if (t.matrix == &model::LayerWeights::wk || t.vector == &model::LayerWeights::bk) src.permute_heads = h.n_head_kv;
    }
    src.plus_one = h.arch->norm_plus_one && t.kind == Kind::kVector && std::string_view(t.name).find("norm") != std::string_view::npos;

    // Vectors and routers stay F32 (llama.cpp); Q8_0 needs whole blocks per row.
    DType out = type;
    if (t.kind == Kind::kVector || t.role == backend::Role::kRouter) out = DType::F32;
    if (!row_fits(out, cols)) out = DType::F16;

    w.add_tensor_lazy(gname, out, shape, [src, cols, out, gname](uint8_t* dst) {
      const kernels::TypeTraits& tr = kernels::traits(out);
      const int64_t rb = row_bytes(out, cols);
      std::vector<float> row(static_cast<size_t>(cols)), tmp;
      int64_t r = 0;
      for (const StTensor* part : src.parts) {
        const int64_t part_rows = part->n_elements / cols;
        for (int64_t pr = 0; pr < part_rows; ++pr, ++r) {
          if (src.permute_heads > 0 && part_rows == 1) {  // a bias: permute its elements
            tmp.resize(static_cast<size_t>(cols));
            formats::st_to_float(*part, 0, cols, tmp.data());
            for (int64_t i = 0; i < cols; ++i) row[i] = tmp[permuted_qk_row(i, cols, src.permute_heads)];
          } else {
            const int64_t from = src.permute_heads > 0 ? permuted_qk_row(pr, part_rows, src.permute_heads) : pr;
            formats::st_to_float(*part, from * cols, cols, row.data());
          }
          if (src.plus_one)
            for (float& x : row) x += 1.0f;
          tr.quantize_row(row.data(), dst + r * rb, cols);
        }
      }
    });
    ++n_tensors;
  };

  for (const TensorSpec& t : h.family->globals) add(t, -1);
  for (int64_t l = 0; l < h.n_layer; ++l)
    for (const TensorSpec& t : h.family->layer) add(t, l);

  // Every tensor of the checkpoint must have gone somewhere.
  for (const auto& [hname, st] : ck.tensors) {
    if (ck.used.count(hname) || ignorable(hname, *h.arch)) continue;
    if (h.tied && (hname == "lm_head.weight" || hname == "language_model.lm_head.weight")) continue;
    throw Error(hf_dir + ": tensor '" + hname + "' has no place in a " + std::string(h.arch->gguf_arch) +
                " GGUF (unsupported feature?)");
  }
  w.write(out_path);
  ConvertResult res;
  res.arch = std::string(h.arch->gguf_arch);
  res.n_tensors = n_tensors;
  res.bytes = fs::file_size(out_path);
  return res;
}

}  // namespace slm::convert
