// AMX-INT8 tiles over packed Q4_K / Q6_K groups for 2..kPackWideTokens tokens
// (prompt processing; layout in internal.h). The VNNI tiles
// (x86_avx512_packed.cpp) unpack a super-block once per 4 tokens and spend 64
// VPDPBUSD per token on it; here one TDPBSUD per 32-value window does the
// integer dot products of every token at once.
//
// Each window's sums must be scaled per row before they are added up, so a
// window is its own tile product: C_j[token][row] = sum over the window of
// activation (signed, tile A: tokens x 32 bytes) x weight level (unsigned,
// tile B: 8 rows x 64 bytes, B[k][4 r + i] = element 4 k + i of row r, the
// packed words' own order). Then, per token and in exact int32 as in the
// scalar oracle (packed.cpp tile_scalar_k): isum = sum_j sc_j * C_j, for Q4_K
// minsum = sum_j m_j * corr_j, for Q6_K each C_j seeded with its -32
// correction first; and the same float steps as the oracle. Integer sums do
// not depend on their order, so the results are bit-identical to every ISA.
//
// Q4_K: one unit of 8 windows per super-block (sub-block j = window j:
// chunk j / 2's low or high nibbles). Q6_K has 16-value sub-blocks with their
// own scales: a 32-value window holds two, so each window is multiplied twice,
// once with B's rows 4-7 (the second sub-block) zero and once with rows 0-3
// zero; the zero rows are written once per call. Its super-block is two units
// (halves h = 0, 1) of 8 such products.
//
// The tile configuration is x86_amx.cpp's for the same token count (tiles 0-2
// and 3-5: B, A, C; two products in flight), so a thread that moves between
// Q4_0 and Q4_K matrices never reloads it. x86_amx.cpp keeps the token count
// it configured in a thread_local and reloads only when that changes; a call
// here that finds another configuration loaded puts it back when it returns,
// so that cache stays true. This file alone (with x86_amx.cpp) is compiled
// with -mamx-*; dispatch.cpp offers it only where Linux granted AMX.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/blocks.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

constexpr int64_t kScaleBytes = 2 * kPackRows;  // fp16 per row
constexpr int64_t kQ8K = sizeof(BlockQ8_K);
constexpr int64_t kQ8KQs = 4;  // offset of qs in BlockQ8_K (after float d)
static_assert(kQ8KQs == sizeof(float));

// Byte offsets in a packed super-block (internal.h).
constexpr int64_t kK4Sc = 2 * kScaleBytes, kK4M = kK4Sc + 8 * kPackRows,
                  kK4Qs = kK4M + 8 * kPackRows;
constexpr int64_t kK4Bytes = kK4Qs + kPackRows * kQKK / 2;
constexpr int64_t kK6Sc = kScaleBytes, kK6W = kK6Sc + 16 * kPackRows;
constexpr int64_t kK6Bytes = kK6W + kPackRows * (kQKK / 2 + kQKK / 4);

// The compiler knows of no memory the tile intrinsics read or write (GCC 12:
// LDTILECFG / STTILECFG name 8 of their 64 bytes, TILELOADD / TILESTORED
// none): a barrier, with the buffer's address escaping into it, orders plain
// loads and stores against them.
inline void tile_memory(const void* p) {
  __asm__ volatile("" : : "r"(p) : "memory");
}

// The 64-byte operand of LDTILECFG (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

// x86_amx.cpp's configuration for nt tokens (Q6_K's too): per set (tiles
// 0-2, 3-5) B = 8 rows x 64 bytes, A = nt rows x 32 bytes, C = nt rows x 64
// bytes.
TileConfig legacy_config(int nt) {
  TileConfig cfg;
  for (int set = 0; set < 2; ++set) {
    cfg.rows[3 * set] = 8;
    cfg.colsb[3 * set] = 64;
    cfg.rows[3 * set + 1] = static_cast<uint8_t>(nt);
    cfg.colsb[3 * set + 1] = kQK32;
    cfg.rows[3 * set + 2] = static_cast<uint8_t>(nt);
    cfg.colsb[3 * set + 2] = 64;
  }
  return cfg;
}

// Q4_K's: A = nt rows x 64 bytes in tiles 0-1, B = 16 rows x 64 bytes in
// tiles 2-3, four sums C = nt rows x 64 bytes in tiles 4-7.
TileConfig q4_k_config(int nt) {
  TileConfig cfg;
  for (int i = 0; i < 8; ++i) {
    cfg.rows[i] = static_cast<uint8_t>(i == 2 || i == 3 ? 16 : nt);
    cfg.colsb[i] = 64;
  }
  return cfg;
}

