// AVX-512 axpy_cols (kernels.h): 16 output blocks at a time, their scales
// converted 16 per instruction and multiplied by each kept input once; then
// per block, 32 outputs in two registers take R (8, 4 or 1) kept rows' FMAs,
// so y is loaded and stored once per R rows and the scale broadcasts come
// from memory (no shuffle-port work). Compiled with per-file ISA flags;
// reached through fill_avx512_columns after dispatch.cpp has checked the CPU.
// GCC 12's _mm512_undefined_* are `__m512i __Y = __Y;`, a known false
// positive of -Wuninitialized once inlined; nothing here reads such data.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <iterator>

#include "kernels/internal.h"

namespace slm::kernels {
namespace {

// The 32 values of one block as two 16-lane float vectors.
template <DType kType>
inline void load_block(const uint8_t* q, __m512& lo, __m512& hi) {
  if constexpr (kType == DType::Q8_0) {
    lo = _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))));
    hi = _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16))));
  } else if constexpr (kType == DType::Q5_0) {
    // Each lane's nibble with its high bit from qh as bit 4 (set through a
    // mask register), then a 32-entry table of q - 16 over two registers.
    const __m512 t_lo =
        _mm512_setr_ps(-16, -15, -14, -13, -12, -11, -10, -9, -8, -7, -6, -5, -4, -3, -2, -1);
    const __m512 t_hi = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    uint32_t qh;
    __builtin_memcpy(&qh, q, 4);
    const __m512i v =
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 4)));
    const __m512i nib = _mm512_set1_epi32(0x0F), bit = _mm512_set1_epi32(16);
    const __m512i i_lo = _mm512_and_si512(v, nib), i_hi = _mm512_srli_epi32(v, 4);
    lo = _mm512_permutex2var_ps(
        t_lo, _mm512_mask_or_epi32(i_lo, static_cast<__mmask16>(qh), i_lo, bit), t_hi);
    hi = _mm512_permutex2var_ps(
        t_lo, _mm512_mask_or_epi32(i_hi, static_cast<__mmask16>(qh >> 16), i_hi, bit), t_hi);
  } else {
    // A 16-entry table of q - 8 as floats, indexed by each lane's low four
    // bits (vpermps ignores the rest): the nibble's value in one instruction.
    const __m512 table = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
    lo = _mm512_permutexvar_ps(v, table);
    hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
  }
}

template <DType kType, int kR>
inline void pass(float* y, const ColumnRows& w, int64_t b0, int64_t nb, const int32_t* idx,
                 const float* a, bool ahead) {
  const uint8_t* row[kR];
  const uint8_t* next[kR];
  for (int q = 0; q < kR; ++q) row[q] = w.data + static_cast<size_t>(idx[q]) * w.row_bytes;
  // The next pass's rows are fetched while this one computes, a line per
  // row every 64 bytes of quants: runs at scattered rows are too short for
  // the hardware prefetchers to find.
  for (int q = 0; q < kR; ++q)
    next[q] = ahead ? w.data + static_cast<size_t>(idx[2 * kR + q]) * w.row_bytes : row[q];
  const size_t qoff = 2 * static_cast<size_t>(w.nb_row);
  constexpr int64_t kPerLine = 64 / column_quant_bytes(kType);
  for (int q = 0; q < kR; ++q)
    _mm_prefetch(reinterpret_cast<const char*>(next[q] + 2 * b0), _MM_HINT_T0);
  alignas(64) float s[kR][16];
  for (int64_t j0 = 0; j0 < nb; j0 += 16) {
    const int64_t m = std::min<int64_t>(16, nb - j0);
    const __mmask16 mask = static_cast<__mmask16>((1u << m) - 1);
    for (int q = 0; q < kR; ++q) {
      const __m256i d = _mm256_maskz_loadu_epi16(mask, row[q] + 2 * (b0 + j0));
      _mm512_store_ps(s[q], _mm512_mul_ps(_mm512_set1_ps(a[q]), _mm512_cvtph_ps(d)));
    }
    for (int64_t j = j0; j < j0 + m; ++j) {
      if (j % kPerLine == 0)
        for (int q = 0; q < kR; ++q)
          _mm_prefetch(
              reinterpret_cast<const char*>(
                  next[q] + qoff + static_cast<size_t>(b0 + j) * column_quant_bytes(kType)),
              _MM_HINT_T0);
      __m512 y0 = _mm512_loadu_ps(y + j * 32), y1 = _mm512_loadu_ps(y + j * 32 + 16);
      for (int q = 0; q < kR; ++q) {
        const uint8_t* qs =
            row[q] + 2 * w.nb_row + static_cast<size_t>(b0 + j) * column_quant_bytes(kType);
        const __m512 sc = _mm512_set1_ps(s[q][j - j0]);
        __m512 lo, hi;
        load_block<kType>(qs, lo, hi);
        y0 = _mm512_fmadd_ps(sc, lo, y0);
        y1 = _mm512_fmadd_ps(sc, hi, y1);
      }
      _mm512_storeu_ps(y + j * 32, y0);
      _mm512_storeu_ps(y + j * 32 + 16, y1);
    }
  }
}

