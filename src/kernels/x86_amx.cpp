// AMX-INT8 tiles over packed Q4_0 / Q5_0 / Q8_0 groups for 2..kPackWideTokens
// tokens: prompt processing and batched decoding (layout in internal.h).
//
// One TDPBSUD multiplies a block of up to 16 tokens x 32 signed activation
// bytes (tile A, rows = tokens) with the group's 16 rows x 32 unsigned weight
// bytes (tile B, VNNI layout: B[k][4 r + i] = element 4 k + i of row r),
// giving C[token][row] as exact int32 sums. The packed layout already is B's
// layout: word k of row r at (k * 16 + r) * 4, so a Q8_0 block loads as
// is, and a Q4_0 / Q5_0 block is unpacked once into 8 rows of 64 bytes for
// every token of the tile. Each row of C then takes the float steps of the
// VNNI tile (x86_avx512_packed.cpp) and of the scalar oracle: the integer
// sum plus the token's correction, times the rows' fp16 scales, one fused
// multiply-add with the token's scale; so the results are bit-identical to
// every other ISA whatever the token count.
//
// Prompts (packed_matmul) take the arranged tiles: the activations come as
// one contiguous stream per 16 tokens (arrange_tile_acts), and a call covers
// a group's whole token chunk, converting the group's blocks once into
// signed tile rows (q - offset) in a per-thread scratch that all its token
// tiles read; TDPBSSD then gives the corrected sum directly. Per block and
// 16 tokens the tile unit needs ~20 cycles (product, store) and the float
// steps ~30, so what counts is that they overlap (see kLag) and that the
// tile stores never wait behind stores that miss (tiles_stream's fetch_y).
//
// Linux hands out the tile data state only on request (arch_prctl
// ARCH_REQ_XCOMP_PERM); amx_permitted() asks once and dispatch.cpp offers the
// "amx" table only when the kernel agreed, so a refused or absent AMX falls
// back to the AVX-512 VNNI tables. This file alone is compiled with -mamx-*.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/internal.h"
#include "kernels/x86_amx_tile.h"
#include "kernels/x86_avx512_legacy_block.h"

namespace slm::kernels {
namespace {

using avx512_legacy::kScaleBytes;

// Two sets of tiles (two blocks in flight): weights (B) in tmm0 / tmm3, 8
// rows (K / 4) x 64 bytes (16 rows x 4); activations (A) in tmm1 / tmm4, nt
// rows (tokens) x 32 bytes; sums (C) in tmm2 / tmm5, nt rows x 16 int32.

// LDTILECFG costs about as much as a few blocks' tile work, so each thread
// keeps its configuration between calls and loads a new one only when the
// token count changes. The tile state is this thread's (no other code of
// slm uses AMX); it stays held after the call, as the next call reuses it.
void configure(int nt) {
  thread_local int configured = 0;
  if (configured == nt) return;
  configured = nt;
  amx::TileConfig cfg;
  for (int set = 0; set < 2; ++set) {
    cfg.rows[3 * set] = 8;
    cfg.colsb[3 * set] = 64;
    cfg.rows[3 * set + 1] = static_cast<uint8_t>(nt);
    cfg.colsb[3 * set + 1] = kQK32;
    cfg.rows[3 * set + 2] = static_cast<uint8_t>(nt);
    cfg.colsb[3 * set + 2] = 64;
  }
  amx::tile_memory(&cfg);
  _tile_loadconfig(&cfg);
}

// Asks for block `block` of an arranged stream (internal.h; kArrangedBlockBytes,
// ten lines) into L1, a line at a time.
[[gnu::always_inline]] inline void prefetch_arranged(const uint8_t* base, int64_t block) {
#pragma GCC unroll 16
  for (int64_t off = 0; off < kArrangedBlockBytes; off += 64)
    _mm_prefetch(reinterpret_cast<const char*>(base + block * kArrangedBlockBytes + off),
                 _MM_HINT_T0);
}

inline void store_rows(float* y, __m512 v, int nr) {
  if (nr == kPackRows)
    _mm512_storeu_ps(y, v);
  else
    _mm512_mask_storeu_ps(y, static_cast<__mmask16>((1u << nr) - 1), v);
}

// Where tile A and the float steps read a token's block b: Rows for
// PackedAct rows (one stride when evenly spaced, else a panel gathered per
// block), Arranged for arrange_tile_acts' stream (internal.h).
template <int kNt>
struct Rows {
  static constexpr int64_t kQ8 = sizeof(BlockQ8_0);
  static constexpr int64_t kQ8Qs = kQ8 - kQK32;  // offset of qs in BlockQ8_0
  const PackedAct* act;
  const uint8_t* q0;                         // token 0's first block
  int64_t stride;                            // bytes from one token's row to the next; 0: gather
  alignas(64) int8_t panel[2][kNt * kQK32];  // gathered activations (uneven rows)

