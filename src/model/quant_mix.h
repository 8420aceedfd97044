// Quantization mixes: which type each tensor of a model gets when a file is
// quantized to a "mix" such as Q4_K_M, following llama.cpp's
// llama_tensor_get_type (the February 2025 rules the fixtures were made with):
// the output matrix (or a tied embedding) one step up, attn_v and ffn_down
// with more bits in some layers, rows that do not hold a K-quant super-block
// falling back to a 32-element type. One place for `slm quantize` and
// `slm synth`, so the two agree tensor for tensor.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/dtype.h"

namespace slm::model {

// llama.cpp's llama_ftype numbers, as written to general.file_type.
enum class FileType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 7,
  kQ5_0 = 8,
  kQ5_1 = 9,
  kQ2_K = 10,
  kQ3_K_S = 11,
  kQ3_K_M = 12,
  kQ3_K_L = 13,
  kQ4_K_S = 14,
  kQ4_K_M = 15,
  kQ5_K_S = 16,
  kQ5_K_M = 17,
  kQ6_K = 18,
  kQ2_K_S = 21,
  kIQ4_NL = 25,
  kBF16 = 32,
};

struct QuantMix {
  std::string_view name;  // "Q4_K_M"
  FileType ftype;
  DType base;  // the type of a matrix no rule singles out
};

// The mix a name selects (case-insensitive), or nullptr. As in llama-quantize,
// the plain names Q3_K, Q4_K and Q5_K are aliases of the _M mixes.
const QuantMix* find_quant_mix(std::string_view name);
// Canonical names, for help texts (aliases excluded).
std::vector<std::string> quant_mix_names();

// What the rules need to know about the model besides the tensor.
struct MixModelFacts {
  int64_t n_layer = 0;
  int64_t n_expert = 0;    // 0 or 1: dense
  int64_t n_gqa = 1;       // n_head / n_head_kv
  bool has_output = true;  // false: token_embd doubles as the output matrix
};

// Whether llama.cpp quantizes a tensor at all: 2-D or 3-D, named *weight,
// not a norm, not an MoE router (ffn_gate_inp), not a positional embedding.
// Others keep their type.
bool is_quantizable(std::string_view name, int n_dims);

// The type a quantizable tensor gets (row_len = ne[0]). pure: every matrix of
// the mix's base type (llama-quantize --pure), row fallbacks still applied.
// has_imatrix changes two rules (IQ4_NL and Q4_0/Q5_0 ffn_down). Per-layer
// rules take the layer from the name (blk.N.), which equals llama.cpp's
// running attn_v / ffn_down counters for models with one of each per layer.
DType mix_type(const QuantMix& mix, std::string_view name, int64_t row_len,
               const MixModelFacts& model, bool pure = false, bool has_imatrix = false);

// The type llama.cpp falls back to when t's block does not divide row_len.
DType fit_rows(DType t, int64_t row_len);

}  // namespace slm::model
