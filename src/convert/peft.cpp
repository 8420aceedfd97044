// peft.h: PEFT adapter_config.json checks, PEFT tensor names to GGUF matrix
// names, the q/k row permutation of lora_B, and the GGUF LoRA writer.
#include "convert/peft.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <list>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "base/error.h"
#include "convert/convert.h"
#include "formats/safetensors.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "model/config.h"

namespace slm::convert {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr int64_t kMaxRank = 4096;    // as model/lora.cpp
constexpr size_t kMaxRegex = 1024;    // bytes of a target_modules expression
constexpr int kMaxRegexNesting = 32;  // parentheses deep

struct Module {
  std::string_view peft;    // "q_proj"
  std::string_view parent;  // "self_attn" or "mlp"
  std::string_view gguf;    // "attn_q"
};

constexpr Module kModules[] = {
    {"q_proj", "self_attn", "attn_q"}, {"k_proj", "self_attn", "attn_k"},
    {"v_proj", "self_attn", "attn_v"}, {"o_proj", "self_attn", "attn_output"},
    {"gate_proj", "mlp", "ffn_gate"},  {"up_proj", "mlp", "ffn_up"},
    {"down_proj", "mlp", "ffn_down"},
};

// Mixture-of-experts expert matrices, one PEFT module per expert:
// model.layers.N.<parent>.experts.E.<peft>, imported as llama.cpp's 3-d
// expert pairs (model/lora.h). Mixtral: block_sparse_moe.experts.E.w1/w3/w2;
// Qwen-MoE: mlp.experts.E.gate_proj/up_proj/down_proj.
constexpr Module kExpertModules[] = {
    {"w1", "block_sparse_moe", "ffn_gate_exps"}, {"w3", "block_sparse_moe", "ffn_up_exps"},
    {"w2", "block_sparse_moe", "ffn_down_exps"}, {"gate_proj", "mlp", "ffn_gate_exps"},
    {"up_proj", "mlp", "ffn_up_exps"},           {"down_proj", "mlp", "ffn_down_exps"},
};

// Qwen-MoE's shared expert (its own dense matrices in GGUF) has no mapping yet.
constexpr const char* kSharedExpertRefusal =
    "LoRA on a mixture-of-experts shared expert is not supported";

const Module* find_module(std::string_view name) {
  for (const Module& m : kModules)
    if (m.peft == name) return &m;
  return nullptr;
}

// model.layers.N.<parent>.experts.E.<peft> split up; module null when the
// path is not of that form.
struct ExpertPath {
  int64_t layer = -1, expert = -1;
  const Module* module = nullptr;
};

ExpertPath expert_path(std::string_view path) {
  std::vector<std::string_view> parts;
  for (size_t at = 0;;) {
    const size_t dot = path.find('.', at);
    parts.push_back(
        path.substr(at, dot == std::string_view::npos ? std::string_view::npos : dot - at));
    if (dot == std::string_view::npos) break;
    at = dot + 1;
  }
  auto number = [](std::string_view s) -> int64_t {
    if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string_view::npos)
      return -1;
    return std::stoll(std::string(s));
  };
  ExpertPath ep;
  if (parts.size() != 7 || parts[0] != "model" || parts[1] != "layers" || parts[4] != "experts")
    return ep;
  ep.layer = number(parts[2]);
  ep.expert = number(parts[5]);
  if (ep.layer < 0 || ep.expert < 0) return ep;
  for (const Module& m : kExpertModules)
    if (m.parent == parts[3] && m.peft == parts[6]) ep.module = &m;
  return ep;
}

// Why slm cannot adapt a module PEFT can ("" when it can).
std::string refusal(std::string_view module) {
  if (find_module(module)) return {};
  if (module == "embed_tokens" || module == "wte" || module == "embeddings")
    return "LoRA on the embeddings is not supported";
  if (module == "lm_head") return "LoRA on lm_head (the output matrix) is not supported";
  if (module == "w1" || module == "w2" || module == "w3") return {};  // Mixtral's experts
  if (module == "experts")
    return "LoRA on a fused 'experts' module is not supported (target the experts' projections)";
  if (module == "gate" || module == "router" || module == "shared_expert_gate")
    return "LoRA on a mixture-of-experts router is not supported";
  return "the module '" + std::string(module) + "' is not supported (slm adapts " +
         "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj and down_proj)";
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(p.string() + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::regex compile_regex(const std::string& re, const std::string& where) {
  if (re.size() > kMaxRegex)
    throw Error(where + ": target_modules expression is longer than " + std::to_string(kMaxRegex) +
                " bytes");
  int depth = 0;
  for (const char c : re) {
    if (c == '(' && ++depth > kMaxRegexNesting)
      throw Error(where + ": target_modules expression nests more than " +
                  std::to_string(kMaxRegexNesting) + " groups");
    if (c == ')') --depth;
  }
  try {
    // __polynomial: libstdc++'s breadth-first matcher (no exponential
    // backtracking on hostile expressions; back-references are refused).
    return std::regex(re, std::regex::ECMAScript | std::regex_constants::__polynomial);
  } catch (const std::regex_error& e) {
    throw Error(where + ": target_modules is not a regular expression slm can use: " + e.what());
  }
}

}  // namespace

const std::vector<std::string_view>& peft_module_names() {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> v;
    for (const Module& m : kModules) v.push_back(m.peft);
    return v;
  }();
  return names;
}

