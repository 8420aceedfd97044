// AVX-512 VNNI tiles over packed Q3_K and Q2_K groups (layout in internal.h), the
// batched-decode shape of x86_avx512_packed.cpp: lane r of every vector is
// row r, so one VPDPBUSD multiplies 16 rows x 4 levels by 4 activation bytes
// broadcast to all lanes, and each weight vector is unpacked once per
// super-block for all the tokens of a pass. The results are packed_k23.cpp's
// oracle bits: exact integer sums, then the same float steps.
//
// GCC 12's avx512fintrin.h builds its "undefined" vectors as `__m512i __Y =
// __Y;`, which -Wuninitialized flags once inlined here (a known false
// positive); nothing in this file reads uninitialized data.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/blocks.h"
#include "kernels/internal.h"
#include "kernels/x86_avx512_tile.h"

namespace slm::kernels {
namespace {

constexpr int64_t kHalfs = kPackRows * 2;

using namespace avx512_tile;

// ------------------------------------------------------------------ Q3_K
// Per half h and bit pair j, 8 level vectors (words k = 4 half + kk:
// elements 128h + 32j + 4k.., sub-blocks 8h + 2j + half), each the qs word's
// bits 2j..2j+1 ORed with bit 4h + j of the hm word moved to bit 2; then per
// token two chains of 4 VPDPBUSD seeded with the -4 offset correction, whose
// sums (|dot| <= 16 * 4 * 127) pair up as int16 for one VPDPWSSD against
// the rows' two int8 scales (a VPMULLD per sub-block cost ~15% at 4-8
// tokens). Eight levels at a time leave the registers to up to 8 tokens, so
// a pass unpacks each super-block once for kPackMaxTokens tokens (the words
// are reloaded per j from L1).
template <int kNt>
void tile_q3_k(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy,
               int nr) {
  constexpr int64_t kSc = kHalfs, kQs = kSc + 16 * kPackRows, kHm = kQs + kPackRows * 64;
  constexpr int64_t kBlockBytes = kHm + kPackRows * 32;
  const __m512i low2 = _mm512_set1_epi8(3), bit2 = _mm512_set1_epi8(4);
  auto block = [&](const uint8_t* blk, int64_t b, __m512* acc) __attribute__((always_inline)) {
    __m512i isum[kNt];
#pragma GCC unroll 8
    for (int t = 0; t < kNt; ++t) isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        __m512i e[2][4];
#pragma GCC unroll 2
        for (int half = 0; half < 2; ++half)
#pragma GCC unroll 4
          for (int kk = 0; kk < 4; ++kk) {
            const int k = 4 * half + kk;
            const __m512i v = _mm512_loadu_si512(blk + kQs + 64 * (8 * h + k));
            const __m512i m = _mm512_loadu_si512(blk + kHm + 64 * k);
            // Bit 4h + j of each hm byte to bit 2 (16-bit shifts: what
            // crosses from the neighbouring byte lands outside bit 2).
            const int s = 4 * h + j;
            const __m512i hb = s >= 2 ? _mm512_srli_epi16(m, s - 2) : _mm512_slli_epi16(m, 2 - s);
            const __m512i lo = j == 0 ? v : _mm512_srli_epi16(v, 2 * j);
            // (lo & low2) | (hb & bit2): 0xEA is A & B | C over (lo, low2, hb & bit2).
            e[half][kk] = _mm512_ternarylogic_epi32(lo, low2, _mm512_and_si512(hb, bit2), 0xEA);
          }
        // Sub-blocks sb, sb + 1: dword r holds row r's two int8 scales as int16.
        const int sb = 8 * h + 2 * j;
        const __m512i sc_pair = _mm512_mask_blend_epi16(
            0xAAAAAAAA,
            _mm512_cvtepi8_epi32(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kSc + 16 * sb))),
            _mm512_slli_epi32(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                  reinterpret_cast<const __m128i*>(blk + kSc + 16 * (sb + 1)))),
                              16));
#pragma GCC unroll 8
        for (int t = 0; t < kNt; ++t) {
          const int8_t* q = static_cast<const BlockQ8_K*>(act[t].q)[b].qs + 16 * sb;
          const int32_t* corr = act[t].corr + kKCorr * b + sb;
          __m512i dot0 = _mm512_set1_epi32(corr[0]), dot1 = _mm512_set1_epi32(corr[1]);
#pragma GCC unroll 4
          for (int kk = 0; kk < 4; ++kk) {
            dot0 = _mm512_dpbusd_epi32(dot0, e[0][kk], bcast_word(q + 4 * kk));
            dot1 = _mm512_dpbusd_epi32(dot1, e[1][kk], bcast_word(q + 16 + 4 * kk));
          }
          // |dot| <= 16 * 4 * 127 fits int16: both sub-blocks' products in one VPDPWSSD.
          const __m512i dots =
              _mm512_mask_blend_epi16(0xAAAAAAAA, dot0, _mm512_slli_epi32(dot1, 16));
          isum[t] = _mm512_dpwssd_epi32(isum[t], dots, sc_pair);
        }
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
#pragma GCC unroll 8
    for (int t = 0; t < kNt; ++t)
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), d),
                               _mm512_set1_ps(act[t].d[b]), acc[t]);
  };
  over_blocks<kNt, kBlockBytes>(nb, group, y, ldy, nr, block);
}

void tile_any_q3_k(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y,
                   int64_t ldy, int nr) {
  in_token_passes<kPackMaxTokens>(nt, [&](int t0, auto count) {
    tile_q3_k<decltype(count)::value>(nb, group, act + t0, y + t0 * ldy, ldy, nr);
  });
}

