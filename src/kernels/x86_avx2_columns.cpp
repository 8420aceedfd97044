// AVX2 axpy_cols (kernels.h): 8 output blocks at a time, their scales
// converted 8 per instruction and multiplied by each kept input once; then
// per block, 32 outputs in four registers take R (4 or 1) kept rows' FMAs,
// so y is loaded and stored once per R rows. Compiled with per-file ISA
// flags; reached through fill_avx2_columns after dispatch.cpp has checked
// the CPU.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/internal.h"

namespace slm::kernels {
namespace {

// The 32 values of one block as four 8-lane float vectors, in order.
template <DType kType>
inline void load_block(const uint8_t* q, __m256 v[4]) {
  if constexpr (kType == DType::Q8_0) {
    for (int i = 0; i < 4; ++i)
      v[i] = _mm256_cvtepi32_ps(
          _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * i))));
  } else {
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
inline void pass(float* y, const ColumnRows& w, int64_t b0, int64_t nb, const int32_t* idx,
                 const float* a, bool ahead) {
  const uint8_t* row[kR];
  const uint8_t* next[kR];
  for (int q = 0; q < kR; ++q) row[q] = w.data + static_cast<size_t>(idx[q]) * w.row_bytes;
  // Rows two passes ahead are fetched while this one computes (see the
  // AVX-512 file: runs at scattered rows are too short for the prefetchers).
  for (int q = 0; q < kR; ++q)
    next[q] = ahead ? w.data + static_cast<size_t>(idx[2 * kR + q]) * w.row_bytes : row[q];
  const size_t qoff = 2 * static_cast<size_t>(w.nb_row);
  constexpr int64_t kPerLine = 64 / column_quant_bytes(kType);
  for (int q = 0; q < kR; ++q)
    _mm_prefetch(reinterpret_cast<const char*>(next[q] + 2 * b0), _MM_HINT_T0);
  alignas(32) float s[kR][8];
  for (int64_t j0 = 0; j0 < nb; j0 += 8) {
    const int64_t m = std::min<int64_t>(8, nb - j0);
    for (int q = 0; q < kR; ++q) {
      alignas(16) uint16_t d[8] = {};
      std::memcpy(d, row[q] + 2 * (b0 + j0), 2 * static_cast<size_t>(m));
      const __m256 sc = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(d)));
      _mm256_store_ps(s[q], _mm256_mul_ps(_mm256_set1_ps(a[q]), sc));
    }
    for (int64_t j = j0; j < j0 + m; ++j) {
      if (j % kPerLine == 0)
        for (int q = 0; q < kR; ++q)
          _mm_prefetch(
              reinterpret_cast<const char*>(
                  next[q] + qoff + static_cast<size_t>(b0 + j) * column_quant_bytes(kType)),
              _MM_HINT_T0);
      __m256 acc[4];
      for (int i = 0; i < 4; ++i) acc[i] = _mm256_loadu_ps(y + j * 32 + 8 * i);
      for (int q = 0; q < kR; ++q) {
        const uint8_t* qs =
            row[q] + 2 * w.nb_row + static_cast<size_t>(b0 + j) * column_quant_bytes(kType);
        const __m256 sc = _mm256_set1_ps(s[q][j - j0]);
        __m256 v[4];
        load_block<kType>(qs, v);
        for (int i = 0; i < 4; ++i) acc[i] = _mm256_fmadd_ps(sc, v[i], acc[i]);
      }
      for (int i = 0; i < 4; ++i) _mm256_storeu_ps(y + j * 32 + 8 * i, acc[i]);
    }
  }
}

template <DType kType>
void axpy_cols_avx2(float* y, const ColumnRows& w, int64_t b0, int64_t nb, const int32_t* idx,
                    const float* a, int64_t n) {
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) pass<kType, 4>(y, w, b0, nb, idx + k, a + k, k + 12 <= n);
  for (; k < n; ++k) pass<kType, 1>(y, w, b0, nb, idx + k, a + k, false);
}

}  // namespace

// These float kernels are the AVX2 table's axpy_cols_float: the int8 ones
// (x86_avx2_columns_int8.cpp) replace them and their cut-offs, measured as
// these were. The float kernels' cut-offs, measured on an AMD EPYC Zen 5
// (family 26 model 2) run with SLM_ISA=avx2, by bench_prune (2 threads, 32
// tokens, best of 4), the copies used at every share against never, at 25 /
// 40 / 50 / 60% pruned (75 / 59 / 48 / 36% kept): Qwen2.5-0.5B-shaped Q8_0
// 0.78 / 0.96 / 1.14 / 1.30x dense; Q4_0 0.47 / 0.56 / 0.64 / 0.79x
// (TinyLlama-shaped 0.42 / 0.49 / 0.57 / 0.70x; bench_columns: the stacked
// gate/up copy matches dense at 15% kept). So Q8_0 pays below about 55%
// kept (a 0.5 cut-off sent the tokens above it dense: 1.01x at 50% pruned
// against 1.10x with the copies throughout), Q4_0 below a fifth. No Q5_0 or Q6_0 kernel here: their
// copies would run the scalar loops (Q4_K_M's Q5_0 copies: 0.10-0.17x dense), so none is used or
// built (the table below keeps 0).
void fill_avx2_columns(TypeTable& t) {
  t.axpy_cols[static_cast<int>(DType::Q8_0)] = axpy_cols_avx2<DType::Q8_0>;
  t.axpy_cols[static_cast<int>(DType::Q4_0)] = axpy_cols_avx2<DType::Q4_0>;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q8_0)] = 0.55;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q4_0)] = 0.2;
}

}  // namespace slm::kernels
