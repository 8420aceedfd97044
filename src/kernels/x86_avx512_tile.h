// The frame the AVX-512 packed tiles share (x86_avx512_packed*.cpp): one
// 4-byte word broadcast, masked stores of a 16-row group's outputs, the
// one-token prefetch distance and the per-block loop with its float chains.
// Include only from files built with AVX-512 (F, BW) enabled.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/internal.h"

namespace slm::kernels::avx512_tile {

inline __m512i bcast_word(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Sub-block sums 2p and 2p + 1 of a K-quant token (corr) as one dword of
// int16 pairs (2p in the low half) broadcast to every lane, against mins
// paired the same way (VPMADDWD / VPDPWSSD); each sum fits int16 (32 or 16
// int8 values).
inline __m512i bcast_sum_pair(const int32_t* corr, int p) {
  const uint32_t pair =
      (static_cast<uint32_t>(corr[2 * p]) & 0xFFFFu) | static_cast<uint32_t>(corr[2 * p + 1]) << 16;
  return _mm512_set1_epi32(static_cast<int32_t>(pair));
}

inline void store_rows(float* y, __m512 v, int nr) {
  if (nr == kPackRows)
    _mm512_storeu_ps(y, v);
  else
    _mm512_mask_storeu_ps(y, static_cast<__mmask16>((1u << nr) - 1), v);
}

// Decoding (one token) multiplies each weight byte once, so the tile waits
// on memory. On an Intel Xeon (family 6 model 167), on top of the huge pages
// (packed.cpp), touching each line about 1 KiB ahead (whole blocks ahead, so
// a K-quant super-block or an F16 block asks for the next one) lifted packed
// Q4_0 / Q8_0 / Q4_K / F16 decode by 5-10% in bench_kernels (Q6_K: no
// change). Prefetches never fault, so running past the end of the matrix is
// harmless. Prompt tiles do enough arithmetic per byte that the hardware
// prefetchers keep up, and are left alone. The K-quant decode tiles (a
// super-block of 2-3 KiB, so a whole block ahead is a burst of 37-53
// prefetches) do not prefetch: on AMD Zen 4 (family 25 model 17) the burst
// held Q4_K / Q6_K / Q5_K decoding to 0.6-0.75x of the same tiles without it,
// and spreading it over the block gained nothing over none
// (x86_avx512_packed.cpp, x86_avx512_packed_q5k.cpp).
constexpr int64_t kPrefetchBytes = 1024;

// Touches the kBytes bytes at p, line by line, into L1.
template <int64_t kBytes>
[[gnu::always_inline]] inline void prefetch_bytes(const uint8_t* p) {
#pragma GCC unroll 64
  for (int64_t o = 0; o < kBytes; o += 64)
    _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
}

template <int64_t kBlockBytes>
[[gnu::always_inline]] inline void prefetch_ahead(const uint8_t* blk) {
  constexpr int64_t kAhead = (kPrefetchBytes + kBlockBytes - 1) / kBlockBytes * kBlockBytes;
  prefetch_bytes<kBlockBytes>(blk + kAhead);
}

// A batched decode step reads each pair of weight groups from memory once,
// with enough arithmetic per byte that the hardware prefetchers fall behind,
// so the Q4_0 / Q5_0 / Q8_0 pair tiles (x86_avx512_packed.cpp) fetch the
// pair kPairsAhead pairs on, block by block, in every call of more than 4
// tokens: memory stays busy through the whole step. Intel Xeon (family 6
// model 207), 16 tokens x 256 MB matrix, 6 alternating rounds, medians,
// when the tiles took 4-token passes and fetched ahead after the first:
// Q4_0 2 threads 204 -> 237 GMAC/s, 1 thread 102 -> 121; Q8_0 181 -> 192
// and 91 -> 103; 64-token prompts unchanged; prefetching in the first pass
// as well measured no better. With one 16-token call per pair, 2 rounds,
// 2 threads: without the prefetch Q4_0 279-321, with it 288-377; Q8_0
// 235-236 against 262-313. (With two 8-token calls, 4 pairs on instead of
// 2, or into L2 only (T1), made no difference on the whole model.) (The
// Q4_K pair, with more work per byte, gained 3-4%, within the noise, and
// does not.)
constexpr int64_t kPairsAhead = 2;

// The frame every tile shares: kChains float chains per token (16 rows in
// lanes; chain c of token t is acc[c * kNt + t]), block_fn(blk, b, acc) once
// per block of the group, then the chains' sum stored for the nr valid rows.
// One token prefetches ahead unless kPrefetch is false. Always inlined with
// the tile's lambda, so each tile compiles to the loop it would be written
// out (the chains stay in registers).
template <int kNt, int64_t kBlockBytes, int kChains = 1, bool kPrefetch = true, typename BlockFn>
[[gnu::always_inline]] inline void over_blocks(int64_t nb, const uint8_t* group, float* y,
                                               int64_t ldy, int nr, const BlockFn& block_fn) {
  __m512 acc[kChains * kNt];
#pragma GCC unroll 16
  for (int i = 0; i < kChains * kNt; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    if constexpr (kNt == 1 && kPrefetch) prefetch_ahead<kBlockBytes>(group + b * kBlockBytes);
    block_fn(group + b * kBlockBytes, b, acc);
  }
#pragma GCC unroll 8
  for (int t = 0; t < kNt; ++t) {
    __m512 sum = acc[t];
#pragma GCC unroll 2
    for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c * kNt + t]);
    store_rows(y + t * ldy, sum, nr);
  }
}

}  // namespace slm::kernels::avx512_tile