  explicit Rows(const PackedAct* a) : act(a), q0(static_cast<const uint8_t*>(a[0].q)) {
    stride = kNt > 1 ? static_cast<const uint8_t*>(a[1].q) - q0 : 0;
    for (int t = 2; t < kNt; ++t)
      if (static_cast<const uint8_t*>(a[t].q) != q0 + stride * t) stride = 0;
  }
  int64_t a_stride() const { return stride != 0 ? stride : kQK32; }
  // Block b's quants as tile A rows (panel `slot` when gathered); the rows of
  // block b + ahead are fetched early (a line each, far apart).
  const void* a(int64_t b, int slot, int64_t ahead, int64_t nb) {
    if (stride != 0 || kNt == 1) {
      if (b + ahead < nb) {
#pragma GCC unroll 16
        for (int t = 0; t < kNt; ++t)
          _mm_prefetch(reinterpret_cast<const char*>(q0 + t * stride + (b + ahead) * kQ8 + kQ8Qs),
                       _MM_HINT_T0);
      }
      return q0 + b * kQ8 + kQ8Qs;
    }
    int8_t* buf = panel[slot];
    for (int t = 0; t < kNt; ++t)
      std::memcpy(buf + t * kQK32, static_cast<const BlockQ8_0*>(act[t].q)[b].qs, kQK32);
    amx::tile_memory(buf);
    return buf;
  }
  float d(int t, int64_t b) const {
    return act[t].d[b];
  }
  int32_t corr(int t, int64_t b) const {
    return act[t].corr[b];
  }
};

struct Arranged {
  static constexpr int64_t kD = kPackWideTokens * kQK32;  // offset of d in a block
  static constexpr int64_t kCorr = kD + kPackWideTokens * 4;
  const uint8_t* base;
  static constexpr int64_t a_stride() { return kQK32; }
  const void* a(int64_t b, int, int64_t ahead, int64_t nb) const {
    // The stream is contiguous (the hardware prefetcher follows it); the
    // next blocks' lines are asked for anyway as the tile unit stalls on a miss.
    if (b + ahead < nb) prefetch_arranged(base, b + ahead);
    return base + b * kArrangedBlockBytes;
  }
  float d(int t, int64_t b) const {
    return reinterpret_cast<const float*>(base + b * kArrangedBlockBytes + kD)[t];
  }
  int32_t corr(int t, int64_t b) const {
    return reinterpret_cast<const int32_t*>(base + b * kArrangedBlockBytes + kCorr)[t];
  }
};

// Where tile B reads a block's weights: Ring unpacks Q4_0 / Q5_0 blocks a
// token tile at a time into a small ring (Q8_0 in place) and takes the
// unsigned encoding (TDPBSUD, then the activations' corrections); Ready
// reads the signed weights (q - offset) that convert_weights left in the
// caller's scratch (TDPBSSD: exact sums, no correction).
enum class Weights { kRing, kReady };

// Tile ops of one block: B (weights) into tmm TB, A (activations) into TA,
// C = A x B into TC by DP (stored to sums by SLM_AMX_STORE). Literal tile
// numbers: the intrinsics paste them into register names.
#define SLM_AMX_BLOCK(DP, TB, TA, TC, b_src, a_src, a_stride) \
  do {                                                        \
    _tile_loadd(TB, b_src, 64);                               \
    _tile_loadd(TA, a_src, a_stride);                         \
    _tile_zero(TC);                                           \
    DP(TC, TA, TB);                                           \
  } while (0)
// The barrier: the float steps read sums kLag blocks later, after stores
// the compiler does not know of (x86_amx_tile.h).
#define SLM_AMX_STORE(TC, sums) \
  do {                          \
    _tile_stored(TC, sums, 64); \
    amx::tile_memory(sums);     \
  } while (0)

// Two blocks in flight on the tile unit (tiles 0-2 and 3-5), each block's
// float steps kLag blocks behind its tile ops, so they run beside the tile
// unit's work instead of waiting for it. The float steps still take the
// blocks in order (the oracle's summation order).
// ws: kReady's scratch, nb x kPackRows x 32 bytes (tile B rows).
// next: (kReady) a group's packed blocks to fetch into L2 meanwhile, or null.
template <DType kType, int kNt, Weights kW, typename Src>
void tile(int64_t nb, const uint8_t* group, Src& src, float* y, int64_t ldy, int nr,
          uint8_t* ws = nullptr, const uint8_t* next = nullptr) {
  constexpr int64_t kBlockBytes = avx512_legacy::Block<kType>::kBytes;
  constexpr int64_t kQsOffset = avx512_legacy::Block<kType>::kQsOffset;
  constexpr int64_t kWBytes = kArrangedWeightBytes;  // one block as tile B rows
  constexpr int64_t kAhead = 4;                      // blocks prefetched ahead
  constexpr bool kSigned = kW != Weights::kRing;
  alignas(64) uint8_t wbuf[kW == Weights::kRing ? 4 : 1][8 * 64];  // kRing: Q4_0 / Q5_0 ring
  // Block b's float steps read its stored sums kLag blocks later: loads of
  // a tile store's bytes wait for the store (and its product) to finish, so
  // with a lag of 1 the float steps wait for the tile unit (bench_kernels:
  // a lag of 2 is ~25% faster; more gains nothing).
  constexpr int64_t kLag = 2, kRing = 4;
  alignas(64) int32_t sums[kRing][kNt * kPackRows];  // tile C of the blocks in flight
  // Block b's weights as tile B rows: kRing Q4_0 / Q5_0 into wbuf[b % 4],
  // two blocks before their tile load (a tile load of bytes just stored
  // waits for the stores to reach the cache).
  auto unpack = [&](int64_t b) __attribute__((always_inline)) {
    const uint8_t* blk = group + b * kBlockBytes;
    if constexpr (kW == Weights::kRing && kType != DType::Q8_0) {
      uint8_t* buf = wbuf[b & 3];
      // Tile B rows: w[k] holds elements 4k.., w[4 + k] 16 + 4k..
      __m512i w[8];
      avx512_legacy::unpack_nibble_words<kType>(blk, w);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) _mm512_store_si512(buf + 64 * k, w[k]);
      amx::tile_memory(buf);
    }
  };
  // Block b's weights as tile B rows (kRing Q8_0: in place); unpacks block b + 2.
  auto weights = [&](int64_t b) __attribute__((always_inline))->const uint8_t* {
    if constexpr (kW == Weights::kReady) {
      // The scratch is in L2 (a group's blocks exceed L1): fetch ahead.
      if (b + kAhead < nb) {
#pragma GCC unroll 8
        for (int64_t off = 0; off < kWBytes; off += 64)
          _mm_prefetch(reinterpret_cast<const char*>(ws + (b + kAhead) * kWBytes + off),
                       _MM_HINT_T0);
      }
      // The next group's first token tile would otherwise wait for its
      // weights at L3's (or memory's) latency, which kAhead cannot hide.
      if (next != nullptr) {
#pragma GCC unroll 8
        for (int64_t off = 0; off < kBlockBytes; off += 64)
          _mm_prefetch(reinterpret_cast<const char*>(next + b * kBlockBytes + off), _MM_HINT_T1);
      }
      return ws + b * kWBytes;
    }
    const uint8_t* blk = group + b * kBlockBytes;
    // A tile load that misses the caches stalls the tile unit, which the
    // out-of-order core does not hide: fetch the weights kAhead blocks early
    // (the first token tile of a group streams them from memory).
    if (b + kAhead < nb) {
#pragma GCC unroll 16
      for (int64_t off = 0; off < kBlockBytes; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(blk + kAhead * kBlockBytes + off), _MM_HINT_T0);
    }
    if constexpr (kType == DType::Q8_0) return blk + kQsOffset;
    if (b + 2 < nb) unpack(b + 2);
    return wbuf[b & 3];
  };
  const int64_t a_stride = src.a_stride();
  __m512 acc[kNt];
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) acc[t] = _mm512_setzero_ps();
  // The oracle's float steps for block b from its stored integer sums
  // (unsigned weights: plus the token's correction, signed: exact already).
  auto finish = [&](int64_t b, const int32_t* s) __attribute__((always_inline)) {
    const __m512 dw = _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + b * kBlockBytes)));
