// AVX-512 VNNI axpy_cols (kernels.h ColsAlgo::kInt8): the kept inputs in
// groups of col_group(t) (16 or 8: four or two quads of 4 columns), their products with the block
// scales quantized to int8 per (group, output block), 16 blocks per vector; then per block and quad
// one register holds, in 32-bit lane r, the four columns' unsigned quants of output r (a byte
// transpose, VPERMB / VPERMT2B), and VPDPBUSD adds the four products with the quad's int8
// activations into exact int32 sums. The sums start at -offset * sum(u) (the quants are stored with
// an offset that makes them unsigned: 8, 16, 128), so they are the signed dot products; one fma per
// output and group puts them into y. About 10 vector instructions per 128 weights against the float
// kernel's 24 (Q4_0 reads two blocks of a column at once: q4_pair). Bit for bit equal to
// columns.cpp axpy_cols_int8 (the oracle). Compiled with VNNI and VBMI flags; reached through
// fill_avx512_columns_int8 after dispatch.cpp has checked the CPU. GCC 12's _mm512_undefined_* are
// `__m512i __Y = __Y;`, a known false positive of -Wuninitialized once inlined; nothing here reads
// such data.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <array>

#include "kernels/internal.h"

namespace slm::kernels {
namespace {

// Byte-permute indices. Lane r of a transposed register is bytes 4r..4r+3,
// byte b from column b of the quad.
using Index = std::array<uint8_t, 64>;
// One source of four 16-byte rows (a 128-bit lane each): byte 4r + b <- 16b + r.
constexpr Index transpose16() {
  Index t{};
  for (int r = 0; r < 16; ++r)
    for (int b = 0; b < 4; ++b)
      t[static_cast<size_t>(4 * r + b)] = static_cast<uint8_t>(16 * b + r);
  return t;
}
// Two sources [c0 | c1] and [c2 | c3], each column's block at byte 32b of
// the pair: byte 4r + b <- 32b + off + r (per_byte), or + r / 8 (the qh byte
// that holds output r's bit).
constexpr Index transpose32(int off, bool per_byte) {
  Index t{};
  for (int r = 0; r < 16; ++r)
    for (int b = 0; b < 4; ++b)
      t[static_cast<size_t>(4 * r + b)] =
          static_cast<uint8_t>(32 * b + off + (per_byte ? r : r / 8));
  return t;
}
// Bit r % 8 of lane r's bytes: which qh bit is output r's.
constexpr Index bit_of_lane() {
  Index t{};
  for (int r = 0; r < 16; ++r)
    for (int b = 0; b < 4; ++b)
      t[static_cast<size_t>(4 * r + b)] = static_cast<uint8_t>(1 << (r & 7));
  return t;
}
// Within each 128-bit lane, a 4 x 4 byte transpose: [c0 j0..j3 | c1 .. | c2
// .. | c3 ..] (two saturating packs of four columns' int32 over 16 blocks
// give that, lane L holding blocks 4L..4L+3) to [j0 c0..c3 | j1 .. | ..]:
// byte 16L + 4i + c <- 16L + 4c + i.
constexpr Index transpose4x4() {
  Index t{};
  for (int l = 0; l < 4; ++l)
    for (int i = 0; i < 4; ++i)
      for (int c = 0; c < 4; ++c)
        t[static_cast<size_t>(16 * l + 4 * i + c)] = static_cast<uint8_t>(4 * c + i);
  return t;
}
// Q6_0: byte 4r + b <- 32b + 16 + r % 8, the byte that holds output r's
// (and r + 16's) two high bits.
constexpr Index q6_highs() {
  Index t{};
  for (int r = 0; r < 16; ++r)
    for (int b = 0; b < 4; ++b)
      t[static_cast<size_t>(4 * r + b)] = static_cast<uint8_t>(32 * b + 16 + (r & 7));
  return t;
}
constexpr Index kT16 = transpose16();
constexpr Index kT4x4 = transpose4x4();
constexpr Index kT32Lo = transpose32(0, true);     // Q8_0 outputs 0..15
constexpr Index kT32Hi = transpose32(16, true);    // Q8_0 outputs 16..31
constexpr Index kT32Nib = transpose32(4, true);    // Q5_0 nibbles
constexpr Index kT32QhLo = transpose32(0, false);  // Q5_0 qh bits of outputs 0..15
constexpr Index kT32QhHi = transpose32(2, false);  // Q5_0 qh bits of outputs 16..31
constexpr Index kBits = bit_of_lane();
constexpr Index kQ6Highs = q6_highs();

inline __m512i load_index(const Index& t) {
  return _mm512_loadu_si512(t.data());
}

// Four columns' blocks, [c0 | c1] and [c2 | c3], each as a 32-byte run from
// its first byte: a Q5_0 or Q6_0 block's 20 or 24 bytes and some of the
// next (the permutes never select those; the copy's last row has
// kColumnReadSlack bytes after it). Masked loads that read only the block
// took 4-8% longer over Qwen2.5-0.5B's stacked Q5_0 gate/up with the copies
// in cache (bench_columns qwen Q5_0 0.5 1 20 4, AMD EPYC Zen 5, three
// alternating runs: 100.5-100.6 us against 93.0-96.6; Q6_0 downs the same).
inline void load_quad(const uint8_t* q0, const uint8_t* q1, const uint8_t* q2, const uint8_t* q3,
                      __m512i& za, __m512i& zb) {
  za = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q0))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q1)), 1);
  zb = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q2))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q3)), 1);
}

