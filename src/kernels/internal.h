// Shared by the kernel files only (not part of the public API): the per-ISA
// tables and the hooks each kernel file uses to fill them.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/kernels.h"

namespace slm::kernels {

// DType ids are small (< 31, see base/dtype.h), so a table is indexed by id.
constexpr int kTypeSlots = 31;

struct TypeTable {
  TypeTraits by_type[kTypeSlots];
  TypeTraits& operator[](DType t) { return by_type[static_cast<uint32_t>(t)]; }
  const TypeTraits& operator[](DType t) const { return by_type[static_cast<uint32_t>(t)]; }
};

// Each kernel file contributes the entries it implements; later fills override
// earlier ones, so an ISA table starts as a copy of the table below it.
void fill_scalar_legacy(TypeTable& table);   // Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL
void fill_scalar_kquants(TypeTable& table);  // Q2_K..Q6_K, Q8_K
void fill_scalar_float(TypeTable& table);    // F32 F16 BF16
void fill_avx2(TypeTable& table);
void fill_avx512(TypeTable& table);
void fill_neon(TypeTable& table);
void fill_neon_dotprod(TypeTable& table);

// ggml's nearest_int: round half to even through the float mantissa, exact for
// |x| < 2^22 (every caller scales into a small integer range first).
inline int nearest_int(float x) {
  const float shifted = x + 12582912.f;  // 1.5 * 2^23
  int32_t bits;
  __builtin_memcpy(&bits, &shifted, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

}  // namespace slm::kernels
