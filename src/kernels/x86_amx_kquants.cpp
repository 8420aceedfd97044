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

// x86_amx.cpp's configuration for nt tokens: per set (tiles 0-2, 3-5) B = 8
// rows x 64 bytes, A = nt rows x 32 bytes, C = nt rows x 64 bytes.
TileConfig config_for(int nt) {
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

// Loads the configuration for nt tokens for the scope of one call unless it
// is loaded already; a different one found loaded is put back at the end.
class TileScope {
 public:
  explicit TileScope(int nt) {
    _tile_storeconfig(&saved_);
    tile_memory(&saved_);
    const TileConfig want = config_for(nt);
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

// Windows (tile products) per unit; a unit is what one unpack fills.
constexpr int kWindows = 8;
constexpr int kTileBytes = 8 * 64;  // one tile B

// The frame both types share, over nb super-blocks of kUnits units each:
// unit u + 1 is unpacked (unpack(u, buf)) while unit u's windows go through
// the tile unit, and unit u - 1's stored sums are finished (finish(u, sums))
// after that, so no tile load waits on stores just made and no read of
// sums waits on the tile store just issued. Units finish in order (the float
// steps take the super-blocks in the oracle's order). a_offset(part, j) is
// window j's first activation byte within the Q8_K quants of unit part.
template <int kNt, int kUnits, typename Prepare, typename Unpack, typename AOffset, typename Finish>
[[gnu::always_inline]] inline void drive(int64_t nb, const PackedAct* act,
                                         uint8_t (*wbuf)[kWindows][kTileBytes],
                                         const Prepare& prepare, const Unpack& unpack,
                                         const AOffset& a_offset, const Finish& finish) {
  // Activation rows evenly spaced (packed_matmul's scratch): tile A reads
  // them in place with one stride; otherwise a panel per super-block.
  const auto* q0 = static_cast<const uint8_t*>(act[0].q);
  int64_t stride = kNt > 1 ? static_cast<const uint8_t*>(act[1].q) - q0 : kQ8K;
  for (int t = 2; t < kNt; ++t)
    if (static_cast<const uint8_t*>(act[t].q) != q0 + stride * t) stride = 0;
  alignas(64) int8_t panel[2][kNt * kQKK];
  alignas(64) int32_t sums[2][kWindows][kNt * kPackRows];
  prepare();
  const int64_t n_units = nb * kUnits;
  unpack(0, wbuf[0]);
  for (int64_t u = 0; u < n_units; ++u) {
    if (u + 1 < n_units) unpack(u + 1, wbuf[(u + 1) & 1]);
    const int64_t b = u / kUnits;
    const int part = static_cast<int>(u % kUnits);
    const uint8_t* a;
    int64_t a_stride;
    if (stride != 0) {
      a = q0 + b * kQ8K + kQ8KQs;
      a_stride = stride;
    } else {
      int8_t* p = panel[b & 1];
      if (part == 0) {
        for (int t = 0; t < kNt; ++t)
          std::memcpy(p + t * kQKK, static_cast<const BlockQ8_K*>(act[t].q)[b].qs, kQKK);
      }
      a = reinterpret_cast<const uint8_t*>(p);
      a_stride = kQKK;
    }
    tile_memory(a);
    tile_memory(wbuf[u & 1]);
    int32_t(*s)[kNt * kPackRows] = sums[u & 1];
#pragma GCC unroll 4
    for (int j = 0; j < kWindows; j += 2) {
      SLM_AMX_WINDOW(0, 1, 2, wbuf[u & 1][j], a + a_offset(part, j), a_stride, s[j]);
      SLM_AMX_WINDOW(3, 4, 5, wbuf[u & 1][j + 1], a + a_offset(part, j + 1), a_stride, s[j + 1]);
    }
    tile_memory(s);
    if (u > 0) finish(u - 1, sums[(u - 1) & 1]);
  }
  finish(n_units - 1, sums[(n_units - 1) & 1]);
}

// ------------------------------------------------------------------ Q4_K
template <int kNt>
void tile_q4_k(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy,
               int nr) {
  const TileScope scope(kNt);
  alignas(64) uint8_t wbuf[2][kWindows][kTileBytes];
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  // Window j = sub-block j: chunk j / 2's words, low nibbles for even j.
  auto unpack = [&](int64_t b, uint8_t(*buf)[kTileBytes]) __attribute__((always_inline)) {
    const uint8_t* blk = group + b * kK4Bytes + kK4Qs;
    tile_memory(buf);
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m512i v = _mm512_loadu_si512(blk + 64 * (8 * c + k));
        _mm512_store_si512(buf[2 * c] + 64 * k, _mm512_and_si512(v, low4));
        _mm512_store_si512(buf[2 * c + 1] + 64 * k,
                           _mm512_and_si512(_mm512_srli_epi16(v, 4), low4));
      }
    }
    tile_memory(buf);
  };
  auto a_offset = [](int, int j) { return 32 * j; };
  __m512 acc[kNt];
#pragma GCC unroll 16
  for (int t = 0; t < kNt; ++t) acc[t] = _mm512_setzero_ps();
  auto finish = [&](int64_t b, int32_t(*s)[kNt * kPackRows]) __attribute__((always_inline)) {
    const uint8_t* blk = group + b * kK4Bytes;
    __m512 scf[kWindows];
#pragma GCC unroll 8
    for (int j = 0; j < kWindows; ++j)
      scf[j] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kK4Sc + kPackRows * j))));
    // Mins as int16 pairs (lane r: m[2i][r], m[2i + 1][r]) for VPDPWSSD
    // with the token's corrections, which are sums of 32 int8 (|corr| <=
    // 4096: exact in int16 and in the int32 sums).
    __m512i mm[kWindows / 2];