// Loads a configuration for the scope of one call unless it is loaded
// already; a different one found loaded is put back at the end.
class TileScope {
 public:
  explicit TileScope(const TileConfig& want) {
    _tile_storeconfig(&saved_);
    tile_memory(&saved_);
    if (std::memcmp(&saved_, &want, sizeof want) == 0) return;
    tile_memory(&want);
    _tile_loadconfig(&want);
    // Nothing configured before (palette 0): keep ours, nobody relies on it.
    restore_ = saved_.palette != 0;
  }
  ~TileScope() {
    if (!restore_) return;
    tile_memory(&saved_);
    _tile_loadconfig(&saved_);
  }
  TileScope(const TileScope&) = delete;
  TileScope& operator=(const TileScope&) = delete;

 private:
  TileConfig saved_;
  bool restore_ = false;
};

inline void store_rows(float* y, __m512 v, int nr) {
  if (nr == kPackRows)
    _mm512_storeu_ps(y, v);
  else
    _mm512_mask_storeu_ps(y, static_cast<__mmask16>((1u << nr) - 1), v);
}

// Tile ops of one window: B (weights) into tmm TB, A (activations) into TA,
// C = A x B into TC, stored to sums. Literal tile numbers: the intrinsics
// paste them into register names.
#define SLM_AMX_WINDOW(TB, TA, TC, b_src, a_src, a_stride, sums) \
  do {                                                           \
    _tile_loadd(TB, b_src, 64);                                  \
    _tile_loadd(TA, a_src, a_stride);                            \
    _tile_zero(TC);                                              \
    _tile_dpbsud(TC, TA, TB);                                    \
    _tile_stored(TC, sums, 64);                                  \
  } while (0)

constexpr int kTileBytes = 8 * 64;  // one tile B

// The frame both types share, over nb super-blocks of kUnits units each
// (a unit is what one unpack fills): unit u + 1 is unpacked (unpack(u, slot),
// slot = u % 2 of the caller's weight buffers) while unit u goes through
// the tile unit (tiles(u, slot, a, a_stride, sums): a is the unit's
// super-block of Q8_K quants for token 0, the tokens a_stride bytes apart;
// the tile sums go to kSums buffers of kNt x 16 int32), and unit u - 1's
// stored sums are finished (finish(u, sums)) after that, so no tile load
// waits on stores just made and no read of sums waits on the tile store
// just issued. Units finish in order (the float steps take the super-blocks
// in the oracle's order).
template <int kNt, int kUnits, int kSums, typename Unpack, typename Tiles, typename Finish>
[[gnu::always_inline]] inline void drive(int64_t nb, const PackedAct* act, const Unpack& unpack,
                                         const Tiles& tiles, const Finish& finish) {
  // Activation rows evenly spaced (packed_matmul's scratch): tile A reads
  // them in place with one stride; otherwise a panel per super-block.
  const auto* q0 = static_cast<const uint8_t*>(act[0].q);
  int64_t stride = kNt > 1 ? static_cast<const uint8_t*>(act[1].q) - q0 : kQ8K;
  for (int t = 2; t < kNt; ++t)
    if (static_cast<const uint8_t*>(act[t].q) != q0 + stride * t) stride = 0;
  alignas(64) int8_t panel[2][kNt * kQKK];
  alignas(64) int32_t sums[2][kSums][kNt * kPackRows];
  const int64_t n_units = nb * kUnits;
  unpack(0, 0);
  for (int64_t u = 0; u < n_units; ++u) {
    const int64_t b = u / kUnits;
    const uint8_t* a;
    int64_t a_stride;
    if (stride != 0) {
      a = q0 + b * kQ8K + kQ8KQs;
      a_stride = stride;
    } else {
      int8_t* p = panel[b & 1];
      if (u % kUnits == 0) {
        for (int t = 0; t < kNt; ++t)
          std::memcpy(p + t * kQKK, static_cast<const BlockQ8_K*>(act[t].q)[b].qs, kQKK);
      }
      a = reinterpret_cast<const uint8_t*>(p);
      a_stride = kQKK;
    }
    tile_memory(a);
    tiles(u, static_cast<int>(u & 1), a, a_stride, sums[u & 1]);
    tile_memory(sums[u & 1]);
    if (u + 1 < n_units) unpack(u + 1, static_cast<int>((u + 1) & 1));
    if (u > 0) finish(u - 1, sums[(u - 1) & 1]);
  }
  finish(n_units - 1, sums[(n_units - 1) & 1]);
}

