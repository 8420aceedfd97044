// AVX-512 VNNI tiles over packed Q4_0 / Q5_0 / Q8_0 / Q4_K / Q6_K groups (and F16 FMA tiles)
// (layout in internal.h). One 512-bit VPDPBUSD multiplies 16 rows x 4 quants by 4 activation bytes
// broadcast to every lane, so lane r accumulates row r: a block of 32
// elements is 8 VPDPBUSD per token with no horizontal sums, one scale vector
// (16 fp16 -> f32 in one VCVTPH2PS) and one FMA per token. Weights are
// unpacked once per block for up to kPackMaxTokens tokens (prompt tiles).
//
// GCC 12's avx512fintrin.h builds its "undefined" vectors as `__m512i __Y =
// __Y;`, which -Wuninitialized flags once inlined here (a known false
// positive); nothing in this file reads uninitialized data.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "kernels/blocks.h"
#include "kernels/internal.h"
#include "kernels/x86_avx512_legacy_block.h"
#include "kernels/x86_avx512_tile.h"

namespace slm::kernels {
namespace {

using avx512_legacy::kScaleBytes;

using namespace avx512_tile;

// Zeroed integer sums of a K-quant super-block, one per token.
template <int kNt>
[[gnu::always_inline]] inline void zero_sums(__m512i (&isum)[kNt]) {
#pragma GCC unroll 4
  for (int t = 0; t < kNt; ++t) isum[t] = _mm512_setzero_si512();
}

// kWords words of unsigned weights per row and block (8 for Q8_0, 8 nibble
// words for Q4_0 unpacked from 4 loaded ones); word k pairs with activation
// bytes kActOffset[k].
template <DType kType, int kNt>
void tile(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy, int nr) {
  constexpr int64_t kBlockBytes = avx512_legacy::Block<kType>::kBytes;
  auto block = [&](const uint8_t* blk, int64_t b, __m512* acc) __attribute__((always_inline)) {
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    // w[k] pairs with activation bytes 4k..4k+3 of the block.
    __m512i w[8];
    avx512_legacy::weight_words<kType>(blk, w);
#pragma GCC unroll 8
    for (int t = 0; t < kNt; ++t) {
      const int8_t* q = static_cast<const BlockQ8_0*>(act[t].q)[b].qs;
      // Two chains so consecutive VPDPBUSDs do not wait on each other.
      __m512i s0 = _mm512_set1_epi32(act[t].corr[b]);
      __m512i s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int k = 0; k < 4; k += 1) {
        s0 = _mm512_dpbusd_epi32(s0, w[k], bcast_word(q + 4 * k));
        s1 = _mm512_dpbusd_epi32(s1, w[k + 4], bcast_word(q + 16 + 4 * k));
      }
      const __m512 sum = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), dw);
      acc[t] = _mm512_fmadd_ps(sum, _mm512_set1_ps(act[t].d[b]), acc[t]);
    }
  };
  over_blocks<kNt, kBlockBytes>(nb, group, y, ldy, nr, block);
}

