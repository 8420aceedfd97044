// AVX-512 VNNI tiles over packed Q4_1 / Q5_1 / IQ4_NL groups (layout in
// internal.h, oracle in packed_legacy2.cpp), 1..kPackMaxTokens tokens a call.
// As for Q4_0 (x86_avx512_packed.cpp): a block's 4 nibble words unpack once
// into 8 words of unsigned weights [16 rows x 4 quants], then per token 8
// VPDPBUSD with the activation's 4-byte words broadcast, lane r = row r.
//  - Q4_1 / Q5_1: the levels are unsigned already; the min's term
//    m * dy * sum(qy) takes the activation's block sum (PackedAct::corr).
//  - IQ4_NL: one VPSHUFB per word looks the nibbles up in the code book
//    stored + 128 (1..241, unsigned), and corr = -128 * sum(qy) seeds the sum,
//    so the integer is exactly sum(value * qy).
// The float steps are the scalar vec_dot's (plain multiplies and adds, no
// FMA; the library builds with -ffp-contract=off), so every token gets the
// oracle's bits.
//
// GCC 12's avx512fintrin.h builds its "undefined" vectors as `__m512i __Y =
// __Y;`, which -Wuninitialized flags once inlined (a known false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/blocks.h"
#include "kernels/internal.h"
#include "kernels/x86_avx512_legacy_block.h"
#include "kernels/x86_avx512_tile.h"

namespace slm::kernels {
namespace {

constexpr int64_t kScaleBytes = kPackRows * 2;

// Section offsets of a packed block (packed_legacy2.cpp).
template <DType kType>
struct Layout {
  static constexpr bool kMin = packed_has_min(kType);
  static constexpr int64_t kQh = kMin ? 2 * kScaleBytes : kScaleBytes;  // Q5_1 only
  static constexpr int64_t kQs = kQh + (kType == DType::Q5_1 ? kPackRows * 4 : 0);
  static constexpr int64_t kBytes = kQs + kPackRows * kQK32 / 2;
};

// The IQ4_NL code book + 128, as VPSHUFB's 16-byte table.
struct BiasedBook {
  alignas(16) uint8_t v[16];
};
constexpr BiasedBook biased_book() {
  BiasedBook b{};
  for (int i = 0; i < 16; ++i) b.v[i] = static_cast<uint8_t>(kIq4nlValues[i] + 128);
  return b;
}
constexpr BiasedBook kIq4nlBiased = biased_book();

using namespace avx512_tile;

// The block's weights as 8 words of unsigned bytes [8][16 rows x 4]: w[k]
// pairs with activation bytes 4k.. (low nibbles of loaded word k), w[4 + k]
// with 16 + 4k.. (its high nibbles); Q5_1 ORs bit k of qh's bytes in as
// bit 4; IQ4_NL maps each nibble through the biased code book.
template <DType kType>
[[gnu::always_inline]] inline void weight_words(const uint8_t* blk, __m512i w[8]) {
  using L = Layout<kType>;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    const __m512i v = _mm512_loadu_si512(blk + L::kQs + 64 * k);
    w[k] = _mm512_and_si512(v, low4);
    w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
  }
  if constexpr (kType == DType::IQ4_NL) {
    const __m512i book =
        _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(kIq4nlBiased.v)));
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) w[k] = _mm512_shuffle_epi8(book, w[k]);
  }
  if constexpr (kType == DType::Q5_1) avx512_legacy::or_fifth_bits(blk + L::kQh, w);
}

// y[t * ldy + r] for kNt tokens and the nr valid rows of a group.
template <DType kType, int kNt>
void tile(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy, int nr) {
  using L = Layout<kType>;
  __m512 acc[kNt];
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = group + b * L::kBytes;
    if constexpr (kNt == 1) prefetch_ahead<L::kBytes>(blk);
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    __m512 mw = _mm512_setzero_ps();
    if constexpr (L::kMin)
      mw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kScaleBytes)));
    __m512i w[8];
    weight_words<kType>(blk, w);
#pragma GCC unroll 16
    for (int t = 0; t < kNt; ++t) {
      const int8_t* q = static_cast<const BlockQ8_0*>(act[t].q)[b].qs;
      const int32_t corr = act[t].corr[b];
      // Two chains so consecutive VPDPBUSDs do not wait on each other (one
      // chain per token measured 3-9% slower at 4 and 8 tokens).
      __m512i s0 = L::kMin ? _mm512_setzero_si512() : _mm512_set1_epi32(corr);
      __m512i s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        s0 = _mm512_dpbusd_epi32(s0, w[k], bcast_word(q + 4 * k));
        s1 = _mm512_dpbusd_epi32(s1, w[k + 4], bcast_word(q + 16 + 4 * k));
      }
      const __m512 dy = _mm512_set1_ps(act[t].d[b]);
      __m512 dot =
          _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_mul_ps(dw, dy));
      if constexpr (L::kMin)
        dot = _mm512_add_ps(
            dot, _mm512_mul_ps(_mm512_set1_ps(static_cast<float>(corr)), _mm512_mul_ps(mw, dy)));
      acc[t] = _mm512_add_ps(acc[t], dot);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) store_rows(y + t * ldy, acc[t], nr);
}

// Narrow tiles (1..kPackMaxTokens tokens) and wide ones (2..kPackWideTokens:
// batches of 9-16 sequences unpack each block once, not twice).
template <DType kType, int kMaxTokens = kPackMaxTokens>
void tile_any(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y, int64_t ldy,
              int nr) {
  in_token_passes<kMaxTokens>(nt, [&](int t0, auto count) {
    tile<kType, decltype(count)::value>(nb, group, act + t0, y + t0 * ldy, ldy, nr);
  });
}

}  // namespace

void fill_avx512_packed_legacy2(TypeTable& table) {
  static_assert(kPackRows == 16, "one 512-bit lane per row");
  for (DType t : {DType::Q4_1, DType::Q5_1, DType::IQ4_NL})
    table.packed_native[static_cast<int>(t)] = true;
  table.packed_tile[static_cast<int>(DType::Q4_1)] = tile_any<DType::Q4_1>;
  table.packed_tile[static_cast<int>(DType::Q5_1)] = tile_any<DType::Q5_1>;
  table.packed_tile[static_cast<int>(DType::IQ4_NL)] = tile_any<DType::IQ4_NL>;
  table.packed_tile_wide[static_cast<int>(DType::Q4_1)] = tile_any<DType::Q4_1, kPackWideTokens>;
  table.packed_tile_wide[static_cast<int>(DType::Q5_1)] = tile_any<DType::Q5_1, kPackWideTokens>;
  table.packed_tile_wide[static_cast<int>(DType::IQ4_NL)] =
      tile_any<DType::IQ4_NL, kPackWideTokens>;
}

}  // namespace slm::kernels