// ------------------------------------------------------------------ Q4_K
// Sub-block scales are 6 bits: sc = 8 sh + sl with sh, sl < 8, and a level
// (< 16) times either fits a byte. The unpack writes each window twice, as
// level * sh and level * sl (one VPERMT2B lookup each), so two tile sums
// accumulate the whole super-block: isum = 8 C_h + C_l = sum_j sc_j dot_j
// exactly, with no per-window stores or scaling.
template <int kNt>
void tile_q4_k(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy,
               int nr) {
  const TileScope scope(q4_k_config(kNt));
  // [slot][h or l][window]: tile B rows.
  alignas(64) uint8_t wbuf[2][2][8][kTileBytes];
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits345 = _mm512_set1_epi8(0x38),
                bits012 = _mm512_set1_epi8(0x07);
  // Product table: entry i (< 128) = (i % 16) * (i / 16), bytes 0-63 and 64-127.
  alignas(64) uint8_t table[128];
  for (int i = 0; i < 128; ++i) table[i] = static_cast<uint8_t>((i % 16) * (i / 16));
  const __m512i tab0 = _mm512_load_si512(table), tab1 = _mm512_load_si512(table + 64);
  // Byte 4 r + i of a vector takes byte r of a 16-byte row.
  alignas(64) uint8_t rep_idx[64];
  for (int i = 0; i < 64; ++i) rep_idx[i] = static_cast<uint8_t>(i / 4);
  const __m512i rep = _mm512_load_si512(rep_idx);
  // Window j = sub-block j: chunk j / 2's words, low nibbles for even j.
  auto unpack = [&](int64_t b, int slot) __attribute__((always_inline)) {
    const uint8_t* blk = group + b * kK4Bytes;
    uint8_t(*bh)[kTileBytes] = wbuf[slot][0];
    uint8_t(*bl)[kTileBytes] = wbuf[slot][1];
    tile_memory(bh);
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      // Lookup rows of windows 2c, 2c + 1: sh * 16 and sl * 16 per row lane.
      __m512i hi_idx[2], lo_idx[2];
#pragma GCC unroll 2
      for (int i = 0; i < 2; ++i) {
        const __m512i sc = _mm512_permutexvar_epi8(
            rep, _mm512_castsi128_si512(_mm_loadu_si128(
                     reinterpret_cast<const __m128i*>(blk + kK4Sc + kPackRows * (2 * c + i)))));
        hi_idx[i] = _mm512_slli_epi16(_mm512_and_si512(sc, bits345), 1);
        lo_idx[i] = _mm512_slli_epi16(_mm512_and_si512(sc, bits012), 4);
      }
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m512i v = _mm512_loadu_si512(blk + kK4Qs + 64 * (8 * c + k));
        const __m512i lev[2] = {_mm512_and_si512(v, low4),
                                _mm512_and_si512(_mm512_srli_epi16(v, 4), low4)};
#pragma GCC unroll 2
        for (int i = 0; i < 2; ++i) {
          _mm512_store_si512(
              bh[2 * c + i] + 64 * k,
              _mm512_permutex2var_epi8(tab0, _mm512_or_si512(lev[i], hi_idx[i]), tab1));
          _mm512_store_si512(
              bl[2 * c + i] + 64 * k,
              _mm512_permutex2var_epi8(tab0, _mm512_or_si512(lev[i], lo_idx[i]), tab1));
        }
      }
    }
    tile_memory(bh);
  };
  // Chunk c (windows 2c, 2c + 1: 64 values) is one product of K = 64: A
  // (tile c % 2) = the tokens' 64 quants, B = the windows' h (tile 2) or l
  // (tile 3) rows. Four sums, so that no product waits on the one before:
  // C_h of even chunks in tile 4, C_l in 5, odd chunks in 6 and 7.
  auto tiles = [&](int64_t, int slot, const uint8_t* a, int64_t a_stride,
                   int32_t(*s)[kNt * kPackRows]) __attribute__((always_inline)) {
    uint8_t(*bh)[kTileBytes] = wbuf[slot][0];
    uint8_t(*bl)[kTileBytes] = wbuf[slot][1];
    _tile_zero(4);
    _tile_zero(5);
    _tile_zero(6);
    _tile_zero(7);
#pragma GCC unroll 2
    for (int c = 0; c < 4; c += 2) {
      _tile_loadd(0, a + 64 * c, a_stride);
      _tile_loadd(2, bh[2 * c], 64);
      _tile_dpbsud(4, 0, 2);
      _tile_loadd(3, bl[2 * c], 64);
      _tile_dpbsud(5, 0, 3);
      _tile_loadd(1, a + 64 * (c + 1), a_stride);
      _tile_loadd(2, bh[2 * c + 2], 64);
      _tile_dpbsud(6, 1, 2);
      _tile_loadd(3, bl[2 * c + 2], 64);
      _tile_dpbsud(7, 1, 3);
    }
    _tile_stored(4, s[0], 64);
    _tile_stored(5, s[1], 64);
    _tile_stored(6, s[2], 64);
    _tile_stored(7, s[3], 64);
  };
  __m512 acc[kNt];
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) acc[t] = _mm512_setzero_ps();
  auto finish = [&](int64_t b, int32_t(*s)[kNt * kPackRows]) __attribute__((always_inline)) {
    const uint8_t* blk = group + b * kK4Bytes;
    // Mins as int16 pairs (lane r: m[2i][r], m[2i + 1][r]) for VPDPWSSD
    // with the token's corrections, which are sums of 32 int8 (|corr| <=
    // 4096: exact in int16 and in the int32 sums).
    __m512i mm[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const __m512i lo = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kK4M + kPackRows * 2 * i)));
      const __m512i hi = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kK4M + kPackRows * (2 * i + 1))));
      mm[i] = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    const __m512 dmin =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kScaleBytes)));