// Two adjacent groups (group, then group + group_bytes: 16 + nr1 rows) for
// 1..16 tokens in one pass. Each broadcast activation word feeds both groups'
// VPDPBUSD: on Zen 5 (family 26) a VPDPBUSD whose operand is loaded (a
// broadcast or a full vector) sustains about 3.1 G/s on one core against
// 5.5-7 G/s from registers, so halving the loads per multiply is what lifts
// a prompt's tile. The 16 unpacked weight words stay in registers for every
// token; the 2 x kNt float accumulators live in L1 beyond 4 tokens (each
// token's two FMAs read and store theirs), which costs less than unpacking
// the block and converting its scales again in another pass: a 16-sequence
// decode step reads and unpacks each pair once.
// Tokens go four at a time, each token's sum per group one chain of eight
// VPDPBUSD, so 8 chains are in flight: with one token at a time the two VNNI
// ports waited on VPDPBUSD's latency (the hot samples sat on the conversions
// after each chain). Intel Xeon (family 6 model 207, no AMX; its cores
// sustain 5.3 G VPDPBUSD/s, 340 GMAC/s), bench_kernels 4096 x 4096, GMAC/s at
// 1 thread, two 8-token calls of one chain each -> 16-token calls taking two
// tokens at a time in four chains of four: 16 tokens Q4_0 179-187 -> 217,
// Q8_0 148-181 -> 202-203; 8 tokens Q4_0 177-179 -> 194-203. A 16-token step
// from the 256 MB matrix at 2 threads: Q4_0 269-272 -> 330-356 with one call
// per pair. Four tokens in single chains then drop the two adds per token
// that joined the split chains, 3 alternating rounds: 16 tokens Q8_0
// 207-208 -> 214-216 (Q4_0 unchanged, 219-220), 8 tokens Q8_0 156-157 ->
// 166-167, 4 tokens Q4_0 162-169 -> 175-176. With more than 4 tokens the
// tile fetches the pair kPairsAhead on (x86_avx512_tile.h).
// Integer sums are exact and the float steps those of tile(), so every row
// gets tile()'s bits.
template <DType kType, int kNt>
void pair_tile(int64_t nb, const uint8_t* group, int64_t group_bytes, const PackedAct* act,
               float* y, int64_t ldy, int nr1) {
  constexpr int64_t kBlockBytes = avx512_legacy::Block<kType>::kBytes;
  __m512 acc0[kNt], acc1[kNt];
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) acc0[t] = acc1[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk0 = group + b * kBlockBytes;
    const uint8_t* blk1 = blk0 + group_bytes;
    if constexpr (kNt > 4) {
      prefetch_bytes<kBlockBytes>(blk0 + 2 * kPairsAhead * group_bytes);
      prefetch_bytes<kBlockBytes>(blk1 + 2 * kPairsAhead * group_bytes);
    }
    __m512i w0[8], w1[8];
    avx512_legacy::weight_words<kType>(blk0, w0);
    avx512_legacy::weight_words<kType>(blk1, w1);
    const __m512 dw0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk0)));
    const __m512 dw1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk1)));
    // Tokens t .. t + kU - 1 (kU: 1 to 4) of block b: one chain of eight
    // VPDPBUSD per group and token, seeded with the correction, the 2 x kU
    // chains interleaved; a lone token splits each into words 0-3 and 4-7
    // (s, u), joined before the conversion, so 4 chains are in flight.
    auto tokens = [&](int t, auto units) __attribute__((always_inline)) {
      constexpr int kU = decltype(units)::value;
      constexpr int kSplit = kU == 1 ? 4 : 8;  // words of the s chains
      __m512i s0[kU], s1[kU], u0 = _mm512_setzero_si512(), u1 = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int v = 0; v < kU; ++v) s0[v] = s1[v] = _mm512_set1_epi32(act[t + v].corr[b]);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
#pragma GCC unroll 4
        for (int v = 0; v < kU; ++v) {
          // Word k pairs with activation bytes 4k.. (k < 4) or 16 + 4(k - 4)..
          const int8_t* q = static_cast<const BlockQ8_0*>(act[t + v].q)[b].qs;
          const __m512i x = bcast_word(q + (k < 4 ? 4 * k : 16 + 4 * (k - 4)));
          if (k < kSplit) {
            s0[v] = _mm512_dpbusd_epi32(s0[v], w0[k], x);
            s1[v] = _mm512_dpbusd_epi32(s1[v], w1[k], x);
          } else {
            u0 = _mm512_dpbusd_epi32(u0, w0[k], x);
            u1 = _mm512_dpbusd_epi32(u1, w1[k], x);
          }
        }
      }
      if constexpr (kU == 1) {
        s0[0] = _mm512_add_epi32(s0[0], u0);
        s1[0] = _mm512_add_epi32(s1[0], u1);
      }
#pragma GCC unroll 4
      for (int v = 0; v < kU; ++v) {
        const __m512 dy = _mm512_set1_ps(act[t + v].d[b]);
        acc0[t + v] =
            _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s0[v]), dw0), dy, acc0[t + v]);
        acc1[t + v] =
            _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s1[v]), dw1), dy, acc1[t + v]);
      }
    };
#pragma GCC unroll 4
    for (int t = 0; t + 4 <= kNt; t += 4) tokens(t, std::integral_constant<int, 4>{});
    if constexpr (kNt % 4 != 0) tokens(kNt / 4 * 4, std::integral_constant<int, kNt % 4>{});
  }
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) {
    store_rows(y + t * ldy, acc0[t], kPackRows);
    store_rows(y + t * ldy + kPackRows, acc1[t], nr1);
  }
}

// ------------------------------------------------------------------ Q4_K
// Per super-block and token: 8 sub-block dot products of 8 VPDPBUSD each
// (rows in lanes), scaled by the rows' 6-bit scales with VPMULLD, and the
// mins term from the activation's sub-block sums. Tokens go in passes of
// kNt <= 4 so a chunk's 16 unpacked weight vectors stay in registers.

// A Q4_K group's mins (its [8][16] bytes) as int16 pairs per row (lane):
// mp[p] holds min[2p] in the low half of each dword and min[2p + 1] in the
// high one, for q4_k_minsum; the same for every token of the super-block.
[[gnu::always_inline]] inline void q4_k_min_pairs(const uint8_t* mins, __m512i (&mp)[4]) {
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) {
    const __m512i lo = _mm512_cvtepu8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(mins + 16 * (2 * p))));
    const __m512i hi = _mm512_cvtepu8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(mins + 16 * (2 * p + 1))));
    mp[p] = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
  }
}

