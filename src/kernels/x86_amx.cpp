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
// Linux hands out the tile data state only on request (arch_prctl
// ARCH_REQ_XCOMP_PERM); amx_permitted() asks once and dispatch.cpp offers the
// "amx" table only when the kernel agreed, so a refused or absent AMX falls
// back to the AVX-512 VNNI tables. This file alone is compiled with -mamx-*.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "kernels/blocks.h"
#include "kernels/internal.h"
#include "kernels/x86_avx512_legacy_block.h"

namespace slm::kernels {
namespace {

using avx512_legacy::kScaleBytes;

// Two sets of tiles (two blocks in flight): weights (B) in tmm0 / tmm3, 8
// rows (K / 4) x 64 bytes (16 rows x 4); activations (A) in tmm1 / tmm4, nt
// rows (tokens) x 32 bytes; sums (C) in tmm2 / tmm5, nt rows x 16 int32.

// The 64-byte operand of LDTILECFG (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

// GCC 12's tile intrinsics tell the compiler of no memory they read (LDTILECFG
// names 8 of its 64 bytes, TILELOADD none), so the stores that fill a buffer
// for them could be dropped or sunk past them: this barrier, with the
// buffer's address escaping into it, makes them land first.
inline void written_for_tiles(const void* p) {
  __asm__ volatile("" : : "r"(p) : "memory");
}

// LDTILECFG costs about as much as a few blocks' tile work, so each thread
// keeps its configuration between calls and loads a new one only when the
// token count changes. The tile state is this thread's (no other code of
// slm uses AMX); it stays held after the call, as the next call reuses it.
void configure(int nt) {
  thread_local int configured = 0;
  if (configured == nt) return;
  configured = nt;
  TileConfig cfg;
  for (int set = 0; set < 2; ++set) {
    cfg.rows[3 * set] = 8;
    cfg.colsb[3 * set] = 64;
    cfg.rows[3 * set + 1] = static_cast<uint8_t>(nt);
    cfg.colsb[3 * set + 1] = kQK32;
    cfg.rows[3 * set + 2] = static_cast<uint8_t>(nt);
    cfg.colsb[3 * set + 2] = 64;
  }
  written_for_tiles(&cfg);
  _tile_loadconfig(&cfg);
}

inline void store_rows(float* y, __m512 v, int nr) {
  if (nr == kPackRows)
    _mm512_storeu_ps(y, v);
  else
    _mm512_mask_storeu_ps(y, static_cast<__mmask16>((1u << nr) - 1), v);
}

// Where tile A reads block b's quants of the tile's tokens: one stride when
// the tokens' rows are evenly spaced (packed_matmul's scratch), else a panel
// the tile gathers per block.
struct ActRows {
  const uint8_t* q0;  // token 0's first block
  int64_t stride;     // bytes from one token's row to the next; 0: gather
};
ActRows act_rows(const PackedAct* act, int nt) {
  const auto* q0 = static_cast<const uint8_t*>(act[0].q);
  const int64_t stride = nt > 1 ? static_cast<const uint8_t*>(act[1].q) - q0 : 0;
  for (int t = 2; t < nt; ++t)
    if (static_cast<const uint8_t*>(act[t].q) != q0 + stride * t) return {q0, 0};
  return {q0, stride};
}

// Tile ops of one block: B (weights) into tmm TB, A (activations) into TA,
// C = A x B into TC, stored to sums. Literal tile numbers: the intrinsics
// paste them into register names.
#define SLM_AMX_BLOCK(TB, TA, TC, b_src, a_src, a_stride, sums) \
  do {                                                          \
    _tile_loadd(TB, b_src, 64);                                 \
    _tile_loadd(TA, a_src, a_stride);                           \
    _tile_zero(TC);                                             \
    _tile_dpbsud(TC, TA, TB);                                   \
    _tile_stored(TC, sums, 64);                                 \
  } while (0)

// Two blocks in flight (tiles 0-2 and 3-5, two sum buffers), each block's
// float steps run one block behind its tile ops: a tile's stored sums are
// read back only after the next block's tile work was issued, so the loads
// do not wait on the store of the block just computed. The float steps still
// take the blocks in order (the oracle's summation order).
template <DType kType, int kNt>
void tile(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy, int nr) {
  constexpr int64_t kQsOffset = avx512_legacy::Block<kType>::kQsOffset;
  constexpr int64_t kBlockBytes = avx512_legacy::Block<kType>::kBytes;
  constexpr int64_t kQ8 = sizeof(BlockQ8_0);
  constexpr int64_t kQ8Qs = kQ8 - kQK32;  // offset of qs in BlockQ8_0
  constexpr int64_t kAhead = 4;           // blocks of weights prefetched ahead
  const ActRows rows = act_rows(act, kNt);
  alignas(64) uint8_t wbuf[4][8 * 64];           // unpacked Q4_0 / Q5_0 blocks (ring)
  alignas(64) int8_t panel[2][kNt * kQK32];      // gathered activations (uneven rows)
  alignas(64) int32_t sums[2][kNt * kPackRows];  // tile C of the two blocks in flight
  // Q4_0 / Q5_0: block b's weights unpacked to tile B rows in wbuf[b % 4],
  // two blocks before their tile load (a tile load of bytes just stored
  // waits for the stores to reach the cache).
  auto unpack = [&](int64_t b) __attribute__((always_inline)) {
    if constexpr (kType != DType::Q8_0) {
      const uint8_t* blk = group + b * kBlockBytes;
      uint8_t* buf = wbuf[b & 3];
      // Tile B rows: w[k] holds elements 4k.., w[4 + k] 16 + 4k..
      __m512i w[8];
      avx512_legacy::unpack_nibble_words<kType>(blk, w);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) _mm512_store_si512(buf + 64 * k, w[k]);
      written_for_tiles(buf);
    }
  };
  // Block b's weights as tile B rows (Q8_0: in place); unpacks block b + 2.
  auto weights = [&](int64_t b) __attribute__((always_inline))->const uint8_t* {
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
  // Block b's activations of the tile's tokens, rows a_stride bytes apart.
  int64_t a_stride = rows.stride != 0 ? rows.stride : kQK32;
  auto acts = [&](int64_t b, int8_t * buf) __attribute__((always_inline))->const void* {
    if (rows.stride != 0 || kNt == 1) {
      // The tokens' rows are far apart (a line each): fetch them early too.
      if (b + kAhead < nb) {
#pragma GCC unroll 16
        for (int t = 0; t < kNt; ++t)
          _mm_prefetch(
              reinterpret_cast<const char*>(rows.q0 + t * rows.stride + (b + kAhead) * kQ8 + kQ8Qs),
              _MM_HINT_T0);
      }
      return rows.q0 + b * kQ8 + kQ8Qs;
    }
    for (int t = 0; t < kNt; ++t)
      std::memcpy(buf + t * kQK32, static_cast<const BlockQ8_0*>(act[t].q)[b].qs, kQK32);
    written_for_tiles(buf);
    return buf;
  };
  __m512 acc[kNt];
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) acc[t] = _mm512_setzero_ps();
  // The oracle's float steps for block b from its stored integer sums.
  auto finish = [&](int64_t b, const int32_t* s) __attribute__((always_inline)) {
    const __m512 dw = _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + b * kBlockBytes)));
