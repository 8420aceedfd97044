// AMX-INT8 tiles over packed Q4_K and Q5_K groups for 2..64 tokens (prompt
// processing; layout in internal.h). The VNNI tile (x86_avx512_packed.cpp)
// unpacks a super-block once per 4 tokens and spends 64 VPDPBUSD per token
// on it; here TDPBSUD does the integer dot products of 16 tokens at once.
//
// A sub-block's scale must multiply its dot product before the super-block's
// sum, so the scale goes into the weights: sc (6 bits) = 8 sh + sl with sh,
// sl < 8, and a level (< 16) times either fits a byte. The unpack writes each
// level twice, as level x sh and level x sl (tile B: 16 rows x 64 bytes,
// B[k][4 r + i] = element 4 k + i of row r, the packed words' own order), and
// two tile sums over the whole super-block give isum = 8 C_h + C_l =
// sum_j sc_j dot_j in exact int32; the mins term sum_j m_j corr_j comes from
// VPDPWSSD. Then the scalar oracle's float steps (packed.cpp tile_scalar_k),
// so the results are bit-identical to every ISA. The unpack costs about as
// much as the tile work of 16 tokens, so one unpack serves up to four passes
// of 16 tokens (TypeTable::packed_wide_tokens = 64). bench_kernels, 4096 x
// 4096, 64 tokens, 1 thread (Xeon family 6 model 167): 146-159 GMAC/s with
// the VNNI tile, 262-276 with this one. Q6_K's 16-value sub-blocks with
// signed 8-bit scales do not split this way; a tile product per sub-block
// (scales applied after, as the VNNI tile does) measured no faster than
// VNNI (113.6 against 115.4 GMAC/s), so Q6_K stays on the VNNI tile.
//
// The tile configuration differs from x86_amx.cpp's, which keeps the token
// count it loaded in a thread_local and reloads only when that changes: a
// call here that finds another configuration loaded puts it back when it
// returns, so that cache stays true. This file alone (with x86_amx.cpp) is
// compiled with -mamx-* (and -mavx512vbmi: every AMX CPU has VBMI);
// dispatch.cpp offers it only where Linux granted AMX.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/internal.h"
#include "kernels/x86_amx_tile.h"

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

// Q4_K's: A = nt rows x 64 bytes in tiles 0-1, B = 16 rows x 64 bytes in
// tiles 2-3, four sums C = nt rows x 64 bytes in tiles 4-7.
amx::TileConfig q4_k_config(int nt) {
  amx::TileConfig cfg;
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
  explicit TileScope(const amx::TileConfig& want) {
    _tile_storeconfig(&saved_);
    amx::tile_memory(&saved_);
    if (std::memcmp(&saved_, &want, sizeof want) == 0) return;
    amx::tile_memory(&want);
    _tile_loadconfig(&want);
    // Nothing configured before (palette 0): keep ours, nobody relies on it.
    restore_ = saved_.palette != 0;
  }
  ~TileScope() {
    if (!restore_) return;
    amx::tile_memory(&saved_);
    _tile_loadconfig(&saved_);
  }
  TileScope(const TileScope&) = delete;
  TileScope& operator=(const TileScope&) = delete;

 private:
  amx::TileConfig saved_;
  bool restore_ = false;
};

inline void store_rows(float* y, __m512 v, int nr) {
  if (nr == kPackRows)
    _mm512_storeu_ps(y, v);
  else
    _mm512_mask_storeu_ps(y, static_cast<__mmask16>((1u << nr) - 1), v);
}

constexpr int kTileBytes = 8 * 64;  // one tile B
// Unpacked super-blocks in flight: each is unpacked two super-blocks before
// its tile loads, as x86_amx.cpp does (a tile load of bytes still on their
// way from the store buffer waits for them). perf showed the first B load of
// a super-block as the hottest instruction with one ahead; two ahead measured
// the same within the noise of a shared machine.
constexpr int kWeightSlots = 3;

// Bytes from one token's activation row to the next when the nt rows are
// evenly spaced (packed_matmul's scratch), else 0.
inline int64_t evenly_spaced(const PackedAct* act, int nt) {
  if (nt == 1) return kQ8K;
  const auto* q0 = static_cast<const uint8_t*>(act[0].q);
  const int64_t stride = static_cast<const uint8_t*>(act[1].q) - q0;
  for (int t = 2; t < nt; ++t)
    if (static_cast<const uint8_t*>(act[t].q) != q0 + stride * t) return 0;
  return stride;
}