// Per row (lane): sum over the 8 sub-blocks j of min[j] x corr[j], the
// integer part of a Q4_K super-block's mins term for one token (mp: the
// group's q4_k_min_pairs, corr: the token's 8 sub-block sums), in 4
// VPDPWSSD where it took 8 VPMULLD (2 uops each) and 8 adds: a sum of 32
// int8 is at most 32 x 128 in size, so the sums pair up as int16 as the mins
// do (0..63), and the products' sum is the same integer.
[[gnu::always_inline]] inline __m512i q4_k_minsum(const __m512i (&mp)[4], const int32_t* corr) {
  __m512i minsum = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) minsum = _mm512_dpwssd_epi32(minsum, mp[p], bcast_sum_pair(corr, p));
  return minsum;
}

// A packed Q4_K super-block (internal.h): d[16], dmin[16] fp16, the 6-bit
// scales [8][16] and mins [8][16] bytes, then the quants.
namespace q4_k_block {
constexpr int64_t kSc = 2 * kScaleBytes, kM = kSc + 8 * kPackRows, kQs = kM + 8 * kPackRows;
constexpr int64_t kBlockBytes = kQs + kPackRows * 128;
}  // namespace q4_k_block

// One token's float step for a super-block, the same in every Q4_K tile (so
// they share bits): acc + isum x d x dy - minsum x dmin x dy, as two FMAs.
[[gnu::always_inline]] inline __m512 q4_k_accumulate(__m512 acc, __m512i isum, __m512i minsum,
                                                     __m512 d, __m512 dmin, float dy) {
  const __m512 vdy = _mm512_set1_ps(dy);
  acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), d), vdy, acc);
  return _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(minsum), dmin), vdy, acc);
}

template <int kNt>
void tile_q4_k(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy,
               int nr) {
  using namespace q4_k_block;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  auto block = [&](const uint8_t* blk, int64_t b, __m512* acc) __attribute__((always_inline)) {
    __m512i isum[kNt];
    zero_sums(isum);
    for (int c = 0; c < 4; ++c) {
      __m512i lo[8], hi[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m512i v = _mm512_loadu_si512(blk + kQs + 64 * (8 * c + k));
        lo[k] = _mm512_and_si512(v, low4);
        hi[k] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      }
      const __m512i sc_lo = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kSc + 16 * (2 * c))));
      const __m512i sc_hi = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kSc + 16 * (2 * c + 1))));
#pragma GCC unroll 4
      for (int t = 0; t < kNt; ++t) {
        const int8_t* q = static_cast<const BlockQ8_K*>(act[t].q)[b].qs + 64 * c;
        __m512i s_lo = _mm512_setzero_si512(), s_hi = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
          s_lo = _mm512_dpbusd_epi32(s_lo, lo[k], bcast_word(q + 4 * k));
          s_hi = _mm512_dpbusd_epi32(s_hi, hi[k], bcast_word(q + 32 + 4 * k));
        }
        isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(s_lo, sc_lo),
                                                             _mm512_mullo_epi32(s_hi, sc_hi)));
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    const __m512 dmin =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kScaleBytes)));
    __m512i mp[4];
    q4_k_min_pairs(blk + kM, mp);
#pragma GCC unroll 4
    for (int t = 0; t < kNt; ++t) {
      const __m512i minsum = q4_k_minsum(mp, act[t].corr + kKCorr * b);
      acc[t] = q4_k_accumulate(acc[t], isum[t], minsum, d, dmin, act[t].d[b]);
    }
  };
  over_blocks<kNt, kBlockBytes>(nb, group, y, ldy, nr, block);
}

