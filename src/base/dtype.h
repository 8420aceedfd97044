// Tensor element types as numbered by GGUF (ggml_type). Formats, kernels and
// models share this table; it holds only layout facts (block size, bytes per
// block), no arithmetic.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace slm {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  // slm's own, never in a file (weight_type false; GGUF retired id 5, Q4_3):
  // the 6-bit type of column copies of Q6_K matrices (kernels.h ColumnMatrix).
  Q6_0 = 5,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ4_NL = 20,
  BF16 = 30,
};

struct DTypeInfo {
  std::string_view name;
  int64_t block_size;   // elements per block
  int64_t block_bytes;  // bytes per block
  bool weight_type;     // may appear in a model file slm loads
};

// Layout of a known type id, or nullopt for ids slm does not know.
std::optional<DTypeInfo> dtype_info(uint32_t id);
const DTypeInfo& dtype_info(DType t);
std::string_view dtype_name(DType t);
// Parses "Q4_0", "q4_k", "f16"...; nullopt when unknown.
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes of one row of n elements; n must be a multiple of the block size
// (callers check with row_fits first).
inline bool row_fits(DType t, int64_t n) { return n >= 0 && n % dtype_info(t).block_size == 0; }
inline int64_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& i = dtype_info(t);
  return n / i.block_size * i.block_bytes;
}

}  // namespace slm