// ------------------------------------------------------------------ Q2_K
// The 4-bit scale folds into the weights: sc * level <= 45 is still an
// unsigned byte, so per sub-block one VPSHUFB maps each level to sc * level
// (table dword r = sc_r * 0x03020100, indexed by level + 4 (r % 4) within
// the 128-bit lane) and every token's 64 VPDPBUSD add into plain integer
// chains, with no per-sub-block multiply. The mins' term is 8 VPDPWSSD per
// token: the rows' min pairs (int16) against the activation's sub-block sum
// pairs. The exact integers are the oracle's (|isum| <= 45 * 127 * 256).
// Up to 8 tokens a pass; one token splits its sums over 4 chains, 2..4 over 2,
// so consecutive VPDPBUSDs do not wait on each other (m = 3, 4: +10-17%).
template <int kNt>
void tile_q2_k(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy,
               int nr) {
  constexpr int64_t kSc = 2 * kHalfs, kQs = kSc + 16 * kPackRows;
  constexpr int64_t kBlockBytes = kQs + kPackRows * 64;
  constexpr int kChains = kNt == 1 ? 4 : kNt <= 4 ? 2 : 1;
  const __m512i low2 = _mm512_set1_epi8(3), low4 = _mm512_set1_epi32(0xF);
  const __m512i ramp = _mm512_set1_epi32(0x03020100);
  // Level + 4 (r % 4): row r's table bytes within its 128-bit lane.
  const __m512i lane_rows = _mm512_set_epi32(0x0C0C0C0C, 0x08080808, 0x04040404, 0, 0x0C0C0C0C,
                                             0x08080808, 0x04040404, 0, 0x0C0C0C0C, 0x08080808,
                                             0x04040404, 0, 0x0C0C0C0C, 0x08080808, 0x04040404, 0);
  auto block = [&](const uint8_t* blk, int64_t b, __m512* acc) __attribute__((always_inline)) {
    __m512i isum[kNt * kChains];
#pragma GCC unroll 8
    for (int i = 0; i < kNt * kChains; ++i) isum[i] = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        // Dword r: scale bytes of sub-blocks 2p, 2p + 1 of row r as int16.
        const int p = 4 * h + j;
        const __m512i pair = _mm512_cvtepu8_epi16(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kSc + 32 * p)));
#pragma GCC unroll 2
        for (int half = 0; half < 2; ++half) {
          const __m512i sc = _mm512_and_si512(half == 0 ? pair : _mm512_srli_epi32(pair, 16), low4);
          const __m512i table = _mm512_mullo_epi32(sc, ramp);
          __m512i w[4];
#pragma GCC unroll 4
          for (int kk = 0; kk < 4; ++kk) {
            const __m512i v = _mm512_loadu_si512(blk + kQs + 64 * (8 * h + 4 * half + kk));
            const __m512i lo = j == 0 ? v : _mm512_srli_epi16(v, 2 * j);
            // (lo & low2) | lane_rows: 0xEA is A & B | C.
            w[kk] =
                _mm512_shuffle_epi8(table, _mm512_ternarylogic_epi32(lo, low2, lane_rows, 0xEA));
          }
#pragma GCC unroll 8
          for (int t = 0; t < kNt; ++t) {
            const int8_t* q =
                static_cast<const BlockQ8_K*>(act[t].q)[b].qs + 128 * h + 32 * j + 16 * half;
#pragma GCC unroll 4
            for (int kk = 0; kk < 4; ++kk) {
              __m512i& s = isum[t * kChains + kk % kChains];
              s = _mm512_dpbusd_epi32(s, w[kk], bcast_word(q + 4 * kk));
            }
          }
        }
      }
    }
    // Dword r of mins[p]: the mins of sub-blocks 2p, 2p + 1 of row r as int16.
    __m512i mins[8];
#pragma GCC unroll 8
    for (int p = 0; p < 8; ++p)
      mins[p] = _mm512_srli_epi16(_mm512_cvtepu8_epi16(_mm256_loadu_si256(
                                      reinterpret_cast<const __m256i*>(blk + kSc + 32 * p))),
                                  4);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    const __m512 dmin =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kHalfs)));
#pragma GCC unroll 8
    for (int t = 0; t < kNt; ++t) {
      // corr's 16 int32 sub-block sums as 8 dwords of int16 pairs.
      alignas(32) int32_t sums[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(sums),
                         _mm512_cvtepi32_epi16(_mm512_loadu_si512(act[t].corr + kKCorr * b)));
      __m512i minsum = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int p = 0; p < 8; ++p)
        minsum = _mm512_dpwssd_epi32(minsum, mins[p], _mm512_set1_epi32(sums[p]));
      __m512i s = isum[t * kChains];
#pragma GCC unroll 4
      for (int c = 1; c < kChains; ++c) s = _mm512_add_epi32(s, isum[t * kChains + c]);
      const __m512 dy = _mm512_set1_ps(act[t].d[b]);
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), d), dy, acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(minsum), dmin), dy, acc[t]);
    }
  };
  over_blocks<kNt, kBlockBytes>(nb, group, y, ldy, nr, block);
}

void tile_any_q2_k(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y,
                   int64_t ldy, int nr) {
  in_token_passes<kPackMaxTokens>(nt, [&](int t0, auto count) {
    tile_q2_k<decltype(count)::value>(nb, group, act + t0, y + t0 * ldy, ldy, nr);
  });
}

}  // namespace

void fill_avx512_packed_k23(TypeTable& table) {
  static_assert(kPackRows == 16, "tiles are written for 16-row groups");
  table.packed_tile[static_cast<int>(DType::Q3_K)] = tile_any_q3_k;
  table.packed_tile[static_cast<int>(DType::Q2_K)] = tile_any_q2_k;
  for (DType t : {DType::Q3_K, DType::Q2_K}) table.packed_native[static_cast<int>(t)] = true;
}

}  // namespace slm::kernels