// The unsigned operands of one quad for one block: lo (outputs 0..15) and hi
// (16..31), lane r holding the four columns' quants of output r (Q4_0: lane
// r holds the whole bytes, low nibble output r and high nibble output r + 16,
// and hi their high nibbles alone).
template <DType kType>
inline void quad_operands(const uint8_t* q0, const uint8_t* q1, const uint8_t* q2,
                          const uint8_t* q3, __m512i& lo, __m512i& hi) {
  const __m512i nib = _mm512_set1_epi8(0x0F);
  if constexpr (kType == DType::Q4_0) {
    __m512i z = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q0)));
    z = _mm512_inserti32x4(z, _mm_loadu_si128(reinterpret_cast<const __m128i*>(q1)), 1);
    z = _mm512_inserti32x4(z, _mm_loadu_si128(reinterpret_cast<const __m128i*>(q2)), 2);
    z = _mm512_inserti32x4(z, _mm_loadu_si128(reinterpret_cast<const __m128i*>(q3)), 3);
    // Whole bytes 16 h + l and their high nibbles 16 h (group() takes l and
    // h apart from the two sums): one instruction instead of three.
    lo = _mm512_permutexvar_epi8(load_index(kT16), z);
    hi = _mm512_andnot_si512(nib, lo);
  } else if constexpr (kType == DType::Q8_0) {
    const __m512i za = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q0))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q1)), 1);
    const __m512i zb = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q2))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q3)), 1);
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));  // q + 128
    lo = _mm512_xor_si512(_mm512_permutex2var_epi8(za, load_index(kT32Lo), zb), flip);
    hi = _mm512_xor_si512(_mm512_permutex2var_epi8(za, load_index(kT32Hi), zb), flip);
  } else if constexpr (kType == DType::Q6_0) {
    // 24 bytes a block (16 of nibbles, 8 of 2-bit highs). Output r's highs
    // sit at bits 2 (r / 8) of its byte, r + 16's at 4 + 2 (r / 8): shifted
    // per 32-bit lane (the lane's four bytes share r) to bits 4..5, where
    // the masks keep them (bits shifted in from a neighbouring byte land
    // outside 0x30).
    __m512i za, zb;
    load_quad(q0, q1, q2, q3, za, zb);
    const __m512i p = _mm512_permutex2var_epi8(za, load_index(kT32Lo), zb);
    const __m512i h = _mm512_permutex2var_epi8(za, load_index(kQ6Highs), zb);
    // Lanes 0..7 (outputs 0..7, 16..23) and 8..15 (8..15, 24..31).
    const __m512i shl = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4);
    const __m512i shr = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    // (p & 0x0F) | (x & 0x30): ternary-logic 0xEA is (A & B) | C, here with C masked first.
    lo = _mm512_ternarylogic_epi32(p, nib, _mm512_and_si512(_mm512_sllv_epi32(h, shl), m30), 0xEA);
    hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(p, 4), nib,
                                   _mm512_and_si512(_mm512_srlv_epi32(h, shr), m30), 0xEA);
  } else {
    // 20 bytes a block (4 of high bits, 16 of nibbles).
    __m512i za, zb;
    load_quad(q0, q1, q2, q3, za, zb);
    const __m512i p = _mm512_permutex2var_epi8(za, load_index(kT32Nib), zb);
    const __m512i bits = load_index(kBits), high = _mm512_set1_epi8(0x10);
    const __mmask64 h_lo =
        _mm512_test_epi8_mask(_mm512_permutex2var_epi8(za, load_index(kT32QhLo), zb), bits);
    const __mmask64 h_hi =
        _mm512_test_epi8_mask(_mm512_permutex2var_epi8(za, load_index(kT32QhHi), zb), bits);
    lo = _mm512_and_si512(p, nib);
    hi = _mm512_and_si512(_mm512_srli_epi16(p, 4), nib);
    lo = _mm512_mask_add_epi8(lo, h_lo, lo, high);
    hi = _mm512_mask_add_epi8(hi, h_hi, hi, high);
  }
}