template <DType kType>
void axpy_cols_512(float* y, const ColumnRows& w, int64_t b0, int64_t nb, const int32_t* idx,
                   const float* a, int64_t n) {
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) pass<kType, 8>(y, w, b0, nb, idx + k, a + k, k + 24 <= n);
  for (; k + 4 <= n; k += 4) pass<kType, 4>(y, w, b0, nb, idx + k, a + k, false);
  for (; k < n; ++k) pass<kType, 1>(y, w, b0, nb, idx + k, a + k, false);
}

}  // namespace

// The cut-offs (ColumnMatrix::pays_below) where these kernels run (AVX-512
// without VBMI: Skylake-SP, Cascade Lake), measured on an AMD EPYC Zen 5
// (family 26 model 2) with the int8 kernels switched off, by bench_prune (2
// threads, 32 tokens, best of 4), the copies used at every share against
// never, at 25 / 40 / 50 / 60% pruned (75 / 59 / 48 / 36% kept):
// Qwen2.5-0.5B-shaped Q8_0 0.80 / 0.92 / 1.00 / 1.30x dense; Q4_0 0.69 /
// 0.79 / 0.94 / 1.14x (TinyLlama-shaped 0.65 / 0.76 / 0.90 / 1.12x); Q4_K_M
// (Q5_0 copies, Q8_0 of its Q6_K) 0.59 / 0.70 / 0.85 / 0.99x. So Q8_0 pays
// below about 45% kept, Q4_0 and Q5_0 below 40% (Q4_K as Q5_0: 33%).
void fill_avx512_columns(TypeTable& t) {
  // The AVX2 table's int8 kernels (Q4_0 and Q8_0 only) give way to these
  // float ones, which cover Q5_0 too; fill_avx512_columns_int8 replaces
  // them in turn where the CPU has VBMI.
  if (t.axpy_cols_algo == ColsAlgo::kInt8) {
    std::copy(std::begin(t.axpy_cols_float), std::end(t.axpy_cols_float), std::begin(t.axpy_cols));
    std::fill(std::begin(t.axpy_cols_float), std::end(t.axpy_cols_float), nullptr);
    t.axpy_cols_algo = ColsAlgo::kFloat;
    t.axpy_cols_pays_below[static_cast<int>(DType::Q6_0)] = 0;
  }
  t.axpy_cols[static_cast<int>(DType::Q8_0)] = axpy_cols_512<DType::Q8_0>;
  t.axpy_cols[static_cast<int>(DType::Q4_0)] = axpy_cols_512<DType::Q4_0>;
  t.axpy_cols[static_cast<int>(DType::Q5_0)] = axpy_cols_512<DType::Q5_0>;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q8_0)] = 0.45;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q4_0)] = 0.4;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q5_0)] = 0.4;
}

}  // namespace slm::kernels