// Two adjacent Q4_K groups (as pair_tile: each broadcast activation word
// feeds both groups' VPDPBUSD) for 1..4 tokens. Word by word: the token's
// two words (sub-blocks 2c and 2c + 1) are broadcast once, then each group's
// loaded word is unpacked and multiplied into its per-token sums, so only
// 2 weight vectors live at a time and 4 tokens' 16 sums fit the registers.
// The high nibbles stay in place (v & 0xF0, as decode_q4_k's) and the even
// sub-blocks' scales are taken 16 times, so the sums come out 16 times too
// large and are shifted back once per super-block and token: one AND per word
// and group where a shift and an AND were (at most 16 x 8 x 63 x 32 x 15 x 128
// < 2^29: no overflow). Intel Xeon (family 6 model 207, no AMX),
// bench_kernels 1 thread, alternating, GMAC/s: 16 tokens 172 -> 182, 8
// tokens 170 -> 176-178, 4 tokens 151-166 -> 173-176.
// Each sum is the same integer as tile_q4_k's, and the float steps are
// tile_q4_k's, so every row gets tile_q4_k's bits.
template <int kNt>
void pair_tile_q4_k(int64_t nb, const uint8_t* group, int64_t group_bytes, const PackedAct* act,
                    float* y, int64_t ldy, int nr1) {
  using namespace q4_k_block;
  const __m512i low4 = _mm512_set1_epi8(0x0F), high4 = _mm512_set1_epi8(static_cast<char>(0xF0));
  __m512 acc[2][kNt];
#pragma GCC unroll 4
  for (int t = 0; t < kNt; ++t) acc[0][t] = acc[1][t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk[2] = {group + b * kBlockBytes, group + b * kBlockBytes + group_bytes};
    __m512i isum[2][kNt];
    zero_sums(isum[0]);
    zero_sums(isum[1]);
    for (int c = 0; c < 4; ++c) {
      __m512i s_lo[2][kNt], s_hi[2][kNt];
      zero_sums(s_lo[0]);
      zero_sums(s_lo[1]);
      zero_sums(s_hi[0]);
      zero_sums(s_hi[1]);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        __m512i x_lo[kNt], x_hi[kNt];
#pragma GCC unroll 4
        for (int t = 0; t < kNt; ++t) {
          const int8_t* q = static_cast<const BlockQ8_K*>(act[t].q)[b].qs + 64 * c;
          x_lo[t] = bcast_word(q + 4 * k);
          x_hi[t] = bcast_word(q + 32 + 4 * k);
        }
#pragma GCC unroll 2
        for (int g = 0; g < 2; ++g) {
          const __m512i v = _mm512_loadu_si512(blk[g] + kQs + 64 * (8 * c + k));
          const __m512i lo = _mm512_and_si512(v, low4);
          const __m512i hi = _mm512_and_si512(v, high4);  // 16 x the level
#pragma GCC unroll 4
          for (int t = 0; t < kNt; ++t) {
            s_lo[g][t] = _mm512_dpbusd_epi32(s_lo[g][t], lo, x_lo[t]);
            s_hi[g][t] = _mm512_dpbusd_epi32(s_hi[g][t], hi, x_hi[t]);
          }
        }
      }
#pragma GCC unroll 2
      for (int g = 0; g < 2; ++g) {
        // isum holds 16 x the sum: the even sub-block's scale is taken 16 times.
        const __m512i sc_lo16 = _mm512_slli_epi32(
            _mm512_cvtepu8_epi32(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[g] + kSc + 16 * (2 * c)))),
            4);
        const __m512i sc_hi = _mm512_cvtepu8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[g] + kSc + 16 * (2 * c + 1))));
#pragma GCC unroll 4
        for (int t = 0; t < kNt; ++t)
          isum[g][t] =
              _mm512_add_epi32(isum[g][t], _mm512_add_epi32(_mm512_mullo_epi32(s_lo[g][t], sc_lo16),
                                                            _mm512_mullo_epi32(s_hi[g][t], sc_hi)));
      }
    }
#pragma GCC unroll 2
    for (int g = 0; g < 2; ++g) {
      const __m512 d =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[g])));
      const __m512 dmin = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[g] + kScaleBytes)));
      __m512i mp[4];
      q4_k_min_pairs(blk[g] + kM, mp);
#pragma GCC unroll 4
      for (int t = 0; t < kNt; ++t) {
        const __m512i minsum = q4_k_minsum(mp, act[t].corr + kKCorr * b);
        acc[g][t] = q4_k_accumulate(acc[g][t], _mm512_srai_epi32(isum[g][t], 4), minsum, d, dmin,
                                    act[t].d[b]);
      }
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < kNt; ++t) {
    store_rows(y + t * ldy, acc[0][t], kPackRows);
    store_rows(y + t * ldy + kPackRows, acc[1][t], nr1);
  }
}