#pragma GCC unroll 16
    for (int t = 0; t < kNt; ++t) {
      __m512i isum = _mm512_load_si512(s + t * kPackRows);
      if constexpr (!kSigned) isum = _mm512_add_epi32(isum, _mm512_set1_epi32(src.corr(t, b)));
      const __m512 sum = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), dw);
      acc[t] = _mm512_fmadd_ps(sum, _mm512_set1_ps(src.d(t, b)), acc[t]);
    }
  };
  configure(kNt);
  if constexpr (kW != Weights::kReady) {
    unpack(0);
    if (nb > 1) unpack(1);
  }
  // Blocks b and b + 1 on tile sets 0 and 1, each followed by the float
  // steps of the block kLag before it (when there is one).
  auto a0 = [&](int64_t b) __attribute__((always_inline)) {
    return src.a(b, 0, kAhead, nb);
  };
  auto a1 = [&](int64_t b) __attribute__((always_inline)) {
    return src.a(b, 1, kAhead, nb);
  };
  if constexpr (kSigned) {
    for (int64_t b = 0; b < nb; b += 2) {
      SLM_AMX_BLOCK(_tile_dpbssd, 0, 1, 2, weights(b), a0(b), a_stride);
      if (b >= kLag) finish(b - kLag, sums[(b - kLag) & (kRing - 1)]);
      SLM_AMX_STORE(2, sums[b & (kRing - 1)]);
      if (b + 1 == nb) break;
      SLM_AMX_BLOCK(_tile_dpbssd, 3, 4, 5, weights(b + 1), a1(b + 1), a_stride);
      if (b + 1 >= kLag) finish(b + 1 - kLag, sums[(b + 1 - kLag) & (kRing - 1)]);
      SLM_AMX_STORE(5, sums[(b + 1) & (kRing - 1)]);
    }
  } else {
    for (int64_t b = 0; b < nb; b += 2) {
      SLM_AMX_BLOCK(_tile_dpbsud, 0, 1, 2, weights(b), a0(b), a_stride);
      if (b >= kLag) finish(b - kLag, sums[(b - kLag) & (kRing - 1)]);
      SLM_AMX_STORE(2, sums[b & (kRing - 1)]);
      if (b + 1 == nb) break;
      SLM_AMX_BLOCK(_tile_dpbsud, 3, 4, 5, weights(b + 1), a1(b + 1), a_stride);
      if (b + 1 >= kLag) finish(b + 1 - kLag, sums[(b + 1 - kLag) & (kRing - 1)]);
      SLM_AMX_STORE(5, sums[(b + 1) & (kRing - 1)]);
    }
  }
  for (int64_t b = std::max<int64_t>(0, nb - kLag); b < nb; ++b) finish(b, sums[b & (kRing - 1)]);
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) store_rows(y + t * ldy, acc[t], nr);
}
#undef SLM_AMX_BLOCK
#undef SLM_AMX_STORE

