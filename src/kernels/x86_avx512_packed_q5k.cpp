// AVX-512 VNNI tile over packed Q5_K groups for 1..kPackMaxTokens tokens
// (layout in internal.h). Per super-block and 32-wide sub-block j: the 16
// rows' 8 words of levels are unpacked once (nibble, then bit j of the qh
// word moved to bit 4 and merged with one VPTERNLOGD), and every token of the
// tile spends 8 VPDPBUSD on them (rows in lanes), scaled by the rows' 6-bit
// scales with VPMULLD. The mins term is 4 VPMADDWD per token over the paired
// mins (m[4][16][2]) and the token's sub-block sums as int16 pairs (|sum| <=
// 32 x 128 fits). Integer sums are exact, so the float steps are those of
// tile_scalar_q5_k and the bits match it.
//
// GCC 12's avx512fintrin.h builds its "undefined" vectors as `__m512i __Y =
// __Y;`, which -Wuninitialized flags once inlined (a known false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>
#include <utility>

#include "kernels/blocks.h"
#include "kernels/internal.h"
#include "kernels/x86_avx512_tile.h"

namespace slm::kernels {
namespace {

using namespace packed_q5k;

using avx512_tile::bcast_sum_pair;
using avx512_tile::bcast_word;

// Bit kJ of every byte moved to bit 4 (the other bits are masked later; a
// 16-bit shift by at most 4 keeps bit 4 of each byte within its byte).
template <int kJ>
[[gnu::always_inline]] inline __m512i bit_to_4(__m512i v) {
  if constexpr (kJ <= 4)
    return _mm512_slli_epi16(v, 4 - kJ);
  else
    return _mm512_srli_epi16(v, kJ - 4);
}

// Sub-block kJ of a super-block: adds scale_j x dot_j to isum[t] (16 rows in
// lanes) for each of the kNt tokens' Q8_K quants q[t].
template <int kJ, int kNt>
[[gnu::always_inline]] inline void sub_block(const uint8_t* blk, const int8_t* const* q,
                                             __m512i* isum) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
  __m512i w[8];
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) {
    const __m512i v = _mm512_loadu_si512(blk + kQs + 64 * (8 * (kJ / 2) + k));
    const __m512i nibble =
        kJ % 2 == 0 ? _mm512_and_si512(v, low4) : _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
    const __m512i high = bit_to_4<kJ>(_mm512_loadu_si512(blk + kQh + 64 * k));
    w[k] = _mm512_ternarylogic_epi32(nibble, high, bit4, 0xF8);  // nibble | (high & bit4)
  }
  const __m512i sc =
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kSc + 16 * kJ)));
  // One token: two chains so that consecutive VPDPBUSDs do not wait on each
  // other; more tokens interleave their own chains.
  constexpr int kChains = kNt == 1 ? 2 : 1;
#pragma GCC unroll 8
  for (int t = 0; t < kNt; ++t) {
    const int8_t* qt = q[t] + 32 * kJ;
    __m512i s[kChains];
#pragma GCC unroll 2
    for (int c = 0; c < kChains; ++c) s[c] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k)
      s[k % kChains] = _mm512_dpbusd_epi32(s[k % kChains], w[k], bcast_word(qt + 4 * k));
    __m512i dot = s[0];
    if constexpr (kChains == 2) dot = _mm512_add_epi32(dot, s[1]);
    isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(dot, sc));
  }
}

template <int kNt, int... kJ>
[[gnu::always_inline]] inline void sub_blocks(const uint8_t* blk, const int8_t* const* q,
                                              __m512i* isum, std::integer_sequence<int, kJ...>) {
  (sub_block<kJ, kNt>(blk, q, isum), ...);
}

// One token decoding multiplies each weight byte once and waits on memory,
// yet it does not prefetch: on AMD Zen 4 (family 25 model 17) touching the
// next super-block (45 lines at once) held this tile to 7.2 GB/s against 12.0
// without (1 thread, a loaded machine; x86_avx512_tile.h). Taking a chunk's
// two sub-blocks together, so each qs vector is loaded once and in memory
// order, measured slower still (7.7 GB/s): the order below stays.
template <int kNt>
void tile_q5_k(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy,
               int nr) {
  __m512 acc[kNt];
#pragma GCC unroll 8
  for (int t = 0; t < kNt; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = group + b * kBytes;
    const int8_t* q[kNt];
    __m512i isum[kNt];
#pragma GCC unroll 8
    for (int t = 0; t < kNt; ++t) {
      q[t] = static_cast<const BlockQ8_K*>(act[t].q)[b].qs;
      isum[t] = _mm512_setzero_si512();
    }
    // The head: row scales, and the mins as int16 pairs (m[p]: sub-blocks 2p,
    // 2p + 1) for token t's mins term against its sub-block sums.
    __m512 d, dmin;
    __m512i m[4];
    auto head = [&]() __attribute__((always_inline)) {
#pragma GCC unroll 4
      for (int p = 0; p < 4; ++p)
        m[p] = _mm512_cvtepu8_epi16(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kM + 32 * p)));
      d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kD)));
      dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kDmin)));
    };
    auto mins_term = [&](int t) __attribute__((always_inline)) {
      const int32_t* corr = act[t].corr + kKCorr * b;
      __m512i minsum = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int p = 0; p < 4; ++p)
        minsum = _mm512_add_epi32(minsum, _mm512_madd_epi16(m[p], bcast_sum_pair(corr, p)));
      return minsum;
    };
    // One token reads the head (the super-block's first lines) before the
    // quants, so its reads go in memory order: 14.4 against 11.8 GB/s after
    // them (Zen 4, 1 thread). More tokens keep those registers for the
    // sub-blocks.
    __m512i minsum0;
    if constexpr (kNt == 1) {
      head();
      minsum0 = mins_term(0);
    }
    sub_blocks<kNt>(blk, q, isum, std::make_integer_sequence<int, 8>{});
    if constexpr (kNt > 1) head();
#pragma GCC unroll 8
    for (int t = 0; t < kNt; ++t) {
      const __m512i minsum = kNt == 1 ? minsum0 : mins_term(t);
      const __m512 dy = _mm512_set1_ps(act[t].d[b]);
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), d), dy, acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(minsum), dmin), dy, acc[t]);
    }
  }
  const __mmask16 rows =
      nr == kPackRows ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << nr) - 1);
#pragma GCC unroll 8
  for (int t = 0; t < kNt; ++t) _mm512_mask_storeu_ps(y + t * ldy, rows, acc[t]);
}

void tile_any(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y, int64_t ldy,
              int nr) {
  with_count<kPackMaxTokens>(
      nt, [&](auto count) { tile_q5_k<decltype(count)::value>(nb, group, act, y, ldy, nr); });
}

}  // namespace

void fill_avx512_packed_q5k(TypeTable& table) {
  table.packed_tile[static_cast<int>(DType::Q5_K)] = tile_any;
  table.packed_native[static_cast<int>(DType::Q5_K)] = true;
}

}  // namespace slm::kernels