// One token (decoding) streams each weight byte once, so the tile's job is to
// spend few vector ops per byte and to leave the stream to the hardware
// prefetchers: on AMD Zen 4 (family 25 model 17; 1 thread, 1 token x 256 MB,
// a loaded machine) tile_q4_k<1>, which touched the whole next super-block
// ahead, streamed 11.9 GB/s, the same tile without that 15.6, this one 17.9;
// spreading the prefetch over the chunks, or 1 KiB ahead, measured no better
// than none (x86_avx512_tile.h). The high nibbles stay in place (v & 0xF0 =
// 16 x level: one AND where a shift and an AND were), so the odd
// sub-blocks' dots come out exactly 16 times too large
// and their scaled sum is shifted back once per super-block (at most
// 16 x 4 x 63 x 32 x 15 x 128 < 2^28: no overflow). The sums are the same
// integers, so the bits are tile_q4_k's.
void decode_q4_k(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy,
                 int nr) {
  using namespace q4_k_block;
  const __m512i low4 = _mm512_set1_epi8(0x0F), high4 = _mm512_set1_epi8(static_cast<char>(0xF0));
  auto block = [&](const uint8_t* blk, int64_t b, __m512* acc) __attribute__((always_inline)) {
    // The head first (scales, mins: the super-block's first lines), so the
    // reads go in memory order: 6-11% over reading it after the quants.
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    const __m512 dmin =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kScaleBytes)));
    __m512i mp[4];
    q4_k_min_pairs(blk + kM, mp);
    const __m512i minsum = q4_k_minsum(mp, act[0].corr + kKCorr * b);
    const int8_t* q = static_cast<const BlockQ8_K*>(act[0].q)[b].qs;
    // isum_even: sum of sc x dot over sub-blocks 2c; isum_odd16: 16 x that over 2c + 1.
    __m512i isum_even = _mm512_setzero_si512(), isum_odd16 = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const int8_t* qc = q + 64 * c;
      __m512i s_even = _mm512_setzero_si512(), s_odd16 = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m512i v = _mm512_loadu_si512(blk + kQs + 64 * (8 * c + k));
        s_even = _mm512_dpbusd_epi32(s_even, _mm512_and_si512(v, low4), bcast_word(qc + 4 * k));
        s_odd16 =
            _mm512_dpbusd_epi32(s_odd16, _mm512_and_si512(v, high4), bcast_word(qc + 32 + 4 * k));
      }
      const __m512i sc_even = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kSc + 16 * (2 * c))));
      const __m512i sc_odd = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kSc + 16 * (2 * c + 1))));
      isum_even = _mm512_add_epi32(isum_even, _mm512_mullo_epi32(s_even, sc_even));
      isum_odd16 = _mm512_add_epi32(isum_odd16, _mm512_mullo_epi32(s_odd16, sc_odd));
    }
    const __m512i isum = _mm512_add_epi32(isum_even, _mm512_srai_epi32(isum_odd16, 4));
    acc[0] = q4_k_accumulate(acc[0], isum, minsum, d, dmin, act[0].d[b]);
  };
  over_blocks<1, kBlockBytes, 1, /*kPrefetch=*/false>(nb, group, y, ldy, nr, block);
}

// ------------------------------------------------------------------ Q6_K
// Levels (0..63) of the four quarters from the word triple (A, B, C) at wp
// (16 rows x 4 elements each; layout in internal.h). The qh bits are masked
// once into C & 0x33 (quarters 0 and 2) and C & 0xCC (1 and 3), so one 16-bit
// shift puts a quarter's two bits at bits 4-5 with zeros above them, and one
// VPTERNLOGD (0xE4: bits where low4 is set from the first operand, the
// others from the second) joins them to the nibble: 11 ops for 4 vectors
// where masking each piece took 17.
[[gnu::always_inline]] inline void q6_levels(const uint8_t* wp, __m512i (&e)[4]) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), m33 = _mm512_set1_epi8(0x33),
                mCC = _mm512_set1_epi8(static_cast<char>(0xCC));
  const __m512i a = _mm512_loadu_si512(wp), bb = _mm512_loadu_si512(wp + 64),
                c = _mm512_loadu_si512(wp + 128);
  const __m512i c02 = _mm512_and_si512(c, m33), c13 = _mm512_and_si512(c, mCC);
  e[0] = _mm512_ternarylogic_epi32(a, _mm512_slli_epi16(c02, 4), low4, 0xE4);
  e[1] = _mm512_ternarylogic_epi32(bb, _mm512_slli_epi16(c13, 2), low4, 0xE4);
  e[2] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(a, 4), c02, low4, 0xE4);
  e[3] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(bb, 4), _mm512_srli_epi16(c13, 2), low4, 0xE4);
}

