#include "model/quant_mix.h"

#include <array>
#include <cctype>
#include <charconv>

namespace slm::model {
namespace {

using F = FileType;

constexpr std::array<QuantMix, 19> kMixes = {{
    {"F32", F::kF32, DType::F32},          {"F16", F::kF16, DType::F16},
    {"BF16", F::kBF16, DType::BF16},       {"Q8_0", F::kQ8_0, DType::Q8_0},
    {"Q4_0", F::kQ4_0, DType::Q4_0},       {"Q4_1", F::kQ4_1, DType::Q4_1},
    {"Q5_0", F::kQ5_0, DType::Q5_0},       {"Q5_1", F::kQ5_1, DType::Q5_1},
    {"IQ4_NL", F::kIQ4_NL, DType::IQ4_NL}, {"Q2_K", F::kQ2_K, DType::Q2_K},
    {"Q2_K_S", F::kQ2_K_S, DType::Q2_K},   {"Q3_K_S", F::kQ3_K_S, DType::Q3_K},
    {"Q3_K_M", F::kQ3_K_M, DType::Q3_K},   {"Q3_K_L", F::kQ3_K_L, DType::Q3_K},
    {"Q4_K_S", F::kQ4_K_S, DType::Q4_K},   {"Q4_K_M", F::kQ4_K_M, DType::Q4_K},
    {"Q5_K_S", F::kQ5_K_S, DType::Q5_K},   {"Q5_K_M", F::kQ5_K_M, DType::Q5_K},
    {"Q6_K", F::kQ6_K, DType::Q6_K},
}};

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

bool is_quantized(DType t) {
  return t != DType::F32 && t != DType::F16 && t != DType::BF16;
}

// The layer of "blk.N.*", or -1.
int64_t layer_of(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return -1;
  int64_t layer = -1;
  const auto [end, ec] = std::from_chars(name.data() + 4, name.data() + name.size(), layer);
  if (ec != std::errc() || end == name.data() + name.size() || *end != '.') return -1;
  return layer;
}

// llama.cpp gives the first and last eighth of the layers, and every third in
// between, more bits for attn_v and ffn_down in its _M mixes.
bool use_more_bits(int64_t i, int64_t n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

// llama_tensor_get_type's rules for the ftypes slm writes.
DType mixed_type(const QuantMix& mix, std::string_view name, int64_t row_len,
                 const MixModelFacts& m, bool has_imatrix) {
  const F ft = mix.ftype;
  DType t = mix.base;
  const int64_t i = layer_of(name), n = m.n_layer;
  if (name == "output.weight" || (!m.has_output && name == "token_embd.weight")) {
    if (row_len % 256 != 0) return DType::Q8_0;
    return t == DType::Q8_0 ? t : DType::Q6_K;
  }
  if (name == "token_embd.weight") return t;
  if (contains(name, "attn_v.weight")) {
    if (ft == F::kQ2_K)
      t = m.n_gqa >= 4 ? DType::Q4_K : DType::Q3_K;
    else if (ft == F::kQ2_K_S && m.n_gqa >= 4)
      t = DType::Q4_K;
    else if (ft == F::kQ3_K_M)
      t = i < 2 ? DType::Q5_K : DType::Q4_K;
    else if (ft == F::kQ3_K_L)
      t = DType::Q5_K;
    else if (ft == F::kIQ4_NL && m.n_gqa >= 4)
      t = DType::Q5_K;
    else if ((ft == F::kQ4_K_M || ft == F::kQ5_K_M) && use_more_bits(i, n))
      t = DType::Q6_K;
    else if (ft == F::kQ4_K_S && i < 4)
      t = DType::Q5_K;
    if (m.n_expert == 8) t = DType::Q8_0;
    return t;
  }
  if (contains(name, "attn_k.weight")) return m.n_expert == 8 ? DType::Q8_0 : t;
  if (contains(name, "ffn_down")) {
    if (ft == F::kQ2_K)
      t = DType::Q3_K;
    else if (ft == F::kQ2_K_S)
      t = i < n / 8 ? DType::Q4_K : t;
    else if (ft == F::kQ3_K_M)
      t = i < n / 16 ? DType::Q5_K : DType::Q4_K;
    else if (ft == F::kQ3_K_L)
      t = DType::Q5_K;
    else if (ft == F::kQ4_K_M)
      t = use_more_bits(i, n) ? DType::Q6_K : t;
    else if (i < n / 8 && ft == F::kIQ4_NL && !has_imatrix)
      t = DType::Q5_K;
    else if (ft == F::kQ5_K_M && use_more_bits(i, n))
      t = DType::Q6_K;
    else if (ft == F::kQ4_K_S && i < n / 8)
      t = DType::Q5_K;
    else if ((ft == F::kQ4_0 || ft == F::kQ5_0) && has_imatrix && i < n / 8)
      t = ft == F::kQ4_0 ? DType::Q4_1 : DType::Q5_1;
    return t;
  }
  if (contains(name, "attn_output.weight")) {
    if (m.n_expert == 8) {
      if (ft == F::kQ2_K || ft == F::kQ3_K_S || ft == F::kQ3_K_M || ft == F::kIQ4_NL ||
          ft == F::kQ4_K_S || ft == F::kQ4_K_M)
        t = DType::Q5_K;
    } else if (ft == F::kQ2_K) {
      t = DType::Q3_K;
    } else if (ft == F::kQ3_K_M) {
      t = DType::Q4_K;
    } else if (ft == F::kQ3_K_L) {
      t = DType::Q5_K;
    }
    return t;
  }
  if (contains(name, "attn_qkv.weight")) {
    if (ft == F::kQ3_K_M || ft == F::kQ3_K_L)
      t = DType::Q4_K;
    else if (ft == F::kQ4_K_M)
      t = DType::Q5_K;
    else if (ft == F::kQ5_K_M)
      t = DType::Q6_K;
  }
  return t;
}

}  // namespace

const QuantMix* find_quant_mix(std::string_view name) {
  std::string up(name);
  for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (up == "Q3_K" || up == "Q4_K" || up == "Q5_K") up += "_M";
  for (const QuantMix& m : kMixes)
    if (m.name == up) return &m;
  return nullptr;
}

std::vector<std::string> quant_mix_names() {
  std::vector<std::string> names;
  for (const QuantMix& m : kMixes) names.emplace_back(m.name);
  return names;
}

bool is_quantizable(std::string_view name, int n_dims) {
  if (n_dims < 2 || n_dims > 3) return false;
  if (name.size() < 6 || name.substr(name.size() - 6) != "weight") return false;
  return !contains(name, "_norm.weight") && !contains(name, "ffn_gate_inp.weight") &&
         name != "position_embd.weight" && name != "token_types.weight";
}

DType fit_rows(DType t, int64_t row_len) {
  if (row_len % dtype_info(t).block_size == 0) return t;
  DType f = DType::F16;
  switch (t) {
    case DType::Q2_K:
    case DType::Q3_K:
      f = DType::IQ4_NL;
      break;
    case DType::Q4_K:
      f = DType::Q5_0;
      break;
    case DType::Q5_K:
      f = DType::Q5_1;
      break;
    case DType::Q6_K:
      f = DType::Q8_0;
      break;
    default:
      break;
  }
  return row_len % dtype_info(f).block_size == 0 ? f : DType::F16;
}

DType mix_type(const QuantMix& mix, std::string_view name, int64_t row_len,
               const MixModelFacts& model, bool pure, bool has_imatrix) {
  if (!is_quantized(mix.base)) return mix.base;
  const DType t = pure ? mix.base : mixed_type(mix, name, row_len, model, has_imatrix);
  return fit_rows(t, row_len);
}

}  // namespace slm::model