#pragma GCC unroll 4
    for (int i = 0; i < kWindows / 2; ++i) {
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
      __m512i isum = _mm512_setzero_si512(), minsum = _mm512_setzero_si512();
      // sc_j * C_j in float: every product (|C_j| <= 32 * 15 * 128, sc_j <= 63)
      // and every sum of four (< 2^24) is an exact integer there, so two
      // chains of four give the int32 sum exactly, in fewer uops than VPMULLD.
      __m512 half[2];
#pragma GCC unroll 2
      for (int i = 0; i < 2; ++i) {
        half[i] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(s[4 * i] + kPackRows * t)),
                                scf[4 * i]);
#pragma GCC unroll 3
        for (int j = 4 * i + 1; j < 4 * i + 4; ++j)
          half[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(s[j] + kPackRows * t)),
                                    scf[j], half[i]);
      }
      isum = _mm512_add_epi32(_mm512_cvtps_epi32(half[0]), _mm512_cvtps_epi32(half[1]));
      minsum = _mm512_dpwssd_epi32(minsum, mm[0], _mm512_shuffle_epi32(cp, _MM_PERM_AAAA));
      minsum = _mm512_dpwssd_epi32(minsum, mm[1], _mm512_shuffle_epi32(cp, _MM_PERM_BBBB));
      minsum = _mm512_dpwssd_epi32(minsum, mm[2], _mm512_shuffle_epi32(cp, _MM_PERM_CCCC));
      minsum = _mm512_dpwssd_epi32(minsum, mm[3], _mm512_shuffle_epi32(cp, _MM_PERM_DDDD));
      const __m512 dy = _mm512_set1_ps(act[t].d[b]);
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), d), dy, acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(minsum), dmin), dy, acc[t]);
    }
  };
  drive<kNt, 1>(
      nb, act, wbuf, [] {}, unpack, a_offset, finish);
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
  const TileScope scope(kNt);
  alignas(64) uint8_t wbuf[2][kWindows][kTileBytes];
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
  // The zero halves never change: written once.
  auto prepare = [&] {
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < kWindows; ++j)
        std::memset(wbuf[i][j] + (j % 2 == 0 ? 4 * 64 : 0), 0, 4 * 64);
  };
  auto unpack = [&](int64_t u, uint8_t(*buf)[kTileBytes]) __attribute__((always_inline)) {
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
  auto a_offset = [](int h, int j) { return 128 * h + 32 * (j / 2); };
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
  drive<kNt, 2>(nb, act, wbuf, prepare, unpack, a_offset, finish);
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