// Per half h and word half (4 words = 16 rows x 16 elements of each of 4
// sub-blocks): 16 unpacked vectors and the 4 sub-blocks' scales, then per
// token 4 chains of 4 VPDPBUSD (seeded with the -32 correction) scaled by
// them. Up to 8 tokens in one pass: the sums beyond the registers live in L1.
template <int kNt>
void tile_q6_k(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy,
               int nr) {
  constexpr int64_t kSc = kScaleBytes, kW = kSc + 16 * kPackRows;
  constexpr int64_t kBlockBytes = kW + kPackRows * 192;
  auto block = [&](const uint8_t* blk, int64_t b, __m512* acc) __attribute__((always_inline)) {
    __m512i isum[kNt];
    zero_sums(isum);
    for (int h = 0; h < 2; ++h) {
      for (int half = 0; half < 2; ++half) {
        // e[quarter][kk]: levels of elements 128h + 32 quarter + 4 (4 half + kk)..
        __m512i e[4][4], sc[4];
#pragma GCC unroll 4
        for (int kk = 0; kk < 4; ++kk) {
          __m512i lv[4];
          q6_levels(blk + kW + ((h * 8 + 4 * half + kk) * 3) * 64, lv);
#pragma GCC unroll 4
          for (int quarter = 0; quarter < 4; ++quarter) e[quarter][kk] = lv[quarter];
        }
#pragma GCC unroll 4
        for (int quarter = 0; quarter < 4; ++quarter)
          sc[quarter] = _mm512_cvtepi8_epi32(_mm_loadu_si128(
              reinterpret_cast<const __m128i*>(blk + kSc + 16 * (8 * h + 2 * quarter + half))));
#pragma GCC unroll 8
        for (int t = 0; t < kNt; ++t) {
          const int8_t* q = static_cast<const BlockQ8_K*>(act[t].q)[b].qs + 128 * h + 16 * half;
          const int32_t* corr = act[t].corr + kKCorr * b;
          __m512i dot[4];
#pragma GCC unroll 4
          for (int quarter = 0; quarter < 4; ++quarter)
            dot[quarter] = _mm512_set1_epi32(corr[8 * h + 2 * quarter + half]);
#pragma GCC unroll 4
          for (int kk = 0; kk < 4; ++kk)
#pragma GCC unroll 4
            for (int quarter = 0; quarter < 4; ++quarter)
              dot[quarter] = _mm512_dpbusd_epi32(dot[quarter], e[quarter][kk],
                                                 bcast_word(q + 32 * quarter + 4 * kk));
          isum[t] = _mm512_add_epi32(
              isum[t], _mm512_add_epi32(_mm512_add_epi32(_mm512_mullo_epi32(dot[0], sc[0]),
                                                         _mm512_mullo_epi32(dot[1], sc[1])),
                                        _mm512_add_epi32(_mm512_mullo_epi32(dot[2], sc[2]),
                                                         _mm512_mullo_epi32(dot[3], sc[3]))));
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

// One token: as decode_q4_k, no prefetch, and each word triple's four level
// vectors go straight into four chains (one per quarter). Zen 4, 1 thread, a
// loaded machine: tile_q6_k<1> with its whole-block prefetch 10.8 GB/s,
// without it 14.2, this tile 19.2 (16.8 with the prefetch spread over the
// block).
void decode_q6_k(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy,
                 int nr) {
  constexpr int64_t kSc = kScaleBytes, kW = kSc + 16 * kPackRows;
  constexpr int64_t kBlockBytes = kW + kPackRows * 192;
  auto block = [&](const uint8_t* blk, int64_t b, __m512* acc) __attribute__((always_inline)) {
    const int32_t* corr = act[0].corr + kKCorr * b;
    __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 2
      for (int half = 0; half < 2; ++half) {
        const int8_t* q = static_cast<const BlockQ8_K*>(act[0].q)[b].qs + 128 * h + 16 * half;
        // dot[quarter]: sub-block 8h + 2 quarter + half, seeded with its -32 correction.
        __m512i dot[4];
#pragma GCC unroll 4
        for (int quarter = 0; quarter < 4; ++quarter)
          dot[quarter] = _mm512_set1_epi32(corr[8 * h + 2 * quarter + half]);
#pragma GCC unroll 4
        for (int kk = 0; kk < 4; ++kk) {
          __m512i lv[4];
          q6_levels(blk + kW + ((h * 8 + 4 * half + kk) * 3) * 64, lv);
#pragma GCC unroll 4
          for (int quarter = 0; quarter < 4; ++quarter)
            dot[quarter] = _mm512_dpbusd_epi32(dot[quarter], lv[quarter],
                                               bcast_word(q + 32 * quarter + 4 * kk));
        }
#pragma GCC unroll 4
        for (int quarter = 0; quarter < 4; ++quarter) {
          const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(
              reinterpret_cast<const __m128i*>(blk + kSc + 16 * (8 * h + 2 * quarter + half))));
          isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot[quarter], sc));
        }
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    acc[0] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), d),
                             _mm512_set1_ps(act[0].d[b]), acc[0]);
  };
  over_blocks<1, kBlockBytes, 1, /*kPrefetch=*/false>(nb, group, y, ldy, nr, block);
}

// ------------------------------------------------------------------ F16
// Column by column: one VCVTPH2PS turns the 16 rows' halfs into floats, one
// FMA per token with the token's element broadcast. Two chains per token
// (even and odd columns) hide the FMA latency when decoding; the scalar
// oracle sums in the same order.
template <int kNt>
void tile_f16(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy,
              int nr) {
  constexpr int64_t kBlockBytes = kPackRows * kQK32 * 2;
  auto block = [&](const uint8_t* blk, int64_t b, __m512* acc) __attribute__((always_inline)) {
    __m512* even = acc;
    __m512* odd = acc + kNt;
#pragma GCC unroll 4
    for (int c = 0; c < kQK32; c += 2) {
      const __m512 w0 =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + c * 32)));
      const __m512 w1 =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + c * 32 + 32)));