#pragma GCC unroll 16
    for (int t = 0; t < kNt; ++t) {
      const int32_t* corr = act[t].corr + kKCorr * b;
      // corr[0..7] as int16 pairs in every 128-bit lane.
      const __m512i cp = _mm512_broadcast_i32x4(
          _mm256_cvtepi32_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr))));
      const __m512i ch = _mm512_add_epi32(_mm512_load_si512(s[0] + kPackRows * t),
                                          _mm512_load_si512(s[2] + kPackRows * t));
      const __m512i cl = _mm512_add_epi32(_mm512_load_si512(s[1] + kPackRows * t),
                                          _mm512_load_si512(s[3] + kPackRows * t));
      const __m512i isum = _mm512_add_epi32(_mm512_slli_epi32(ch, 3), cl);
      __m512i minsum = _mm512_setzero_si512();
      minsum = _mm512_dpwssd_epi32(minsum, mm[0], _mm512_shuffle_epi32(cp, _MM_PERM_AAAA));
      minsum = _mm512_dpwssd_epi32(minsum, mm[1], _mm512_shuffle_epi32(cp, _MM_PERM_BBBB));
      minsum = _mm512_dpwssd_epi32(minsum, mm[2], _mm512_shuffle_epi32(cp, _MM_PERM_CCCC));
      minsum = _mm512_dpwssd_epi32(minsum, mm[3], _mm512_shuffle_epi32(cp, _MM_PERM_DDDD));
      const __m512 dy = _mm512_set1_ps(act[t].d[b]);
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), d), dy, acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(minsum), dmin), dy, acc[t]);
    }
  };
  drive<kNt, 1, 4>(nb, act, unpack, tiles, finish);
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) store_rows(y + t * ldy, acc[t], nr);
}