template <DType kType>
void tile_any(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y, int64_t ldy,
              int nr) {
  with_count<kPackWideTokens>(nt, [&](auto count) {
    Rows<decltype(count)::value> src(act);
    tile<kType, decltype(count)::value, Weights::kRing>(nb, group, src, y, ldy, nr);
  });
}

// Block b of a group as signed tile B rows (q - offset) into ws (at b x
// kArrangedWeightBytes).
template <DType kType>
inline __attribute__((always_inline)) void convert_block(const uint8_t* group, int64_t b,
                                                         uint8_t* ws) {
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(packed_quant_offset(kType)));
  __m512i w[8];
  avx512_legacy::weight_words<kType>(group + b * avx512_legacy::Block<kType>::kBytes, w);
  uint8_t* buf = ws + b * kArrangedWeightBytes;
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) _mm512_store_si512(buf + 64 * k, _mm512_sub_epi8(w[k], offset));
  amx::tile_memory(buf);
}

// A group's nb blocks converted into ws (nb x kArrangedWeightBytes bytes).
template <DType kType>
void convert_weights(int64_t nb, const uint8_t* group, uint8_t* ws) {
  constexpr int64_t kBlockBytes = avx512_legacy::Block<kType>::kBytes;
  for (int64_t b = 0; b < nb; ++b) {
    if (b + 4 < nb) {
#pragma GCC unroll 16
      for (int64_t off = 0; off < kBlockBytes; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(group + (b + 4) * kBlockBytes + off),
                     _MM_HINT_T0);
    }
    convert_block<kType>(group, b, ws);
  }
}