// Q4_0, blocks j and j + 1 of the 16 in hand (kept rows row[], their
// quants at byte at): each quad's two blocks from one 32-byte load per
// column, [c0 | c1] and [c2 | c3], transposed by one VPERMT2B per block:
// per block and quad two loads, one insert and one permute, against four
// loads, three inserts and one permute (16-byte runs). With L3-resident
// copies (compute-bound) about 10% less time on TinyLlama's q/k/v, o and down.
// y: outputs of block j. Same integer sums, same float steps as one block
// at a time.
template <int kQuads>
inline void q4_pair(float* y, const uint8_t* const* row, size_t at, const uint32_t (*u4)[16],
                    const int32_t* corr0, const int32_t* corr1, const float* s, int64_t j) {
  const __m512i nib = _mm512_set1_epi8(0x0F);
  __m512i a0 = _mm512_set1_epi32(corr0[j]), a1 = _mm512_set1_epi32(corr1[j]);
  __m512i b0 = _mm512_set1_epi32(corr0[j + 1]), b1 = _mm512_set1_epi32(corr1[j + 1]);
  for (int qd = 0; qd < kQuads; ++qd) {
    const uint8_t* const* r = row + 4 * qd;
    const __m512i za = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r[0] + at))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r[1] + at)), 1);
    const __m512i zb = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r[2] + at))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r[3] + at)), 1);
    // Whole bytes 16 h + l of block j (kT32Lo) and j + 1 (kT32Hi), as quad_operands.
    const __m512i lo_a = _mm512_permutex2var_epi8(za, load_index(kT32Lo), zb);
    const __m512i lo_b = _mm512_permutex2var_epi8(za, load_index(kT32Hi), zb);
    const __m512i ua = _mm512_set1_epi32(static_cast<int32_t>(u4[qd][j]));
    const __m512i ub = _mm512_set1_epi32(static_cast<int32_t>(u4[qd][j + 1]));
    a0 = _mm512_dpbusd_epi32(a0, lo_a, ua);
    a1 = _mm512_dpbusd_epi32(a1, _mm512_andnot_si512(nib, lo_a), ua);
    b0 = _mm512_dpbusd_epi32(b0, lo_b, ub);
    b1 = _mm512_dpbusd_epi32(b1, _mm512_andnot_si512(nib, lo_b), ub);
  }
  const __m512 sa = _mm512_set1_ps(s[j]), sb = _mm512_set1_ps(s[j + 1]);
  a0 = _mm512_sub_epi32(a0, a1);
  a1 = _mm512_srai_epi32(a1, 4);
  b0 = _mm512_sub_epi32(b0, b1);
  b1 = _mm512_srai_epi32(b1, 4);
  _mm512_storeu_ps(y, _mm512_fmadd_ps(sa, _mm512_cvtepi32_ps(a0), _mm512_loadu_ps(y)));
  _mm512_storeu_ps(y + 16, _mm512_fmadd_ps(sa, _mm512_cvtepi32_ps(a1), _mm512_loadu_ps(y + 16)));
  _mm512_storeu_ps(y + 32, _mm512_fmadd_ps(sb, _mm512_cvtepi32_ps(b0), _mm512_loadu_ps(y + 32)));
  _mm512_storeu_ps(y + 48, _mm512_fmadd_ps(sb, _mm512_cvtepi32_ps(b1), _mm512_loadu_ps(y + 48)));
}

