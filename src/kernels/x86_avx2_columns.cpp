// AVX2 axpy_cols (kernels.h): a block of 32 outputs in four registers while
// R kept rows' blocks are added with FMAs, so y is loaded and stored once per
// R rows. Compiled with per-file ISA flags; reached through
// fill_avx2_columns after dispatch.cpp has checked the CPU.
#include <immintrin.h>

#include "kernels/internal.h"

namespace slm::kernels {
namespace {

template <DType kType>
constexpr size_t kBlockBytes = kType == DType::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);

// The 32 values of one block as four 8-lane float vectors, in order.
template <DType kType>
inline void load_block(const uint8_t* b, __m256 v[4]) {
  if constexpr (kType == DType::Q8_0) {
    const auto* q = reinterpret_cast<const BlockQ8_0*>(b)->qs;
    for (int i = 0; i < 4; ++i)
      v[i] = _mm256_cvtepi32_ps(
          _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * i))));
  } else {
    const auto* q = reinterpret_cast<const BlockQ4_0*>(b)->qs;
    const __m256i eight = _mm256_set1_epi32(8), mask = _mm256_set1_epi32(0x0F);
    for (int i = 0; i < 2; ++i) {
      const __m256i u =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * i)));
      v[i] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(u, mask), eight));
      v[i + 2] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(u, 4), eight));
    }
  }
}

template <DType kType, int kR>
inline void pass(float* y, int64_t nb, const uint8_t* base, size_t row_bytes, const int32_t* idx,
                 const float* a) {
  const uint8_t* r[kR];
  for (int q = 0; q < kR; ++q) r[q] = base + static_cast<size_t>(idx[q]) * row_bytes;
  for (int64_t j = 0; j < nb; ++j) {
    __m256 acc[4];
    for (int i = 0; i < 4; ++i) acc[i] = _mm256_loadu_ps(y + j * 32 + 8 * i);
    for (int q = 0; q < kR; ++q) {
      const uint8_t* b = r[q] + static_cast<size_t>(j) * kBlockBytes<kType>;
      uint16_t d;
      __builtin_memcpy(&d, b, 2);
      const __m256 s = _mm256_set1_ps(a[q] * _cvtsh_ss(d));
      __m256 v[4];
      load_block<kType>(b, v);
      for (int i = 0; i < 4; ++i) acc[i] = _mm256_fmadd_ps(s, v[i], acc[i]);
    }
    for (int i = 0; i < 4; ++i) _mm256_storeu_ps(y + j * 32 + 8 * i, acc[i]);
  }
}

template <DType kType>
void axpy_cols_avx2(float* y, int64_t nb, const uint8_t* base, size_t row_bytes, const int32_t* idx,
                    const float* a, int64_t n) {
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) pass<kType, 4>(y, nb, base, row_bytes, idx + k, a + k);
  for (; k < n; ++k) pass<kType, 1>(y, nb, base, row_bytes, idx + k, a + k);
}

}  // namespace

void fill_avx2_columns(TypeTable& t) {
  t.axpy_cols[static_cast<int>(DType::Q8_0)] = axpy_cols_avx2<DType::Q8_0>;
  t.axpy_cols[static_cast<int>(DType::Q4_0)] = axpy_cols_avx2<DType::Q4_0>;
}

}  // namespace slm::kernels