// n_tiles full token tiles (kPackWideTokens tokens each) over the arranged
// stream acts, with the group's signed weights in ws, converted there during
// the first token tile (block b + 2 at step b: a tile load of bytes just
// stored waits for them to reach the cache; converting them beforehand,
// outside the overlap, cost ~10% at 128 tokens): the
// tiles' nb blocks run as one stream of n_tiles x nb steps (step j: block
// j % nb of tile j / nb, its activations at j x kArrangedBlockBytes), so
// the float steps' lag (see tile) runs on from one token tile into the next
// instead of emptying and refilling the pipeline for every tile (by itself
// worth little in bench_kernels at K = 896: the out-of-order core hid most
// of that; the gain is the output prefetch below).
// Each token's float steps still take its blocks in order (the oracle's).
// next: a group's packed blocks to fetch into L2 meanwhile, or null.
template <DType kType>
void tiles_stream(int64_t nb, const uint8_t* group, const uint8_t* acts, int64_t n_tiles, float* y,
                  int64_t ldy, int nr, uint8_t* ws, const uint8_t* next) {
  constexpr int kNt = kPackWideTokens;
  constexpr int64_t kBlockBytes = avx512_legacy::Block<kType>::kBytes;
  constexpr int64_t kWBytes = kArrangedWeightBytes;
  constexpr int64_t kD = Arranged::kD;
  constexpr int64_t kAhead = 4;
  constexpr int64_t kLag = 2, kRing = 4;
  alignas(64) int32_t sums[kRing][kNt * kPackRows];
  const int64_t steps = n_tiles * nb;
  __m512 acc[kNt];
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) acc[t] = _mm512_setzero_ps();
  // Step j's tile operands (block b = j % nb), with the prefetches kAhead
  // steps ahead: the stream, the weight scratch (L1 or L2) and the next group.
  auto a_src = [&](int64_t j) __attribute__((always_inline)) {
    if (j + kAhead < steps) prefetch_arranged(acts, j + kAhead);
    return acts + j * kArrangedBlockBytes;
  };
  auto b_src = [&](int64_t j, int64_t b) __attribute__((always_inline)) {
    if (j + 2 < nb) {
      if (j + kAhead < nb) {
        const uint8_t* blk = group + (j + kAhead) * kBlockBytes;
#pragma GCC unroll 16
        for (int64_t off = 0; off < kBlockBytes; off += 64)
          _mm_prefetch(reinterpret_cast<const char*>(blk + off), _MM_HINT_T0);
      }
      convert_block<kType>(group, j + 2, ws);
    }
    const int64_t ahead = b + kAhead < nb ? b + kAhead : b + kAhead - nb;
#pragma GCC unroll 8
    for (int64_t off = 0; off < kWBytes; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(ws + ahead * kWBytes + off), _MM_HINT_T0);
    if (next != nullptr && j < nb) {
#pragma GCC unroll 8
      for (int64_t off = 0; off < kBlockBytes; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(next + j * kBlockBytes + off), _MM_HINT_T1);
    }
    return ws + b * kWBytes;
  };
  // The float steps of step fj (block fb of tile ft), then the next step to
  // finish; a tile's last block stores its sums and starts the next tile's.
  int64_t fb = 0, ft = 0;
  auto finish = [&](int64_t fj) __attribute__((always_inline)) {
    const int32_t* s = sums[fj & (kRing - 1)];
    const __m512 dw = _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + fb * kBlockBytes)));
    const float* d = reinterpret_cast<const float*>(acts + fj * kArrangedBlockBytes + kD);