// The tile's frame over nb super-blocks and kPasses passes of kNt tokens:
// super-block b goes through the tile unit once per pass (tiles(b, slot, a,
// a_stride, sums): slot = b % kWeightSlots of the caller's weight buffers,
// a the pass's first token's Q8_K quants of super-block b, the tokens
// a_stride bytes apart, the tile sums to kSums buffers of kNt x 16 int32),
// then super-block b + 2 is unpacked (unpack(b, slot)) and b - 1's stored
// sums finished (finish(b, pass, sums)): no tile load waits on stores just
// made, no read of sums on the tile store just issued, and one unpack serves
// every pass. Super-blocks finish in order (the oracle's float steps).
// Rows that are not evenly spaced (kPasses must be 1 then) go through a
// panel per super-block.
template <int kNt, int kPasses, int kSums, typename Unpack, typename Tiles, typename Finish>
[[gnu::always_inline]] inline void drive(int64_t nb, const PackedAct* act, const Unpack& unpack,
                                         const Tiles& tiles, const Finish& finish) {
  const auto* q0 = static_cast<const uint8_t*>(act[0].q);
  const int64_t stride = evenly_spaced(act, kNt * kPasses);
  alignas(64) int8_t panel[kPasses == 1 ? 2 : 1][kNt * kQKK];
  alignas(64) int32_t sums[2][kPasses][kSums][kNt * kPackRows];
  const int64_t n_units = nb;
  unpack(0, 0);
  if (n_units > 1) unpack(1, 1);
  for (int64_t u = 0; u < n_units; ++u) {
    const int64_t b = u;
    const int slot = static_cast<int>(u & 1);  // of the sums
    const int wslot = static_cast<int>(u % kWeightSlots);
#pragma GCC unroll 4
    for (int p = 0; p < kPasses; ++p) {
      const uint8_t* a;
      int64_t a_stride;
      if (stride != 0) {
        a = q0 + p * kNt * stride + b * kQ8K + kQ8KQs;
        a_stride = stride;
      } else {
        int8_t* panel_b = panel[b & 1];
        for (int t = 0; t < kNt; ++t)
          std::memcpy(panel_b + t * kQKK, static_cast<const BlockQ8_K*>(act[t].q)[b].qs, kQKK);
        a = reinterpret_cast<const uint8_t*>(panel_b);
        a_stride = kQKK;
      }
      amx::tile_memory(a);
      tiles(u, wslot, a, a_stride, sums[slot][p]);
    }
    amx::tile_memory(sums[slot]);
    if (u + 2 < n_units) unpack(u + 2, static_cast<int>((u + 2) % kWeightSlots));
    if (u > 0) {
#pragma GCC unroll 4
      for (int p = 0; p < kPasses; ++p) finish(u - 1, p, sums[slot ^ 1][p]);
    }
  }
#pragma GCC unroll 4
  for (int p = 0; p < kPasses; ++p) finish(n_units - 1, p, sums[(n_units - 1) & 1][p]);
}

// ------------------------------------------------------------------ Q4_K
// Sub-block scales are 6 bits: sc = 8 sh + sl with sh, sl < 8, and a level
// (< 16) times either fits a byte. The unpack writes each window twice, as
// level * sh and level * sl (one VPERMT2B lookup each), so two tile sums
// accumulate the whole super-block: isum = 8 C_h + C_l = sum_j sc_j dot_j
// exactly, with no per-window stores or scaling.
//
// Q5_K (kQ5, its layout in internal.h) takes the same steps: a level's fifth
// bit adds 16 x sh (16 x sl) to the looked-up byte (at most 31 x 7 = 217, still
// a byte), and its mins are stored as the int16 pairs VPDPWSSD takes.
template <int kNt, int kPasses, bool kQ5 = false>
void tile_q4_k(int64_t nb, const uint8_t* group, const PackedAct* act, float* y, int64_t ldy,
               int nr) {
  constexpr int64_t kBytes = kQ5 ? packed_q5k::kBytes : kK4Bytes;
  constexpr int64_t kQs = kQ5 ? packed_q5k::kQs : kK4Qs;
  static_assert(packed_q5k::kSc == kK4Sc && packed_q5k::kM == kK4M &&
                packed_q5k::kDmin == kScaleBytes);
  const TileScope scope(q4_k_config(kNt));
  // [slot][h or l][window]: tile B rows.
  alignas(64) uint8_t wbuf[kWeightSlots][2][8][kTileBytes];
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
    const uint8_t* blk = group + b * kBytes;
    uint8_t(*bh)[kTileBytes] = wbuf[slot][0];
    uint8_t(*bl)[kTileBytes] = wbuf[slot][1];
    amx::tile_memory(bh);
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
        const __m512i v = _mm512_loadu_si512(blk + kQs + 64 * (8 * c + k));
        const __m512i lev[2] = {_mm512_and_si512(v, low4),
                                _mm512_and_si512(_mm512_srli_epi16(v, 4), low4)};
#pragma GCC unroll 2
        for (int i = 0; i < 2; ++i) {
          __m512i h = _mm512_permutex2var_epi8(tab0, _mm512_or_si512(lev[i], hi_idx[i]), tab1);
          __m512i l = _mm512_permutex2var_epi8(tab0, _mm512_or_si512(lev[i], lo_idx[i]), tab1);
          if constexpr (kQ5) {
            // Bit 2c + i of the qh bytes: the window's fifth bits.
            const __mmask64 fifth =
                _mm512_test_epi8_mask(_mm512_loadu_si512(blk + packed_q5k::kQh + 64 * k),
                                      _mm512_set1_epi8(static_cast<char>(1 << (2 * c + i))));
            h = _mm512_mask_add_epi8(h, fifth, h, hi_idx[i]);
            l = _mm512_mask_add_epi8(l, fifth, l, lo_idx[i]);
          }
          _mm512_store_si512(bh[2 * c + i] + 64 * k, h);
          _mm512_store_si512(bl[2 * c + i] + 64 * k, l);
        }
      }
    }
    amx::tile_memory(bh);
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
  // Token t of pass p at acc[p * kNt + t].
  __m512 acc[kPasses * kNt];
