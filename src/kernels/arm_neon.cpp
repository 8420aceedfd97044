// AArch64 Advanced SIMD kernels for every type (any ARMv8-A). dispatch.cpp
// layers the SDOT variants of arm_neon_dotprod.cpp on top when the CPU
// reports asimddp.
#include <arm_neon.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#include "base/fp16.h"
#include "kernels/blocks.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

// Widening multiplies to int16 (|a b| <= 16384 fits), pairwise-accumulated
// into int32.
inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
  return vpadalq_s16(acc, vmull_high_s8(a, b));
}

#include "kernels/arm_kernels128.inc"

}  // namespace

void fill_neon(TypeTable& table) {
  fill_128(table);
}

}  // namespace slm::kernels