#pragma GCC unroll 16
    for (int t = 0; t < kNt; ++t) {
      const __m512 sum =
          _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(s + t * kPackRows)), dw);
      acc[t] = _mm512_fmadd_ps(sum, _mm512_set1_ps(d[t]), acc[t]);
    }
    if (++fb == nb) {
      float* yt = y + ft * kNt * ldy;
#pragma GCC unroll 16
      for (int t = 0; t < kNt; ++t) {
        store_rows(yt + t * ldy, acc[t], nr);
        acc[t] = _mm512_setzero_ps();
      }
      fb = 0;
      ++ft;
    }
  };
  // A token tile's outputs (16 token rows x 64 bytes, ldy apart) are
  // asked for, to be written, when its first block starts: y is rarely in L2
  // (qkv at 512 tokens: 2.4 MB; gate and up: 10 MB each) and a store that
  // misses holds up every later store, the tile stores of the sums too, so
  // without this the tile unit waited ~30% of a 512-token Qwen matmul.
  int64_t pt = 0;  // tile whose outputs to fetch next
  auto fetch_y = [&](int64_t b) __attribute__((always_inline)) {
    if (b != 0) return;
    float* yt = y + pt * kNt * ldy;
#pragma GCC unroll 16
    for (int t = 0; t < kNt; ++t) {
      // A write prefetch (PREFETCHW under -mprfchw; the builtin, as clang's
      // immintrin.h does not declare _m_prefetchw).
      __builtin_prefetch(yt + t * ldy, 1, 3);
      __builtin_prefetch(yt + t * ldy + kPackRows - 1, 1,
                         3);  // y + lg * 16 need not be 64-byte aligned
    }
    ++pt;
  };
  configure(kNt);
  convert_block<kType>(group, 0, ws);
  if (nb > 1) convert_block<kType>(group, 1, ws);
  // Steps j and j + 1 on tile sets 0 and 1 (as in tile), b = j % nb.
  int64_t b = 0;
  for (int64_t j = 0; j < steps; j += 2) {
    fetch_y(b);
    _tile_loadd(0, b_src(j, b), 64);
    _tile_loadd(1, a_src(j), kQK32);
    _tile_zero(2);
    _tile_dpbssd(2, 1, 0);
    if (j >= kLag) finish(j - kLag);
    _tile_stored(2, sums[j & (kRing - 1)], 64);
    amx::tile_memory(sums);
    if (++b == nb) b = 0;
    if (j + 1 == steps) break;
    fetch_y(b);
    _tile_loadd(3, b_src(j + 1, b), 64);
    _tile_loadd(4, a_src(j + 1), kQK32);
    _tile_zero(5);
    _tile_dpbssd(5, 4, 3);
    if (j + 1 >= kLag) finish(j + 1 - kLag);
    _tile_stored(5, sums[(j + 1) & (kRing - 1)], 64);
    amx::tile_memory(sums);
    if (++b == nb) b = 0;
  }
  for (int64_t j = std::max<int64_t>(0, steps - kLag); j < steps; ++j) finish(j);
}