#pragma GCC unroll 8
      for (int t = 0; t < kNt; ++t) {
        const float* x = static_cast<const float*>(act[t].q) + b * kQK32 + c;
        even[t] = _mm512_fmadd_ps(w0, _mm512_set1_ps(x[0]), even[t]);
        odd[t] = _mm512_fmadd_ps(w1, _mm512_set1_ps(x[1]), odd[t]);
      }
    }
  };
  over_blocks<kNt, kBlockBytes, 2>(nb, group, y, ldy, nr, block);
}

// Two adjacent F16 groups for 1..8 tokens: each broadcast activation element
// feeds both groups' FMAs, so a column costs one broadcast per token for 32
// rows instead of 16 (tile_f16 with 8 tokens issues 9 loads per 8 FMAs).
// Both groups' 8 tokens take 16 accumulators, too many for tile_f16's two
// chains each, so the even columns run first over the whole row and the odd
// ones second: each chain sees tile_f16's operations in its order and the
// two are added as over_blocks adds them, giving tile_f16's bits.
template <int kNt>
void pair_tile_f16(int64_t nb, const uint8_t* group, int64_t group_bytes, const PackedAct* act,
                   float* y, int64_t ldy, int nr1) {
  constexpr int64_t kBlockBytes = kPackRows * kQK32 * 2;
  alignas(64) float even[2][kNt][kPackRows];
#pragma GCC unroll 1
  for (int parity = 0; parity < 2; ++parity) {
    __m512 acc0[kNt], acc1[kNt];
#pragma GCC unroll 8
    for (int t = 0; t < kNt; ++t) acc0[t] = acc1[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk0 = group + b * kBlockBytes;
      const uint8_t* blk1 = blk0 + group_bytes;
#pragma GCC unroll 4
      for (int c = parity; c < kQK32; c += 2) {
        const __m512 w0 =
            _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk0 + c * 32)));
        const __m512 w1 =
            _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk1 + c * 32)));
#pragma GCC unroll 8
        for (int t = 0; t < kNt; ++t) {
          const __m512 x = _mm512_set1_ps(static_cast<const float*>(act[t].q)[b * kQK32 + c]);
          acc0[t] = _mm512_fmadd_ps(w0, x, acc0[t]);
          acc1[t] = _mm512_fmadd_ps(w1, x, acc1[t]);
        }
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < kNt; ++t) {
      if (parity == 0) {
        _mm512_store_ps(even[0][t], acc0[t]);
        _mm512_store_ps(even[1][t], acc1[t]);
      } else {
        store_rows(y + t * ldy, _mm512_add_ps(_mm512_load_ps(even[0][t]), acc0[t]), kPackRows);
        store_rows(y + t * ldy + kPackRows, _mm512_add_ps(_mm512_load_ps(even[1][t]), acc1[t]),
                   nr1);
      }
    }
  }
}

// Pair tiles: F16's and Q4_0 / Q5_0 / Q8_0's in one pass, Q4_K's in passes
// of at most 4 tokens.
template <DType kType>
void pair_tile_any(int64_t nb, const uint8_t* group, int64_t group_bytes, const PackedAct* act,
                   int nt, float* y, int64_t ldy, int nr1) {
  if constexpr (kType == DType::F16) {  // its 8 tokens fit the registers: one pass
    with_count<kPackMaxTokens>(nt, [&](auto count) {
      pair_tile_f16<decltype(count)::value>(nb, group, group_bytes, act, y, ldy, nr1);
    });
    return;
  }
  if constexpr (kType == DType::Q4_K) {
    in_token_passes<4>(nt, [&](int t0, auto count) {
      pair_tile_q4_k<decltype(count)::value>(nb, group, group_bytes, act + t0, y + t0 * ldy, ldy,
                                             nr1);
    });
  } else {
    with_count<kPackPairMaxTokens>(nt, [&](auto count) {
      pair_tile<kType, decltype(count)::value>(nb, group, group_bytes, act, y, ldy, nr1);
    });
  }
}

// Full tiles of 8 tokens (prompts) or 1 (decoding) are the hot shapes; the
// rest cover prompt tails. The Q4_K tile takes at most 4 tokens a pass (its
// unpacked chunk fills the registers), Q6_K's up to 8 in one; one token takes
// their decode tiles.
template <DType kType>
void tile_any(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y, int64_t ldy,
              int nr) {
  auto pass = [&](int t0, auto count) {
    constexpr int kNt = decltype(count)::value;
    const PackedAct* a = act + t0;
    float* yt = y + t0 * ldy;
    if constexpr (kType == DType::Q4_K && kNt == 1)
      decode_q4_k(nb, group, a, yt, ldy, nr);
    else if constexpr (kType == DType::Q4_K)
      tile_q4_k<kNt>(nb, group, a, yt, ldy, nr);
    else if constexpr (kType == DType::Q6_K && kNt == 1)
      decode_q6_k(nb, group, a, yt, ldy, nr);
    else if constexpr (kType == DType::Q6_K)
      tile_q6_k<kNt>(nb, group, a, yt, ldy, nr);
    else if constexpr (kType == DType::F16)
      tile_f16<kNt>(nb, group, a, yt, ldy, nr);
    else
      tile<kType, kNt>(nb, group, a, yt, ldy, nr);
  };
  if constexpr (kType == DType::Q4_K)
    in_token_passes<4>(nt, pass);
  else  // nt <= kPackMaxTokens: one pass
    with_count<kPackMaxTokens>(nt, [&](auto count) { pass(0, count); });
}