// How many groups ahead the rows are prefetched (2 measured no better, with
// groups of 8 and again of 16: 0.61-0.64 -> 0.70 of the dense time on
// TinyLlama's q/k/v), into L2: into L1, a 5632-output matrix's next 8 rows
// (25 KiB) beside y (22 KiB) and the current rows evicted each other (0.66-0.73 of the dense
// time at half the inputs kept, 0.55-0.59 into L2; sweeping y in chunks of
// 64 blocks as well gained nothing more).
constexpr int64_t kAhead = 1;

// One group of kQuads * 4 kept inputs (m of them real, the rest padding
// with u = 0) over nb output blocks from b0. next: the m_next rows of the
// group kAhead groups on (prefetched while this one computes: the runs at
// scattered rows are too short for the hardware prefetchers), or null.
template <DType kType, int kQuads>
void group(float* y, const ColumnRows& w, int64_t b0, int64_t nb, const int32_t* idx,
           const float* a, int64_t m, const int32_t* next, int64_t m_next) {
  constexpr int kCols = 4 * kQuads;
  constexpr size_t kQB = column_quant_bytes(kType);
  constexpr int64_t kPerLine = 64 / kQB;
  const size_t qoff = 2 * static_cast<size_t>(w.nb_row);
  const uint8_t* row[kCols];
  for (int k = 0; k < kCols; ++k)
    row[k] = w.data + static_cast<size_t>(idx[k < m ? k : 0]) * w.row_bytes;
  const uint8_t* ahead[kMaxColGroup];
  for (int64_t k = 0; k < m_next; ++k)
    ahead[k] = w.data + static_cast<size_t>(next[k]) * w.row_bytes;
  const __m512i neg_offset = _mm512_set1_epi32(-packed_quant_offset(kType));
  const __m512 v127 = _mm512_set1_ps(127.0f);
  alignas(64) float s[16];
  alignas(64) int32_t corr0[16], corr1[16];  // the sums' starting values
  alignas(64) uint32_t u4[kQuads][16];       // per block: the quad's 4 int8 activations
  for (int64_t j0 = 0; j0 < nb; j0 += 16) {
    const int64_t mj = std::min<int64_t>(16, nb - j0);
    const __mmask16 mask = static_cast<__mmask16>((1u << mj) - 1);
    for (int64_t k = 0; k < m_next; ++k)
      _mm_prefetch(reinterpret_cast<const char*>(ahead[k] + 2 * (b0 + j0)), _MM_HINT_T1);
    // p(k) = a[k] * d(k, j) for 16 blocks j; the max of |p| over the group
    // (VRANGEPS: the larger magnitude, sign cleared; a NaN p leaves amax as
    // it was, as the oracle's std::max does).
    __m512 p[kCols];
    __m512 amax = _mm512_setzero_ps();
    for (int k = 0; k < kCols; ++k) {
      if (k >= m) {
        p[k] = _mm512_setzero_ps();
        continue;
      }
      const __m256i d = _mm256_maskz_loadu_epi16(mask, row[k] + 2 * (b0 + j0));
      p[k] = _mm512_mul_ps(_mm512_set1_ps(a[k]), _mm512_cvtph_ps(d));
      amax = _mm512_range_ps(amax, p[k], 0x0B);
    }
    _mm512_store_ps(s, _mm512_div_ps(amax, v127));
    const __m512 inv =
        _mm512_maskz_div_ps(_mm512_cmp_ps_mask(amax, _mm512_setzero_ps(), _CMP_GT_OQ), v127, amax);
    // Per quad: the four columns' u, nearest even (MXCSR's default), packed
    // with saturation to int8 and transposed in lane; and per block the sum
    // of the group's u from them (VPDPBUSD of all-ones bytes with each lane's
    // four u). |u| <= 127 save where p * inv is not finite (NaN p, or inv
    // infinite for a max below ~3.7e-37), which converts to 0x80000000 and
    // packs to -128: set to 0, as the oracle counts it. This preparation, per
    // group and 16 blocks, was ~40% of the kernel's time over Qwen2.5-0.5B's
    // o and down with their copies in L2 (AMD EPYC Zen 4) while it took a
    // masked conversion and an addition per column, and per quad four
    // truncating packs, three inserts and a cross-lane permute.
    const __m512i m128 = _mm512_set1_epi8(-128);
    __m512i sum = _mm512_setzero_si512();
    for (int qd = 0; qd < kQuads; ++qd) {
      const __m512* pq = p + 4 * qd;
      const __m512i w01 = _mm512_packs_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(pq[0], inv)),
                                             _mm512_cvtps_epi32(_mm512_mul_ps(pq[1], inv)));
      const __m512i w23 = _mm512_packs_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(pq[2], inv)),
                                             _mm512_cvtps_epi32(_mm512_mul_ps(pq[3], inv)));
      __m512i b = _mm512_packs_epi16(w01, w23);
      b = _mm512_maskz_mov_epi8(_mm512_cmpneq_epi8_mask(b, m128), b);
      const __m512i quad = _mm512_shuffle_epi8(b, load_index(kT4x4));
      _mm512_store_si512(u4[qd], quad);
      sum = _mm512_dpbusd_epi32(sum, _mm512_set1_epi8(1), quad);
    }
    const __m512i corr = _mm512_mullo_epi32(sum, neg_offset);
    if constexpr (kType == DType::Q4_0) {
      // Sums of u * (16 h + l) and of u * 16 h: l's sum is their difference
      // and h's the second over 16 (exact: both are multiples of 16 there).
      _mm512_store_si512(corr0, _mm512_add_epi32(corr, _mm512_slli_epi32(corr, 4)));
      _mm512_store_si512(corr1, _mm512_slli_epi32(corr, 4));
    } else {
      _mm512_store_si512(corr0, corr);
      _mm512_store_si512(corr1, corr);
    }
    for (int64_t j = 0; j < mj; ++j) {  // (Q4_0: two at a time where two remain)
      const int64_t jb = b0 + j0 + j;
      if (jb % kPerLine == 0)
        for (int64_t k = 0; k < m_next; ++k)
          _mm_prefetch(
              reinterpret_cast<const char*>(ahead[k] + qoff + static_cast<size_t>(jb) * kQB),
              _MM_HINT_T1);
      const size_t at = qoff + static_cast<size_t>(jb) * kQB;
      if constexpr (kType == DType::Q4_0) {
        if (j + 1 < mj) {  // two blocks: one 32-byte run per column
          if ((jb + 1) % kPerLine == 0)
            for (int64_t k = 0; k < m_next; ++k)
              _mm_prefetch(reinterpret_cast<const char*>(ahead[k] + at + kQB), _MM_HINT_T1);
          q4_pair<kQuads>(y + (j0 + j) * 32, row, at, u4, corr0, corr1, s, j);
          ++j;
          continue;
        }
      }
      __m512i acc0 = _mm512_set1_epi32(corr0[j]), acc1 = _mm512_set1_epi32(corr1[j]);
      for (int qd = 0; qd < kQuads; ++qd) {
        __m512i lo, hi;
        quad_operands<kType>(row[4 * qd] + at, row[4 * qd + 1] + at, row[4 * qd + 2] + at,
                             row[4 * qd + 3] + at, lo, hi);
        const __m512i u = _mm512_set1_epi32(static_cast<int32_t>(u4[qd][j]));
        acc0 = _mm512_dpbusd_epi32(acc0, lo, u);
        acc1 = _mm512_dpbusd_epi32(acc1, hi, u);
      }
      if constexpr (kType == DType::Q4_0) {
        acc0 = _mm512_sub_epi32(acc0, acc1);
        acc1 = _mm512_srai_epi32(acc1, 4);
      }
      float* yj = y + (j0 + j) * 32;
      const __m512 sj = _mm512_set1_ps(s[j]);
      _mm512_storeu_ps(yj, _mm512_fmadd_ps(sj, _mm512_cvtepi32_ps(acc0), _mm512_loadu_ps(yj)));
      _mm512_storeu_ps(yj + 16,
                       _mm512_fmadd_ps(sj, _mm512_cvtepi32_ps(acc1), _mm512_loadu_ps(yj + 16)));
    }
  }
}