// Token tiles of kPackWideTokens over arranged activations: the group's
// weights converted once into ws, the full tiles as one stream, a partial
// last tile on its own.
template <DType kType>
void tiles_arranged(int64_t nb, const uint8_t* group, const uint8_t* acts, int64_t n_tokens,
                    float* y, int64_t ldy, int nr, uint8_t* ws) {
  // Where the packed matrix's next group would start (past the last group
  // or in another thread's share only a wasted fetch: prefetches never fault).
  const uint8_t* next_group = group + nb * avx512_legacy::Block<kType>::kBytes;
  // One token tile of Q8_0 (batched decoding): converting the weights
  // costs more than the corrections it saves (bench_kernels 8: -15%).
  if (kType == DType::Q8_0 && n_tokens <= kPackWideTokens) {
    with_count<kPackWideTokens>(static_cast<int>(n_tokens), [&](auto count) {
      Arranged src{acts};
      tile<kType, decltype(count)::value, Weights::kRing>(nb, group, src, y, ldy, nr);
    });
    return;
  }
  const int64_t full = n_tokens / kPackWideTokens;
  if (full > 0)
    tiles_stream<kType>(nb, group, acts, full, y, ldy, nr, ws, next_group);
  else
    convert_weights<kType>(nb, group, ws);
  const int nt = static_cast<int>(n_tokens - full * kPackWideTokens);
  if (nt == 0) return;
  with_count<kPackWideTokens>(nt, [&](auto count) {
    Arranged src{acts + full * nb * kArrangedBlockBytes};
    tile<kType, decltype(count)::value, Weights::kReady>(nb, group, src,
                                                         y + full * kPackWideTokens * ldy, ldy, nr,
                                                         ws, full == 0 ? next_group : nullptr);
  });
}

}  // namespace

bool amx_permitted() {
  // ARCH_REQ_XCOMP_PERM / ARCH_GET_XCOMP_PERM (asm/prctl.h), XFEATURE_XTILEDATA.
  constexpr int kReqPerm = 0x1023, kGetPerm = 0x1022, kXtileData = 18;
  static const bool ok = [] {
    if (syscall(SYS_arch_prctl, kReqPerm, kXtileData) != 0) return false;
    unsigned long mask = 0;
    return syscall(SYS_arch_prctl, kGetPerm, &mask) == 0 && (mask >> kXtileData & 1u) != 0;
  }();
  return ok;
}

void fill_amx_packed(TypeTable& table) {
  static_assert(kPackRows == 16 && kPackWideTokens <= 16, "a tile holds 16 rows x 16 tokens");
  table.packed_tile_wide[static_cast<int>(DType::Q4_0)] = tile_any<DType::Q4_0>;
  table.packed_tile_wide[static_cast<int>(DType::Q5_0)] = tile_any<DType::Q5_0>;
  table.packed_tile_wide[static_cast<int>(DType::Q8_0)] = tile_any<DType::Q8_0>;
  table.packed_tile_arranged[static_cast<int>(DType::Q4_0)] = tiles_arranged<DType::Q4_0>;
  table.packed_tile_arranged[static_cast<int>(DType::Q5_0)] = tiles_arranged<DType::Q5_0>;
  table.packed_tile_arranged[static_cast<int>(DType::Q8_0)] = tiles_arranged<DType::Q8_0>;
}

}  // namespace slm::kernels