double PeftConfig::scale() const {
  return use_rslora ? lora_alpha / std::sqrt(static_cast<double>(r))
                    : lora_alpha / static_cast<double>(r);
}

PeftConfig parse_peft_config(std::string_view text, const std::string& name) {
  const Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw Error(name + ": not a JSON object");
  auto has = [&](const char* key) { return j.contains(key) && !j[key].is_null(); };
  PeftConfig c;
  if (has("peft_type") &&
      (!j["peft_type"].is_string() || j["peft_type"].get<std::string>() != "LORA"))
    throw Error(name + ": peft_type is " + j["peft_type"].dump() +
                "; only \"LORA\" adapters can be imported");
  if (has("use_dora") && (!j["use_dora"].is_boolean() || j["use_dora"].get<bool>()))
    throw Error(name + ": use_dora: DoRA adapters are not supported (only plain LoRA)");
  if (!has("r") || !j["r"].is_number_integer()) throw Error(name + ": r must be an integer");
  c.r = j["r"].get<int64_t>();
  if (c.r < 1 || c.r > kMaxRank)
    throw Error(name + ": r = " + std::to_string(c.r) + " is out of range (1.." +
                std::to_string(kMaxRank) + ")");
  if (has("lora_alpha")) {
    if (!j["lora_alpha"].is_number()) throw Error(name + ": lora_alpha must be a number");
    c.lora_alpha = j["lora_alpha"].get<double>();
  }
  if (!std::isfinite(c.lora_alpha) || c.lora_alpha <= 0 || c.lora_alpha > 1e6)
    throw Error(name + ": lora_alpha must be a positive number");
  if (has("use_rslora")) {
    if (!j["use_rslora"].is_boolean()) throw Error(name + ": use_rslora must be true or false");
    c.use_rslora = j["use_rslora"].get<bool>();
  }
  for (const char* key : {"rank_pattern", "alpha_pattern"})
    if (has(key) && !(j[key].is_object() && j[key].empty()))
      throw Error(name + ": " + key + ": per-module ranks or alphas are not supported");
  if (has("modules_to_save") && !(j["modules_to_save"].is_array() && j["modules_to_save"].empty()))
    throw Error(
        name +
        ": modules_to_save: fully trained modules are not part of a LoRA adapter; not supported");
  if (has("bias") && !(j["bias"].is_string() && j["bias"].get<std::string>() == "none"))
    throw Error(name + ": bias: LoRA biases are not supported (only \"none\")");
  if (has("fan_in_fan_out") &&
      !(j["fan_in_fan_out"].is_boolean() && !j["fan_in_fan_out"].get<bool>()))
    throw Error(name + ": fan_in_fan_out: transposed (Conv1D) weights are not supported");

  if (!has("target_modules")) throw Error(name + ": target_modules is missing");
  const Json& t = j["target_modules"];
  if (t.is_string()) {
    const std::string s = t.get<std::string>();
    if (s == "all-linear") {
      for (const Module& m : kModules) c.target_list.emplace_back(m.peft);
    } else {
      c.target_regex = s;
      c.target_is_regex = true;
      const std::regex re = compile_regex(s, name);
      for (const char* refused : {"model.embed_tokens", "lm_head"})
        if (std::regex_match(refused, re))
          throw Error(
              name + ": target_modules matches '" + refused + "': " +
              refusal(std::string_view(refused).substr(std::string_view(refused).rfind('.') + 1)));
    }
  } else if (t.is_array()) {
    if (t.empty()) throw Error(name + ": target_modules is empty");
    if (t.size() > 1000) throw Error(name + ": target_modules lists more than 1000 modules");
    for (const Json& e : t) {
      if (!e.is_string() || e.get<std::string>().empty())
        throw Error(name + ": target_modules must hold module names");
      const std::string s = e.get<std::string>();
      const std::string last = s.substr(s.rfind('.') + 1);
      if (const std::string why = refusal(last); !why.empty())
        throw Error(name + ": target_modules '" + s + "': " + why);
      c.target_list.push_back(s);
    }
  } else {
    throw Error(name + ": target_modules must be a list of names or a regular expression");
  }
  return c;
}