template <DType kType>
void axpy_cols_int8(float* y, const ColumnRows& w, int64_t b0, int64_t nb, const int32_t* idx,
                    const float* a, int64_t n) {
  int8_column_groups<kType, kAhead>(
      idx, n, [&](auto quads, int64_t g, int64_t m, const int32_t* next, int64_t m_next) {
        group<kType, decltype(quads)::value>(y, w, b0, nb, idx + g, a + g, m, next, m_next);
      });
}

}  // namespace

// The cut-offs (ColumnMatrix::pays_below), measured by bench_prune (Qwen2.5-0.5B-shaped Q4_0 / Q8_0
// / Q4_K_M files and a TinyLlama-1.1B-shaped Q4_0, one thread, a 2-core Xeon reporting family 6
// model 167, with VBMI and AMX, dense kernels on packed tiles and huge pages), with these kernels,
// sweeping the cut-off over 0.3 .. 0.9 at 25% and 40% pruned. Q8_0 and Q5_0 copies (Q4_K_M: Q5_0
// beside Q8_0 copies of its Q6_K matrices) paid up to ~80% kept: at 25% pruned the model went from
// 0.97x dense (cut-off 0.675) to 1.03-1.04x (0.8 and 0.9). Q4_0 copies did no better above ~70%
// (TinyLlama at 25% pruned: 0.97x at 0.65, 0.92-0.94x at 0.8-0.9); the kernel alone, at 50% kept,
// takes 0.52-0.57 of the dense time on 4864x896 and 0.60-0.65 on 896x4864 (short kept rows). At 25%
// pruned, Q4_0 models ran at 0.95-0.98x dense whatever the cut-off, 0.3 (no copies) included: that
// cost is the forward pass's thresholding, not the kernels'. On an AMD EPYC (Zen 4, family 25 model
// 17, no AMX) the short-run Q4_0 copies gain little at 50% kept (bench_columns qwen Q4_0, one
// thread): with the weights in L2 the kernel takes as long over half of 896x896 or 4864x896 as the
// dense kernel over all of it (9.1 / 8.8 us, 44 / 43 us: ~40% of it the activations' int8
// preparation per group and 16 output blocks before it was made cheaper (o 8.2, down 41 us), the
// rest the sums at the dense kernel's pace per weight, its byte transposes overlapping the
// VPDPBUSDs), and from memory random masks take 1.5-1.8x as long as a contiguous prefix of the same
// count (down 134 / 78-90 us; N kept, N skipped: 0.87x dense at N = 1, 0.67x at 4, 0.57x at 8).
// Still no slower than dense, so the cut-offs stay. On an AMD EPYC Zen 5 (family 26 model 2, no
// AMX, two threads) Q5_0 and Q6_0 copies did not pay at 75% kept: Qwen2.5-0.5B-shaped Q4_K_M (Q5_0
// q/k/v/o/gate/up, Q4_K and Q6_K downs, Q8_0 head) at 25% pruned ran at 0.89-0.98x dense with a 0.8
// cut-off (six runs), 1.00-1.02x at 0.7; its stacked Q5_0 gate/up took 5.3 ms a token at ~75% kept
// against 4.0 dense. Q8_0 copies still paid there (Qwen Q8_0 at 25%: 1.08x at 0.8, 0.97x at 0.7).
// So Q8_0 keeps 0.8 and the others take 0.7; at 40-60% pruned nothing measurable changed (three
// alternating runs of each, bench_prune, best of 8).
// Without VBMI the AVX-512 table keeps the AVX2 table's int8 kernels (Q4_0
// and Q8_0), and where it has VBMI these replace them.
// AVX-512 float column kernels ran without VBMI until AVX2's int8 ones beat
// them: on this Zen 5 with the kernels below left out, at 50% pruned
// (bench_prune, 2 threads, two alternating runs, tok/s), Qwen2.5-0.5B-shaped
// Q4_0 156 / 162 -> 184 / 177, TinyLlama Q4_0 70 / 84 -> 91 / 107, Qwen
// Q8_0 95 / 105 -> 146 / 132, Qwen Q4_K_M 115 / 124 -> 150 / 123 (its Q5_0
// copies no longer built: 200 MiB of copies instead of 358).
void fill_avx512_columns_int8(TypeTable& t) {
  t.axpy_cols[static_cast<int>(DType::Q8_0)] = axpy_cols_int8<DType::Q8_0>;
  t.axpy_cols[static_cast<int>(DType::Q4_0)] = axpy_cols_int8<DType::Q4_0>;
  t.axpy_cols[static_cast<int>(DType::Q5_0)] = axpy_cols_int8<DType::Q5_0>;
  t.axpy_cols[static_cast<int>(DType::Q6_0)] = axpy_cols_int8<DType::Q6_0>;
  t.axpy_cols_algo = ColsAlgo::kInt8;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q8_0)] = 0.8;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q6_0)] = 0.7;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q5_0)] = 0.7;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q4_0)] = 0.7;
}

}  // namespace slm::kernels