// ------------------------------------------------------------------ Q6_K
// Unit (b, h): windows w = 0..3 of half h (elements 128 h + 32 w..), each
// twice: tile j = 2 w + half is sub-block 8 h + j (half 0: words 0-3 in B's
// rows 0-3, rows 4-7 zero; half 1: words 4-7 in rows 4-7, rows 0-3 zero).
template <int kNt>
void tile_q6_k(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy,
               int nr) {
  const TileScope scope(legacy_config(kNt));
  constexpr int kWindows = 8;
  alignas(64) uint8_t wbuf[2][kWindows][kTileBytes];
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
  // The zero halves never change: written once.
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < kWindows; ++j)
      std::memset(wbuf[i][j] + (j % 2 == 0 ? 4 * 64 : 0), 0, 4 * 64);
  auto unpack = [&](int64_t u, int slot) __attribute__((always_inline)) {
    uint8_t(*buf)[kTileBytes] = wbuf[slot];
    const int64_t b = u / 2;
    const int h = static_cast<int>(u % 2);
    const uint8_t* blk = group + b * kK6Bytes + kK6W;
    tile_memory(buf);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      const int half = k / 4;
      const uint8_t* wp = blk + ((h * 8 + k) * 3) * 64;
      const __m512i a = _mm512_loadu_si512(wp), bb = _mm512_loadu_si512(wp + 64),
                    c = _mm512_loadu_si512(wp + 128);
      // Levels of window w (elements 128 h + 32 w + 4 k..), as in the VNNI tile.
      const __m512i e[4] = {_mm512_or_si512(_mm512_and_si512(a, low4),
                                            _mm512_and_si512(_mm512_slli_epi16(c, 4), bits45)),
                            _mm512_or_si512(_mm512_and_si512(bb, low4),
                                            _mm512_and_si512(_mm512_slli_epi16(c, 2), bits45)),
                            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(a, 4), low4),
                                            _mm512_and_si512(c, bits45)),
                            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(bb, 4), low4),
                                            _mm512_and_si512(_mm512_srli_epi16(c, 2), bits45))};
#pragma GCC unroll 4
      for (int w = 0; w < 4; ++w) _mm512_store_si512(buf[2 * w + half] + 64 * k, e[w]);
    }
    tile_memory(buf);
  };
  auto tiles = [&](int64_t u, int slot, const uint8_t* a, int64_t a_stride,
                   int32_t(*s)[kNt * kPackRows]) __attribute__((always_inline)) {
    a += 128 * (u % 2);
#pragma GCC unroll 4
    for (int j = 0; j < kWindows; j += 2) {
      SLM_AMX_WINDOW(0, 1, 2, wbuf[slot][j], a + 32 * (j / 2), a_stride, s[j]);
      SLM_AMX_WINDOW(3, 4, 5, wbuf[slot][j + 1], a + 32 * (j / 2), a_stride, s[j + 1]);
    }
  };
  __m512 acc[kNt];
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) acc[t] = _mm512_setzero_ps();
  // Half 0's integer sums wait here for half 1.
  alignas(64) int32_t isum0[kNt][kPackRows];
  auto finish = [&](int64_t u, int32_t(*s)[kNt * kPackRows]) __attribute__((always_inline)) {
    const int64_t b = u / 2;
    const int h = static_cast<int>(u % 2);
    const uint8_t* blk = group + b * kK6Bytes;
#pragma GCC unroll 16
    for (int t = 0; t < kNt; ++t) {
      const int32_t* corr = act[t].corr + kKCorr * b + 8 * h;
      __m512i isum = h == 0 ? _mm512_setzero_si512() : _mm512_load_si512(isum0[t]);
#pragma GCC unroll 8
      for (int j = 0; j < kWindows; ++j) {
        const __m512i dot =
            _mm512_add_epi32(_mm512_load_si512(s[j] + kPackRows * t), _mm512_set1_epi32(corr[j]));
        const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(
            reinterpret_cast<const __m128i*>(blk + kK6Sc + kPackRows * (8 * h + j))));
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, sc));
      }
      if (h == 0) {
        _mm512_store_si512(isum0[t], isum);
        continue;
      }
      const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), d),
                               _mm512_set1_ps(act[t].d[b]), acc[t]);
    }
  };
  drive<kNt, 2, kWindows>(nb, act, unpack, tiles, finish);
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) store_rows(y + t * ldy, acc[t], nr);
}
#undef SLM_AMX_WINDOW

template <DType kType>
void tile_any(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y, int64_t ldy,
              int nr) {
  with_token_count<kPackWideTokens>(nt, [&](auto count) {
    constexpr int kNt = decltype(count)::value;
    if constexpr (kType == DType::Q4_K)
      tile_q4_k<kNt>(nb, group, act, y, ldy, nr);
    else
      tile_q6_k<kNt>(nb, group, act, y, ldy, nr);
  });
}

}  // namespace

void fill_amx_kquants(TypeTable& table) {
  static_assert(kPackRows == 16 && kPackWideTokens <= 16, "a tile holds 16 rows x 16 tokens");
  table.packed_tile_wide[static_cast<int>(DType::Q4_K)] = tile_any<DType::Q4_K>;
  table.packed_tile_wide[static_cast<int>(DType::Q6_K)] = tile_any<DType::Q6_K>;
}

}  // namespace slm::kernels
