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

// kernels.h axpy_rows: 32 outputs stay in four registers while every row's
// FMA lands on them, then an 8-wide pass and a scalar tail (FMA too).
void axpy_rows_avx2(float* out, const float* a, int64_t nr, const float* w, int64_t ld,
                    int64_t nc) {
  int64_t c = 0;
  for (; c + 32 <= nc; c += 32) {
    __m256 y0 = _mm256_loadu_ps(out + c), y1 = _mm256_loadu_ps(out + c + 8);
    __m256 y2 = _mm256_loadu_ps(out + c + 16), y3 = _mm256_loadu_ps(out + c + 24);
    for (int64_t i = 0; i < nr; ++i) {
      const __m256 ai = _mm256_set1_ps(a[i]);
      const float* wi = w + i * ld + c;
      y0 = _mm256_fmadd_ps(ai, _mm256_loadu_ps(wi), y0);
      y1 = _mm256_fmadd_ps(ai, _mm256_loadu_ps(wi + 8), y1);
      y2 = _mm256_fmadd_ps(ai, _mm256_loadu_ps(wi + 16), y2);
      y3 = _mm256_fmadd_ps(ai, _mm256_loadu_ps(wi + 24), y3);
    }
    _mm256_storeu_ps(out + c, y0);
    _mm256_storeu_ps(out + c + 8, y1);
    _mm256_storeu_ps(out + c + 16, y2);
    _mm256_storeu_ps(out + c + 24, y3);
  }
  for (; c + 8 <= nc; c += 8) {
    __m256 y = _mm256_loadu_ps(out + c);
    for (int64_t i = 0; i < nr; ++i)
      y = _mm256_fmadd_ps(_mm256_set1_ps(a[i]), _mm256_loadu_ps(w + i * ld + c), y);
    _mm256_storeu_ps(out + c, y);
  }
  for (; c < nc; ++c) {
    float y = out[c];
    for (int64_t i = 0; i < nr; ++i) y = std::fma(a[i], w[i * ld + c], y);
    out[c] = y;
  }
}

// kernels.h axpy_rows_n: row after row (the 256-bit version is not the
// training target; its results stay those of axpy_rows_avx2).
void axpy_rows_n_avx2(float* out, int64_t ldo, const float* a, int64_t lda, int64_t nt, int64_t nr,
                      const float* w, int64_t ld, int64_t nc) {
  for (int64_t t = 0; t < nt; ++t) axpy_rows_avx2(out + t * ldo, a + t * lda, nr, w, ld, nc);
}

}  // namespace

void fill_avx2(TypeTable& table) {
  table.axpy_rows = axpy_rows_avx2;
  table.axpy_rows_n = axpy_rows_n_avx2;
  fill_256(table);
}

}  // namespace slm::kernels
