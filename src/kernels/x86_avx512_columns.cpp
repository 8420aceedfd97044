// AVX-512 axpy_cols (kernels.h): a block of 32 outputs in two registers while
// R kept rows' blocks are added with FMAs, so y is loaded and stored once per
// R rows. Compiled with per-file ISA flags; reached through
// fill_avx512_columns after dispatch.cpp has checked the CPU.
// GCC 12's _mm512_undefined_* are `__m512i __Y = __Y;`, a known false
// positive of -Wuninitialized once inlined; nothing here reads such data.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/internal.h"

namespace slm::kernels {
namespace {

template <DType kType>
constexpr size_t kBlockBytes = kType == DType::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);

// The 32 values of one block as two 16-lane integer vectors, as floats.
template <DType kType>
inline void load_block(const uint8_t* b, __m512& lo, __m512& hi) {
  if constexpr (kType == DType::Q8_0) {
    const auto* q = reinterpret_cast<const BlockQ8_0*>(b)->qs;
    lo = _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))));
    hi = _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16))));
  } else {
    const auto* q = reinterpret_cast<const BlockQ4_0*>(b)->qs;
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
    const __m512i eight = _mm512_set1_epi32(8);
    lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, _mm512_set1_epi32(0x0F)), eight));
    hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(v, 4), eight));
  }
}

template <DType kType, int kR>
inline void pass(float* y, int64_t nb, const uint8_t* base, size_t row_bytes, const int32_t* idx,
                 const float* a) {
  const uint8_t* r[kR];
  for (int q = 0; q < kR; ++q) r[q] = base + static_cast<size_t>(idx[q]) * row_bytes;
  for (int64_t j = 0; j < nb; ++j) {
    __m512 y0 = _mm512_loadu_ps(y + j * 32), y1 = _mm512_loadu_ps(y + j * 32 + 16);
    for (int q = 0; q < kR; ++q) {
      const uint8_t* b = r[q] + static_cast<size_t>(j) * kBlockBytes<kType>;
      uint16_t d;
      __builtin_memcpy(&d, b, 2);
      const __m512 s = _mm512_set1_ps(a[q] * _cvtsh_ss(d));
      __m512 lo, hi;
      load_block<kType>(b, lo, hi);
      y0 = _mm512_fmadd_ps(s, lo, y0);
      y1 = _mm512_fmadd_ps(s, hi, y1);
    }
    _mm512_storeu_ps(y + j * 32, y0);
    _mm512_storeu_ps(y + j * 32 + 16, y1);
  }
}

template <DType kType>
void axpy_cols_512(float* y, int64_t nb, const uint8_t* base, size_t row_bytes, const int32_t* idx,
                   const float* a, int64_t n) {
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) pass<kType, 4>(y, nb, base, row_bytes, idx + k, a + k);
  for (; k < n; ++k) pass<kType, 1>(y, nb, base, row_bytes, idx + k, a + k);
}

}  // namespace

void fill_avx512_columns(TypeTable& t) {
  t.axpy_cols[static_cast<int>(DType::Q8_0)] = axpy_cols_512<DType::Q8_0>;
  t.axpy_cols[static_cast<int>(DType::Q4_0)] = axpy_cols_512<DType::Q4_0>;
}

}  // namespace slm::kernels
