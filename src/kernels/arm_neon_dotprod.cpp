// AArch64 kernels with the ARMv8.2 dot-product instructions (SDOT). Compiled
// with -march=armv8.2-a+dotprod for this file only; reached only after
// dispatch.cpp saw HWCAP_ASIMDDP.
#include <arm_neon.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#include "base/fp16.h"
#include "kernels/blocks.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
  return vdotq_s32(acc, a, b);
}

#include "kernels/arm_kernels128.inc"

}  // namespace

void fill_neon_dotprod(TypeTable& table) {
  fill_128(table);
}

}  // namespace slm::kernels