#pragma GCC unroll 16
    for (int t = 0; t < kNt; ++t) {
      const __m512i isum =
          _mm512_add_epi32(_mm512_load_si512(s + t * kPackRows), _mm512_set1_epi32(act[t].corr[b]));
      const __m512 sum = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), dw);
      acc[t] = _mm512_fmadd_ps(sum, _mm512_set1_ps(act[t].d[b]), acc[t]);
    }
  };
  configure(kNt);
  unpack(0);
  if (nb > 1) unpack(1);
  int64_t b = 0;
  for (; b + 1 < nb; b += 2) {
    SLM_AMX_BLOCK(0, 1, 2, weights(b), acts(b, panel[0]), a_stride, sums[0]);
    if (b > 0) finish(b - 1, sums[1]);
    SLM_AMX_BLOCK(3, 4, 5, weights(b + 1), acts(b + 1, panel[1]), a_stride, sums[1]);
    finish(b, sums[0]);
  }
  if (b < nb) {  // odd nb: the last block alone
    SLM_AMX_BLOCK(0, 1, 2, weights(b), acts(b, panel[0]), a_stride, sums[0]);
    if (b > 0) finish(b - 1, sums[1]);
    finish(b, sums[0]);
  } else {
    finish(nb - 1, sums[1]);
  }
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) store_rows(y + t * ldy, acc[t], nr);
}
#undef SLM_AMX_BLOCK

template <DType kType>
void tile_any(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y, int64_t ldy,
              int nr) {
  with_token_count<kPackWideTokens>(
      nt, [&](auto count) { tile<kType, decltype(count)::value>(nb, group, act, y, ldy, nr); });
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
}

}  // namespace slm::kernels