bool peft_targets(const PeftConfig& c, std::string_view path) {
  if (c.target_is_regex) {
    const std::regex re = compile_regex(c.target_regex, "target_modules");
    return std::regex_match(path.begin(), path.end(), re);
  }
  for (const std::string& t : c.target_list)
    if (path == t ||
        (path.size() > t.size() && path.ends_with(t) && path[path.size() - t.size() - 1] == '.'))
      return true;
  return false;
}

LoraImportResult import_peft(const std::string& peft_dir, const std::string& base_gguf,
                             const std::string& out_path) {
  const fs::path dir(peft_dir);
  if (!fs::is_directory(dir)) throw Error(peft_dir + ": not a folder");
  const fs::path config_path = dir / "adapter_config.json";
  if (!fs::exists(config_path)) throw Error(config_path.string() + ": missing");
  const PeftConfig pc = parse_peft_config(read_text(config_path), config_path.string());
  const fs::path st_path = dir / "adapter_model.safetensors";
  if (!fs::exists(st_path))
    throw Error(
        st_path.string() +
        ": missing (adapter_model.bin, PyTorch pickles, cannot be read; save with safetensors)");
  const auto st = formats::Safetensors::open(st_path.string());
  const std::string stn = st_path.string();

  const auto base = gguf::File::open(base_gguf);
  const auto arch_v = base->get_string("general.architecture");
  const std::string arch = arch_v ? std::string(*arch_v) : std::string();
  if (arch != "llama" && arch != "qwen2" && arch != "qwen3" && arch != "qwen2moe" &&
      arch != "qwen3moe")
    throw Error(base_gguf + ": architecture '" + arch +
                "': adapter import supports llama, mistral, mixtral, qwen2, qwen3, qwen2moe and "
                "qwen3moe");
  const model::ModelConfig mc = model::read_config(*base);
  // As convert's HfArch::permute_qk for Llama, Mistral and Mixtral (GGUF "llama").
  const bool permute = arch == "llama";

  // PEFT name -> (layer, module); A and B by the GGUF matrix they change.
  struct Pair {
    const formats::StTensor* a = nullptr;
    const formats::StTensor* b = nullptr;
    const Module* module = nullptr;
    std::string path;  // module path, for errors
  };
  std::map<std::pair<int64_t, int>, Pair> pairs;  // (layer, module index)
  // (layer, GGUF stack) -> a pair per expert (both null where PEFT left one out).
  std::map<std::pair<int64_t, std::string>, std::vector<Pair>> expert_pairs;
  const std::string prefix = "base_model.model.";
  for (const formats::StTensor& t : st->tensors()) {
    const std::string where = stn + ": tensor '" + t.name + "'";
    if (t.name.find("lora_magnitude_vector") != std::string::npos)
      throw Error(where + ": DoRA adapters are not supported (only plain LoRA)");
    if (t.name.find("lora_embedding_") != std::string::npos)
      throw Error(where + ": LoRA on the embeddings is not supported");
    // <prefix><path>.lora_A[.<adapter>].weight
    size_t at = t.name.rfind(".lora_A");
    bool is_a = true;
    if (at == std::string::npos) {
      at = t.name.rfind(".lora_B");
      is_a = false;
    }
    if (at == std::string::npos || t.name.rfind(prefix, 0) != 0 || !t.name.ends_with(".weight"))
      throw Error(
          where +
          ": not a LoRA tensor (lora_A / lora_B weights only; modules_to_save and biases are not "
          "supported)");
    const std::string path = t.name.substr(prefix.size(), at - prefix.size());
    const std::string module = path.substr(path.rfind('.') + 1);
    if (path.find(".shared_expert.") != std::string::npos)
      throw Error(where + ": " + kSharedExpertRefusal);
    if (const std::string why = refusal(module); !why.empty()) throw Error(where + ": " + why);
    if (path.find(".experts.") != std::string::npos) {
      const ExpertPath ep = expert_path(path);
      if (ep.module == nullptr) throw Error(where + ": unexpected module path '" + path + "'");
      if (ep.layer >= mc.n_layer)
        throw Error(where + ": layer " + std::to_string(ep.layer) + ", the model has " +
                    std::to_string(mc.n_layer));
      if (ep.expert >= mc.n_expert)
        throw Error(where + ": expert " + std::to_string(ep.expert) + ", the model has " +
                    std::to_string(mc.n_expert));
      if (!peft_targets(pc, path))
        throw Error(where + ": the module '" + path +
                    "' is not in adapter_config.json's target_modules");
      std::vector<Pair>& stack = expert_pairs[{ep.layer, std::string(ep.module->gguf)}];
      stack.resize(static_cast<size_t>(mc.n_expert));
      Pair& p = stack[static_cast<size_t>(ep.expert)];
      const formats::StTensor*& slot = is_a ? p.a : p.b;
      if (slot != nullptr)
        throw Error(where + ": a second lora_" + (is_a ? "A" : "B") + " for '" + path + "'");
      slot = &t;
      p.module = ep.module;
      p.path = path;
      continue;
    }
    const Module* m = find_module(module);
    if (m == nullptr) throw Error(where + ": unexpected module path '" + path + "'");
    // model.layers.N.<parent>.<module>
    const std::string lp = "model.layers.";
    int64_t layer = -1;
    if (path.rfind(lp, 0) == 0) {
      const size_t dot = path.find('.', lp.size());
      const std::string num =
          path.substr(lp.size(), dot == std::string::npos ? std::string::npos : dot - lp.size());
      if (!num.empty() && num.size() < 7 &&
          num.find_first_not_of("0123456789") == std::string::npos && dot != std::string::npos &&
          path.substr(dot + 1) == std::string(m->parent) + "." + std::string(m->peft))
        layer = std::stoll(num);
    }
    if (layer < 0) throw Error(where + ": unexpected module path '" + path + "'");
    if (layer >= mc.n_layer)
      throw Error(where + ": layer " + std::to_string(layer) + ", the model has " +
                  std::to_string(mc.n_layer));
    if (!peft_targets(pc, path))
      throw Error(where + ": the module '" + path +
                  "' is not in adapter_config.json's target_modules");
    Pair& p = pairs[{layer, static_cast<int>(m - kModules)}];
    const formats::StTensor*& slot = is_a ? p.a : p.b;
    if (slot != nullptr)
      throw Error(where + ": a second lora_" + (is_a ? "A" : "B") + " for '" + path + "'");
    slot = &t;
    p.module = m;
    p.path = path;
  }
  if (pairs.empty() && expert_pairs.empty()) throw Error(stn + ": no LoRA tensors");

  gguf::Writer w;
  const double scale = pc.scale();
  const auto alpha = static_cast<float>(scale * static_cast<double>(pc.r));
  w.add_string("general.architecture", arch);
  w.add_string("general.type", "adapter");
  w.add_string("general.name", fs::absolute(dir).lexically_normal().filename().string());
  w.add_string("adapter.type", "lora");
  w.add_f32("adapter.lora.alpha", alpha);
  std::list<std::vector<float>> keep;  // tensor bytes until written
  auto floats = [&](const formats::StTensor& t, const std::string& where) -> std::vector<float>& {
    if (!formats::st_is_float(t.dtype))
      throw Error(where + ": dtype " + std::string(formats::st_dtype_name(t.dtype)) +
                  " (F32, F16 or BF16 expected)");
    std::vector<float>& v = keep.emplace_back(static_cast<size_t>(t.n_elements));
    formats::st_to_float(t, 0, t.n_elements, v.data());
    for (const float x : v)
      if (!std::isfinite(x)) throw Error(where + ": holds a value that is not finite");
    return v;
  };
  for (const auto& [key, p] : pairs) {
    const std::string where = stn + ": module '" + p.path + "'";
    if (p.a == nullptr || p.b == nullptr)
      throw Error(where + ": lora_" + (p.a ? "B" : "A") +
                  " is missing (LoRA tensors come in pairs)");
    const std::string gname =
        "blk." + std::to_string(key.first) + "." + std::string(p.module->gguf) + ".weight";
    const gguf::TensorInfo* bt = base->find_tensor(gname);
    if (bt == nullptr || bt->n_dims != 2)
      throw Error(where + ": the base model has no matrix '" + gname + "'");
    const int64_t n_in = bt->ne[0], n_out = bt->ne[1];
    if (p.a->shape.size() != 2 || p.a->shape[0] != pc.r || p.a->shape[1] != n_in)
      throw Error(where + ": lora_A has shape " +
                  (p.a->shape.size() == 2 ? "[" + std::to_string(p.a->shape[0]) + ", " +
                                                std::to_string(p.a->shape[1]) + "]"
                                          : std::string("?")) +
                  ", expected [r=" + std::to_string(pc.r) + ", " + std::to_string(n_in) + "]");
    if (p.b->shape.size() != 2 || p.b->shape[0] != n_out || p.b->shape[1] != pc.r)
      throw Error(where + ": lora_B has shape " +
                  (p.b->shape.size() == 2 ? "[" + std::to_string(p.b->shape[0]) + ", " +
                                                std::to_string(p.b->shape[1]) + "]"
                                          : std::string("?")) +
                  ", expected [" + std::to_string(n_out) + ", r=" + std::to_string(pc.r) + "]");
    const std::vector<float>& a = floats(*p.a, where + " lora_A");
    std::vector<float>& b = floats(*p.b, where + " lora_B");
    int64_t heads = 0;
    if (permute && p.module->gguf == "attn_q") heads = mc.n_head;
    if (permute && p.module->gguf == "attn_k") heads = mc.n_head_kv;
    if (heads > 0) {
      if (n_out % (2 * heads) != 0)
        throw Error(where + ": " + std::to_string(n_out) + " rows do not split into " +
                    std::to_string(heads) + " heads");
      std::vector<float>& out = keep.emplace_back(b.size());
      for (int64_t row = 0; row < n_out; ++row) {
        const int64_t from = permuted_qk_row(row, n_out, heads);
        std::copy_n(b.begin() + from * pc.r, pc.r, out.begin() + row * pc.r);
      }
      b.swap(out);
    }
    auto span_of = [](const std::vector<float>& v) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()),
                                      v.size() * sizeof(float));
    };
    w.add_tensor(gname + ".lora_a", DType::F32, {n_in, pc.r}, span_of(a));
    w.add_tensor(gname + ".lora_b", DType::F32, {pc.r, n_out}, span_of(b));
  }
  // Expert stacks: lora_a ne [n_in, r, n_expert] and lora_b ne [r, n_out,
  // n_expert], zeros (no delta) for experts the adapter leaves out.
  for (const auto& [key, stack] : expert_pairs) {
    const std::string gname = "blk." + std::to_string(key.first) + "." + key.second + ".weight";
    const gguf::TensorInfo* bt = base->find_tensor(gname);
    if (bt == nullptr || bt->n_dims != 3 || bt->ne[2] != mc.n_expert)
      throw Error(stn + ": expert modules for '" + gname +
                  "': the base model has no expert stack of that name with " +
                  std::to_string(mc.n_expert) + " experts");
    const int64_t n_in = bt->ne[0], n_out = bt->ne[1], ne = bt->ne[2], r = pc.r;
    std::vector<float>& a_all = keep.emplace_back(static_cast<size_t>(ne * r * n_in), 0.0f);
    std::vector<float>& b_all = keep.emplace_back(static_cast<size_t>(ne * n_out * r), 0.0f);
    for (int64_t e = 0; e < ne; ++e) {
      const Pair& p = stack[static_cast<size_t>(e)];
      if (p.a == nullptr && p.b == nullptr) continue;
      const std::string where = stn + ": module '" + p.path + "'";
      if (p.a == nullptr || p.b == nullptr)
        throw Error(where + ": lora_" + (p.a ? "B" : "A") +
                    " is missing (LoRA tensors come in pairs)");
      if (p.a->shape.size() != 2 || p.a->shape[0] != r || p.a->shape[1] != n_in)
        throw Error(where + ": lora_A must be [r=" + std::to_string(r) + ", " +
                    std::to_string(n_in) + "]");
      if (p.b->shape.size() != 2 || p.b->shape[0] != n_out || p.b->shape[1] != r)
        throw Error(where + ": lora_B must be [" + std::to_string(n_out) +
                    ", r=" + std::to_string(r) + "]");
      const std::vector<float>& a = floats(*p.a, where + " lora_A");
      const std::vector<float>& b = floats(*p.b, where + " lora_B");
      std::copy(a.begin(), a.end(), a_all.begin() + e * r * n_in);
      std::copy(b.begin(), b.end(), b_all.begin() + e * n_out * r);
    }
    auto span_of = [](const std::vector<float>& v) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()),
                                      v.size() * sizeof(float));
    };
    w.add_tensor(gname + ".lora_a", DType::F32, {n_in, r, ne}, span_of(a_all));
    w.add_tensor(gname + ".lora_b", DType::F32, {r, n_out, ne}, span_of(b_all));
  }
  w.write(out_path);
  LoraImportResult res;
  res.arch = arch;
  res.n_pairs = static_cast<int64_t>(pairs.size() + expert_pairs.size());
  res.rank = pc.r;
  res.alpha = alpha;
  res.bytes = fs::file_size(out_path);
  return res;
}

}  // namespace slm::convert
