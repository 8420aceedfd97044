// AVX2 + FMA + F16C kernels (any x86-64 from Haswell / Zen 1 on). Compiled
// with per-file ISA flags (src/kernels/CMakeLists.txt); reached only through
// fill_avx2 after dispatch.cpp has checked the CPU.
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#include "base/fp16.h"
#include "kernels/blocks.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

// u8 x s8 products summed in pairs to int16 (no overflow: u <= 128 and
// |s| <= 127 give at most 2 * 128 * 127 < 32768), then pairs of int16 to int32.
inline __m256i mul_sum_u8s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// The scale is applied in the int16 -> int32 step, for free.
inline __m256i scaled_sum_u8s8(__m256i u, __m256i s, int scale_lo, int scale_hi) {
  const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(scale_hi)),
                                          _mm_set1_epi16(static_cast<int16_t>(scale_lo)));
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scales);
}

#include "kernels/x86_kernels256.inc"

}  // namespace

void fill_avx2(TypeTable& table) {
  fill_256(table);
}

}  // namespace slm::kernels