#pragma GCC unroll 16
  for (int t = 0; t < kPasses * kNt; ++t) acc[t] = _mm512_setzero_ps();
  auto finish = [&](int64_t b, int p, int32_t(*s)[kNt * kPackRows]) __attribute__((always_inline)) {
    const uint8_t* blk = group + b * kBytes;
    // Mins as int16 pairs (lane r: m[2i][r], m[2i + 1][r]) for VPDPWSSD
    // with the token's corrections, which are sums of 32 int8 (|corr| <=
    // 4096: exact in int16 and in the int32 sums).
    __m512i mm[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      if constexpr (kQ5) {
        mm[i] = _mm512_cvtepu8_epi16(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + packed_q5k::kM + 32 * i)));
        continue;
      }
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
      const int32_t* corr = act[p * kNt + t].corr + kKCorr * b;
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
      const __m512 dy = _mm512_set1_ps(act[p * kNt + t].d[b]);
      acc[p * kNt + t] =
          _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), d), dy, acc[p * kNt + t]);
      acc[p * kNt + t] =
          _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(minsum), dmin), dy, acc[p * kNt + t]);
    }
  };
  drive<kNt, kPasses, 4>(nb, act, unpack, tiles, finish);
#pragma GCC unroll 16
  for (int t = 0; t < kPasses * kNt; ++t) store_rows(y + t * ldy, acc[t], nr);
}

// Full passes of 16 tokens share each unpacked super-block (at most
// kMaxPasses[type] of them, packed_wide_tokens in the table); the rest, or
// rows that are not evenly spaced, go 16 tokens a call.
constexpr int kMaxPasses = 4;

template <bool kQ5 = false>
void tile_any(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y, int64_t ldy,
              int nr) {
  constexpr int kPass = kPackWideTokens;
  int done = 0;
  const int full = std::min(nt / kPass, kMaxPasses);
  if (full >= 2 && evenly_spaced(act, full * kPass) != 0) {
    with_count<kMaxPasses>(full, [&](auto passes) {
      tile_q4_k<kPass, decltype(passes)::value, kQ5>(nb, group, act, y, ldy, nr);
    });
    done = full * kPass;
  }
  while (done < nt) {
    const int n = std::min(kPass, nt - done);
    with_count<kPass>(n, [&](auto count) {
      tile_q4_k<decltype(count)::value, 1, kQ5>(nb, group, act + done, y + done * ldy, ldy, nr);
    });
    done += n;
  }
}

}  // namespace

void fill_amx_kquants(TypeTable& table) {
  static_assert(kPackRows == 16 && kPackWideTokens <= 16, "a tile holds 16 rows x 16 tokens");
  static_assert(kPackWideTokens * kMaxPasses <= kPackWideTokensMax);
  table.packed_tile_wide[static_cast<int>(DType::Q4_K)] = tile_any<>;
  table.packed_wide_tokens[static_cast<int>(DType::Q4_K)] = kPackWideTokens * kMaxPasses;
  table.packed_tile_wide[static_cast<int>(DType::Q5_K)] = tile_any<true>;
  table.packed_wide_tokens[static_cast<int>(DType::Q5_K)] = kPackWideTokens * kMaxPasses;
  table.packed_wide_min_tokens[static_cast<int>(DType::Q5_K)] = kPackMaxTokens + 1;
}

}  // namespace slm::kernels
