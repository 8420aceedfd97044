// Shared by the kernel files only (not part of the public API): the per-ISA
// tables and the hooks each kernel file uses to fill them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "base/static_count.h"
#include "kernels/blocks.h"
#include "kernels/kernels.h"

namespace slm::kernels {

// DType ids are small (< 31, see base/dtype.h), so a table is indexed by id.
constexpr int kTypeSlots = 31;

// ------------------------------------------------------------------ packed weights
// PackedMatrix layout (packed.cpp): rows in groups of kPackRows; a group holds
// its blocks in column order. A 32-element block (Q4_0, Q5_0, Q8_0) is
//   d[kPackRows]  fp16 weight scales, row r at index r (32 bytes)
//   qs            the rows' quants interleaved by 4-byte words: word k of row r
//                 at (k * kPackRows + r) * 4, so one 512-bit load gives 16 rows
//                 x 4 quants, lane r = row r (VPDPBUSD's shape)
// Q8_0 stores q + 128 (unsigned, 8 words); Q4_0 the raw nibble bytes (4 words:
// low nibbles are elements 4k..4k+3, high nibbles 16+4k..16+4k+3); Q5_0 the
// Q4_0 nibble words preceded by qh[kPackRows] (32 bits per row, reordered as
// packed.cpp's q5_bit_position says) between d and qs.
// Q4_1 / Q5_1 / IQ4_NL (packed_legacy2.cpp) keep Q4_0's / Q5_0's words: Q4_1
// is d[16], m[16] fp16, then the nibble words; Q5_1 d[16], m[16], qh[16]
// (Q5_0's bit order), the nibble words; IQ4_NL d[16], then its raw nibble
// words (code book indices; the SIMD tiles look the values up).
// A Q4_K super-block (256 elements) is
//   d[16], dmin[16]  fp16 (64 bytes)
//   sc[8][16], m[8][16]  6-bit sub-block scales and mins, one byte each
//   qs[4][8][16]     words: chunk c (64 elements), word k of row r = bytes
//                    32c + 4k.. of the row's qs (low nibbles: elements
//                    64c + 4k.., sub-block 2c; high: 64c + 32 + 4k.., 2c + 1)
// (148 bytes per row and super-block against the file's 144).
// A Q5_K super-block (offsets in packed_q5k below) is Q4_K's with the mins
// paired for VPMADDWD and the rows' fifth bits before qs:
//   d[16], dmin[16], sc[8][16] as Q4_K's
//   m[4][16][2]      mins of sub-blocks 2p, 2p + 1 of row r at (16p + r) * 2
//   qh[8][16]        words: word k of row r = bytes 4k.. of the row's qh (bit
//                    j of byte i: fifth bit of element 32j + 4k + i)
//   qs[4][8][16]     words, as Q4_K's
// (180 bytes per row and super-block against the file's 176).
// A Q6_K super-block is d[16] fp16, sc[16][16] int8, then words
// [h:2][k:8][A, B, C][16 rows] of 4 bytes: A = ql[64h + 4k..], B =
// ql[64h + 32 + 4k..], C = qh[32h + 4k..] of the row (210 bytes per row, as
// in the file). Element 128h + 4k + i (+32, +64, +96) is A low (B low, A high,
// B high) nibble i with bits 0-1 (2-3, 4-5, 6-7) of C byte i on top.
// An F16 block is 32 columns x kPackRows halfs, column-major: element c of
// row r at (c * kPackRows + r) * 2 (1024 bytes, as in the file), so one
// 256-bit load is column c of all 16 rows. Its tiles take F32 activations
// (PackedAct::q is the token's float row; d and corr are unused).
// A Q3_K super-block (packed_k23.cpp) is d[16] fp16, sc[16][16] int8 (the
// 6-bit scales minus 32), words qs[2][8][16] (word (h, k) of row r = the
// row's qs[32h + 4k..]) and hm[8][16] (word k = hmask[4k..]): element
// 128h + 32j + 4k + i is bits 2j, 2j + 1 of byte i of qs word (h, k) with bit
// 4h + j of byte i of hm word k as bit 2, level 0..7 for q - 4 (114 bytes
// per row and super-block against the file's 110). A Q2_K super-block is
// d[16], dmin[16] fp16, sc[8][16][2] (the row's scale bytes 2p, 2p + 1 at
// (16p + r) * 2: scale in the low nibble, min in the high), then qs words as
// Q3_K's: element 128h + 32j + 4k + i is bits 2j, 2j + 1 of byte i of word
// (h, k), level 0..3 (84 bytes, as in the file).
constexpr int kPackRows = 16;
namespace packed_q5k {
constexpr int64_t kD = 0, kDmin = 2 * kPackRows, kSc = 4 * kPackRows, kM = kSc + 8 * kPackRows,
                  kQh = kM + 8 * kPackRows, kQs = kQh + 32 * kPackRows,
                  kBytes = kQs + 128 * kPackRows;
}  // namespace packed_q5k
// Tokens computed together by one tile call (weights unpacked once for all).
constexpr int kPackMaxTokens = 8;
// Tokens of one wide tile call (TypeTable::packed_tile_wide: AMX), 2..16.
constexpr int kPackWideTokens = 16;
// Most tokens a wide tile takes where its type allows more than
// kPackWideTokens (TypeTable::packed_wide_tokens: the AMX K-quant tiles,
// whose weight unpack then serves several 16-token passes).
constexpr int kPackWideTokensMax = 64;
// Fewer tokens than this take the narrow tiles even where wide ones exist: a
// wide (AMX) tile's fixed cost per block (tile loads, the sums' round trip
// through memory) loses to VNNI below about 8 tokens (bench_kernels 2, 4, 8).
constexpr int kPackWideMinTokens = 8;
// Fewest tokens of a chunk that take TypeTable::packed_tile_pair where it
// exists (decoding keeps the one-group tiles, which wait on memory).
constexpr int kPackPairMinTokens = 2;
// Most tokens one packed_tile_pair call takes where its type allows more than
// kPackMaxTokens (TypeTable::packed_pair_tokens): a 16-sequence decode step
// then unpacks and reads each pair of groups once.
constexpr int kPackPairMaxTokens = 16;

// One token's activation for packed kernels (F16: its float row): its blocks (BlockQ8_0 for the
// 32-element types, BlockQ8_K for the K-quants), the block scales as float, and
// per-block integer corrections:
//  - 32-element types: corr[b] = -offset * sum(q of block b), where offset (8
//    for Q4_0, 16 for Q5_0, 128 for Q8_0 and IQ4_NL) undoes the unsigned
//    weight encoding; Q4_1 / Q5_1: corr[b] = sum(q of block b), which the
//    rows' min m multiplies (packed_block_corr);
//  - Q4_K: corr[16 b + j] = sum of q over 32-wide sub-block j (j < 8), which
//    the mins multiply;
//  - Q6_K: corr[16 b + s] = -32 * sum of q over 16-wide sub-block s;
//  - Q3_K: corr[16 b + s] = -4 * sum of q over 16-wide sub-block s;
//  - Q2_K: corr[16 b + s] = sum of q over 16-wide sub-block s (the mins'),
//    within int16 as Q8_K's bsums are.
//  - Q5_K: as Q4_K.
struct PackedAct {
  const void* q;
  const float* d;
  const int32_t* corr;
};

// Ints per super-block in PackedAct::corr for the K-quants.
constexpr int kKCorr = 16;

// SIMD tiles take their token count as a template argument (one accumulator
// register per token): with_count (base/static_count.h) turns a run-time
// count into it.
// in_token_passes: f(t0, count) over nt tokens in passes of at most kMax.
template <int kMax, typename F>
inline void in_token_passes(int nt, const F& f) {
  for (int t0 = 0; t0 < nt; t0 += kMax)
    with_count<kMax>(std::min(kMax, nt - t0), [&](auto count) { f(t0, count); });
}

using PackedTileFn = void (*)(int64_t nb, const uint8_t* group, const PackedAct* act, int nt,
                              float* y, int64_t ldy, int nr);
// Two adjacent groups at once: the full group at group and the next one (nr1
// valid rows) group_bytes after it, outputs y[t * ldy + r] for r < 16 + nr1.
using PackedPairTileFn = void (*)(int64_t nb, const uint8_t* group, int64_t group_bytes,
                                  const PackedAct* act, int nt, float* y, int64_t ldy, int nr1);
// Tokens' activations arranged for tile calls (arrange_tile_acts, once per
// matmul), in tiles of kPackWideTokens tokens (nb * kArrangedBlockBytes
// bytes each), block after block: block b at b * kArrangedBlockBytes holds
// qs[kPackWideTokens][kQK32] (token t's quants of block b at t * kQK32: a
// tile's rows), then d[kPackWideTokens] float and corr[kPackWideTokens]
// int32 (PackedAct's). So a tile reads one contiguous stream instead of a
// line from every token's row per block.
constexpr int64_t kArrangedBlockBytes = kPackWideTokens * (kQK32 + 8);
// Bytes per block of the weight scratch ws of a PackedTileArrangedFn.
constexpr int64_t kArrangedWeightBytes = kPackRows * kQK32;
// y[t * ldy + r] for n_tokens tokens (acts: ceil(n_tokens / kPackWideTokens)
// tiles) and rows r < nr of a group; ws: nb * kArrangedWeightBytes bytes,
// 64-byte aligned, the caller's (per thread), where the call keeps the
// group's weights in the tiles' form for all its token tiles.
using PackedTileArrangedFn = void (*)(int64_t nb, const uint8_t* group, const uint8_t* acts,
                                      int64_t n_tokens, float* y, int64_t ldy, int nr, uint8_t* ws);
// Writes act[0..nt)'s nb blocks (32-element types' Q8_0 rows) as one tile of
// the layout above to out (nb * kArrangedBlockBytes bytes); slots of tokens
// >= nt are left alone.
void arrange_tile_acts(const PackedAct* act, int nt, int64_t nb, uint8_t* out);
// Row rr of a packed group back to floats, blocks [b0, b0 + nb) into dst
// (PackedMatrix::dequantize_stripe, training's transposed product): the
// same bits as the scalar dequantizer (d times the exact level). Q8_0, Q4_0.
using PackedRowFn = void (*)(const uint8_t* group, int64_t block_bytes, int64_t b0, int64_t nb,
                             int rr, float* dst);

// Float-weight tile over the plain layout (F16 / BF16 rows x F32 tokens):
// y[t * ldy + r] = dot(w row r, x row t) for r < nr <= kFloatTileRows,
// t < nt <= kFloatTileTokens; w rows w_row bytes apart, x rows x_row floats.
// Each (row, token) element takes the same steps whatever nr and nt are, so
// the thread split never changes results.
constexpr int kFloatTileRows = 4;
constexpr int kFloatTileTokens = 4;
using FloatTileFn = void (*)(int64_t n, const uint8_t* w, size_t w_row, int nr, const float* x,
                             int64_t x_row, int nt, float* y, int64_t ldy);

// The symmetric levels of one block of 32 (Q4_0 / Q5_0 in the file,
// scalar_legacy.cpp, and the column copies' Q6_0, columns.cpp: levels 16,
// 32, 64): d = the signed extreme / -(levels / 2), so that the extreme lands
// on level 0; q[i] = x[i] / d + levels / 2 rounded half up into
// [0, levels - 1] (the element opposite the extreme, levels, clamped; a
// non-finite quotient, from a hostile file: 0 for a NaN, else clamped).
// Returns d.
float symmetric_levels_32(const float* x, int levels, int* q);

// Bytes of one block's quants in a row of a column copy (kernels.h ColumnRows),
// after the row's fp16 scales: Q8_0 32; Q6_0 24 (16 of nibbles as Q4_0's,
// then 8 of 2-bit highs: byte k holds those of outputs k, k + 8, k + 16,
// k + 24 at bits 0, 2, 4, 6; value = (nibble | high << 4) - 32); Q5_0 20
// (4 bytes of high bits, then 16 of nibbles, as in the file's block); Q4_0 16.
constexpr size_t column_quant_bytes(DType t) {
  return t == DType::Q8_0 ? 32 : t == DType::Q6_0 ? 24 : t == DType::Q5_0 ? 20 : 16;
}
// The int8 column kernels' walk over n kept inputs (x86_avx512_columns_int8.cpp,
// x86_avx2_columns_int8.cpp): groups of col_group(kType) in kept order, the
// last one short, each handed to group(quads, g, m, next, m_next): quads the
// quads of 4 columns to run, as a std::integral_constant (all of them above
// 8 real inputs, 2 above 4, else 1: the other quads' activations would all
// be 0), the group's first input g and m real inputs, and the m_next inputs
// kAhead groups on (next null where none) for its prefetches.
template <DType kType, int64_t kAhead, class Group>
inline void int8_column_groups(const int32_t* idx, int64_t n, Group&& group) {
  constexpr int64_t kGroup = col_group(kType);
  for (int64_t g = 0; g < n; g += kGroup) {
    const int64_t m = std::min(kGroup, n - g);
    const int64_t m_next = std::clamp<int64_t>(n - g - kAhead * kGroup, 0, kGroup);
    const int32_t* next = m_next > 0 ? idx + g + kAhead * kGroup : nullptr;
    if (kGroup > 8 && m > 8)
      group(std::integral_constant<int, static_cast<int>(kGroup / 4)>{}, g, m, next, m_next);
    else if (m > 4)
      group(std::integral_constant<int, 2>{}, g, m, next, m_next);
    else
      group(std::integral_constant<int, 1>{}, g, m, next, m_next);
  }
}
// Zeroed bytes after a column copy's last row: the int8 kernels read each
// block's quants as one 32-byte run, 12 bytes past a Q5_0 block's 20 and 8
// past a Q6_0's 24 (those bytes are never used).
constexpr size_t kColumnReadSlack = 32;

// matvec_columns (columns.cpp): a copy whose kept-input runs are this short
// (every q/k/v, o, gate/up and down copy of TinyLlama and Qwen2.5-0.5B,
// stacked or not, in Q4_0 and Q8_0: 504 B to 12 KB) is split between the
// threads by kept inputs, so each thread streams whole runs; cut by outputs,
// each thread read a piece of every run, short strided pieces the
// prefetchers follow badly (a 4 KiB bound left the stacked gate/up copies,
// 5.5-12 KB runs, cut by outputs: Qwen2.5-0.5B Q4_0 at 0.5 decoded 91 tok/s
// at 2 threads, 109 split by inputs). The partial sums cost (parts - 1) x
// rows floats, which this bound keeps within L2 (Q8_0: 61,680 rows); longer
// runs (Qwen's head, 161 KB) are cut by outputs.
constexpr size_t kColumnsInputSplitMaxRunBytes = 65536;
// matvec_columns: from this many input-split rows (all outs of one call) the
// parts are added into y by the pool, not by the calling thread alone.
constexpr int64_t kColumnsParallelAddRows = 4096;

struct TypeTable {
  TypeTraits by_type[kTypeSlots];
  FloatTileFn float_tile[kTypeSlots] = {};
  PackedTileFn packed_tile[kTypeSlots] = {};
  // packed_tile over two adjacent groups, with its bits, for prompts of
  // kPackPairMinTokens or more tokens that take no wide tile (null: none).
  PackedPairTileFn packed_tile_pair[kTypeSlots] = {};
  // Most tokens one packed_tile_pair call takes (0: kPackMaxTokens; at most
  // kPackPairMaxTokens).
  int packed_pair_tokens[kTypeSlots] = {};
  // Tiles for 2..kPackWideTokens tokens (2..packed_wide_tokens where set;
  // null: packed_tile in passes of kPackMaxTokens), with packed_tile's bits; the activations' rows
  // are best evenly spaced (packed_matmul's scratch), as a tile loads them with one stride.
  PackedTileFn packed_tile_wide[kTypeSlots] = {};
  // Most tokens one packed_tile_wide call takes (0: kPackWideTokens; at
  // most kPackWideTokensMax).
  int packed_wide_tokens[kTypeSlots] = {};
  // Fewest tokens a packed_tile_wide call takes (0: kPackWideMinTokens;
  // more where the narrow tile stays faster there, e.g. Q5_K's 8-token VNNI
  // pass: 154-159 against 142-143 GMAC/s with AMX at 8 tokens, 142 against
  // 170-174 at 10, bench_kernels 4096 x 4096, 1 thread).
  int packed_wide_min_tokens[kTypeSlots] = {};
  // packed_tile_wide's product over arranged activations (null: none).
  PackedTileArrangedFn packed_tile_arranged[kTypeSlots] = {};
  PackedRowFn packed_row[kTypeSlots] = {};  // null: PackedMatrix's own loop
  // Whether packing pays with this table (a SIMD tile, not the scalar oracle).
  bool packed_native[kTypeSlots] = {};
  AxpyRowsFn axpy_rows = nullptr;         // kernels.h; set by every table (scalar_float.cpp first)
  AxpyRowsNFn axpy_rows_n = nullptr;      // kernels.h; likewise
  LoraKernels lora;                       // F16 LoRA factors (scalar_float.cpp and the SIMD files)
  LoraQ8Kernels lora_q8;                  // 8-bit LoRA factors (scalar_float.cpp, x86_avx512.cpp)
  AxpyColsFn axpy_cols[kTypeSlots] = {};  // kernels.h; Q8_0 Q6_0 Q5_0 Q4_0 (columns.cpp)
  ColsAlgo axpy_cols_algo = ColsAlgo::kFloat;  // what axpy_cols computes (kernels.h)
  // Per copy type: the share of kept inputs below which axpy_cols beats this
  // table's dense kernels (ColumnMatrix::pays_below), set beside each kernel
  // from measurements; 0 (the scalar loops, which every SIMD dense kernel
  // outruns): never, and no copy is built.
  double axpy_cols_pays_below[kTypeSlots] = {};
  TypeTraits& operator[](DType t) { return by_type[static_cast<uint32_t>(t)]; }
  const TypeTraits& operator[](DType t) const { return by_type[static_cast<uint32_t>(t)]; }
};

// Each kernel file contributes the entries it implements; later fills override
// earlier ones, so an ISA table starts as a copy of the table below it.
void fill_scalar_legacy(TypeTable& table);   // Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL
void fill_scalar_kquants(TypeTable& table);  // Q2_K..Q6_K, Q8_K
void fill_scalar_float(TypeTable& table);    // F32 F16 BF16
void fill_avx2(TypeTable& table);
void fill_avx512(TypeTable& table);
void fill_neon(TypeTable& table);
void fill_neon_dotprod(TypeTable& table);
void fill_scalar_packed(TypeTable& table);   // packed-layout oracle tiles
void fill_scalar_columns(TypeTable& table);  // axpy_cols oracles (columns.cpp)
// The ISA table's axpy_cols_pays_below for a copy type (ColumnMatrix::pays_below).
double axpy_cols_pays_below(Isa isa, DType copy);
void fill_avx2_columns_int8(TypeTable& table);    // Q4_0 and Q8_0 int8 kernels (ColsAlgo::kInt8)
void fill_avx512_columns_int8(TypeTable& table);  // needs VNNI and VBMI
void fill_avx2_packed(TypeTable& table);          // Q4_0 Q5_0 Q4_K
void fill_avx512_packed(TypeTable& table);
void fill_amx_packed(TypeTable& table);  // Q4_0 Q5_0 Q8_0 wide and arranged tiles (x86_amx.cpp)
// Q4_K and Q5_K wide tiles of up to 64 tokens, Q5_K's from 9 tokens (x86_amx_kquants.cpp).
void fill_amx_kquants(TypeTable& table);
// Q3_K / Q2_K packed layouts (packed_k23.cpp; tiles in x86_avx512_packed_k23.cpp).
void fill_scalar_packed_k23(TypeTable& table);
void fill_avx512_packed_k23(TypeTable& table);
int64_t packed_k23_block_bytes(DType t);  // 0 for other types
// Super-block b of the source row (src_block) into row r of a packed block.
void pack_k23(DType t, const uint8_t* src_block, int r, uint8_t* out);
// Row r of a packed super-block as 256 floats, the scalar dequantizer's bits.
void dequantize_k23(DType t, const uint8_t* block, int r, float* dst);

// Packed Q5_K: its VNNI tile (x86_avx512_packed_q5k.cpp; the AMX wide tile is
// fill_amx_kquants'), and (packed_q5k.cpp) row r of blk into a group's
// super-block, the scalar oracle tile, row r of a packed super-block back to
// 256 floats.
void fill_avx512_packed_q5k(TypeTable& table);
void pack_q5_k(const BlockQ5_K& blk, int r, uint8_t* out);
void tile_scalar_q5_k(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y,
                      int64_t ldy, int nr);
void dequantize_packed_q5_k(const uint8_t* block, int r, float* dst);

// Whether Linux granted this process the AMX tile data state (asked once,
// process-wide; false where the kernel refuses or predates AMX).
bool amx_permitted();

// Q4_1 Q5_1 IQ4_NL packed tiles: the scalar oracles (packed_legacy2.cpp) and
// the VNNI tiles (x86_avx512_packed_legacy2.cpp).
void fill_scalar_packed_legacy2(TypeTable& table);
void fill_avx512_packed_legacy2(TypeTable& table);

// ---------------------------------------------------------------- shared fits
// (scalar_kquants.cpp; the weighted legacy quantizers use them too)

// The scale search of fit_affine: trial inverse scales (rmin + rdelta * k +
// nmax) / (max - min) for k = 0..nstep; errors squared or absolute (mad).
struct AffineSearch {
  float rmin, rdelta;
  int nstep;
  bool mad;
};

// x ~= scale * L + min, L in [0, nmax] (ggml's make_qkx2_quants scheme);
// levels gets L, *neg_min = -min; returns scale.
float fit_affine(const float* x, const float* w, int n, int nmax, const AffineSearch& search,
                 uint8_t* levels, float* neg_min);
// x ~= d * L, L in [-nneg, nneg - 1] (ggml's make_qx_quants, weights wt or
// x^2); levels (optional) gets L + nneg; returns d.
float fit_symmetric(const float* x, int n, int nneg, const float* wt, int* levels);

// Importance-weighted quantizers (kernels.h quantize_row_weighted) of each
// scalar file; nullptr for the types it does not weight.
QuantizeWeightedFn weighted_kquant(DType t);  // Q2_K..Q6_K
QuantizeWeightedFn weighted_legacy(DType t);  // Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL

// The table of an ISA (the scalar one where the CPU lacks it).
const TypeTable& isa_table(Isa isa);
// Bytes of one packed block group (kPackRows rows x one block); 0 when the
// type has no packed layout.
int64_t packed_block_bytes(DType t);
// Storage for a weight that decoding streams (PackedMatrix, ColumnMatrix):
// 64-byte aligned, 2 MiB aligned on transparent huge pages from 2 MiB up
// (packed.cpp says why); throws std::bad_alloc when out of memory.
StreamBytes allocate_packed(size_t size);
constexpr bool packed_is_k(DType t) {
  return t == DType::Q4_K || t == DType::Q6_K || t == DType::Q3_K || t == DType::Q2_K ||
         t == DType::Q5_K;
}
// Elements per block of a packed type (a K-quant super-block or 32).
inline int64_t packed_block_elems(DType t) {
  return packed_is_k(t) ? kQKK : kQK32;
}
// Offset that makes the stored weight quants of a 32-element type unsigned
// (Q4_1 / Q5_1: none, their levels are unsigned; IQ4_NL: its SIMD tiles'
// looked-up values).
inline int32_t packed_quant_offset(DType t) {
  return t == DType::Q8_0 || t == DType::IQ4_NL ? 128
         : t == DType::Q4_1 || t == DType::Q5_1 ? 0
         : t == DType::Q6_0                     ? 32
         : t == DType::Q5_0                     ? 16
                                                : 8;
}
// 32-element types whose rows carry a min (x = d * q + m).
constexpr bool packed_has_min(DType t) {
  return t == DType::Q4_1 || t == DType::Q5_1;
}
// PackedAct::corr[b] of a 32-element type from the sum of block b's
// activation quants.
inline int32_t packed_block_corr(DType t, int32_t sum) {
  return packed_has_min(t) ? sum : -packed_quant_offset(t) * sum;
}
// The types of packed_legacy2.cpp, and its hooks for packed.cpp: bytes of a
// group block (0 for other types), one row's block b into a group block,
// row r of a group block back to 32 floats (the scalar dequantizer's bits).
constexpr bool packed_is_legacy2(DType t) {
  return t == DType::Q4_1 || t == DType::Q5_1 || t == DType::IQ4_NL;
}
int64_t packed_legacy2_block_bytes(DType t);
void pack_legacy2(DType t, const uint8_t* row, int64_t b, int r, uint8_t* out);
void dequantize_legacy2(DType t, const uint8_t* block, int r, float* dst);

// ggml's nearest_int: round half to even through the float mantissa, exact for
// |x| < 2^22 (every caller scales into a small integer range first).
inline int nearest_int(float x) {
  const float shifted = x + 12582912.f;  // 1.5 * 2^23
  int32_t bits;
  __builtin_memcpy(&bits, &shifted, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

}  // namespace slm::kernels