// internal.h PackedRowFn. Q8_0: word k of row rr (elements 4k..4k+3 as
// q + 128) sits kPackRows words after word k - 1: one gather of 8 words is
// the row's 32 bytes in element order.
void row_q8_0(const uint8_t* group, int64_t block_bytes, int64_t b0, int64_t nb, int rr,
              float* dst) {
  const __m256i idx = _mm256_setr_epi32(0, 64, 128, 192, 256, 320, 384, 448);
  const __m512i bias = _mm512_set1_epi32(128);
  for (int64_t b = b0; b < b0 + nb; ++b, dst += 32) {
    const uint8_t* block = group + b * block_bytes;
    uint16_t h;
    std::memcpy(&h, block + 2 * rr, 2);
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(h));
    const __m256i q =
        _mm256_i32gather_epi32(reinterpret_cast<const int*>(block + kScaleBytes + rr * 4), idx, 1);
    const __m512i lo = _mm512_cvtepu8_epi32(_mm256_castsi256_si128(q));
    const __m512i hi = _mm512_cvtepu8_epi32(_mm256_extracti128_si256(q, 1));
    _mm512_storeu_ps(dst, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(lo, bias))));
    _mm512_storeu_ps(dst + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(hi, bias))));
  }
}

// Q4_0: 4 words of row rr; low nibbles are elements 0..15, high 16..31.
void row_q4_0(const uint8_t* group, int64_t block_bytes, int64_t b0, int64_t nb, int rr,
              float* dst) {
  const __m128i idx = _mm_setr_epi32(0, 64, 128, 192);
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m512i bias = _mm512_set1_epi32(8);
  for (int64_t b = b0; b < b0 + nb; ++b, dst += 32) {
    const uint8_t* block = group + b * block_bytes;
    uint16_t h;
    std::memcpy(&h, block + 2 * rr, 2);
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(h));
    const __m128i q =
        _mm_i32gather_epi32(reinterpret_cast<const int*>(block + kScaleBytes + rr * 4), idx, 1);
    const __m512i lo = _mm512_cvtepu8_epi32(_mm_and_si128(q, m4));
    const __m512i hi = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), m4));
    _mm512_storeu_ps(dst, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(lo, bias))));
    _mm512_storeu_ps(dst + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(hi, bias))));
  }
}

}  // namespace

void fill_avx512_packed(TypeTable& table) {
  table.packed_row[static_cast<int>(DType::Q8_0)] = row_q8_0;
  table.packed_row[static_cast<int>(DType::Q4_0)] = row_q4_0;
  static_assert(kPackRows == 16 && kPackMaxTokens == 8, "tiles are written for 16 x 8");
  table.packed_tile[static_cast<int>(DType::Q4_0)] = tile_any<DType::Q4_0>;
  table.packed_tile[static_cast<int>(DType::Q5_0)] = tile_any<DType::Q5_0>;
  table.packed_tile[static_cast<int>(DType::Q8_0)] = tile_any<DType::Q8_0>;
  table.packed_tile_pair[static_cast<int>(DType::Q4_0)] = pair_tile_any<DType::Q4_0>;
  table.packed_tile_pair[static_cast<int>(DType::Q5_0)] = pair_tile_any<DType::Q5_0>;
  table.packed_tile_pair[static_cast<int>(DType::Q8_0)] = pair_tile_any<DType::Q8_0>;
  for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0})
    table.packed_pair_tokens[static_cast<int>(t)] = kPackPairMaxTokens;
  table.packed_tile[static_cast<int>(DType::Q4_K)] = tile_any<DType::Q4_K>;
  table.packed_tile_pair[static_cast<int>(DType::Q4_K)] = pair_tile_any<DType::Q4_K>;
  table.packed_tile[static_cast<int>(DType::Q6_K)] = tile_any<DType::Q6_K>;
  table.packed_tile[static_cast<int>(DType::F16)] = tile_any<DType::F16>;
  table.packed_tile_pair[static_cast<int>(DType::F16)] = pair_tile_any<DType::F16>;
  for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::F16})
    table.packed_native[static_cast<int>(t)] = true;
}

}  // namespace slm::kernels
