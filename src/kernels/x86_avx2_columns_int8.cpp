// AVX2 axpy_cols (kernels.h ColsAlgo::kInt8) for Q4_0 and Q8_0 copies: the
// algorithm of x86_avx512_columns_int8.cpp without VNNI or byte permutes.
// The kept inputs in groups of col_group(t) (quads of 4 columns), their
// products with the block scales quantized to int8 per (group, output
// block), 8 blocks per vector; the integer sums exact, one fma per output and
// group into y, so bit for bit columns.cpp axpy_cols_int8 (the oracle).
// Q4_0: per quad and block, two 16-byte runs in each of two registers
// ([c0 | c2], [c1 | c3]) and one byte unpack pair them: word i of the low
// lane holds c0's and c1's quants of output i, of the high lane c2's and
// c3's, which VPMADDUBSW multiplies by (u0, u1) and (u2, u3) into int16 sums
// (|sum| <= 2 * 15 * 127 per quad, 4 quads and both lanes 30,480: no
// saturation); about 22 instructions per 128 weights. Two blocks per 32-byte
// load (the AVX-512 kernel's q4_pair: a sixth fewer instructions) measured
// no faster (bench_columns qwen Q4_0 in L2, one thread, AMD EPYC Zen 5: o
// 1.05-1.06x against 1.09-1.11x dense, down 1.27-1.28x against 1.17-1.21x).
// Q8_0 (signed quants, which
// VPMADDUBSW would saturate): sign-extended to int16, word pairs of two
// columns, VPMADDWD into int32. Compiled with per-file ISA flags; reached
// through fill_avx2_columns_int8 after dispatch.cpp has checked the CPU.
#include <immintrin.h>

#include <algorithm>
#include <array>

#include "kernels/internal.h"

namespace slm::kernels {
namespace {

// Within each 128-bit lane, a 4 x 4 byte transpose: [c0 j0..j3 | c1 .. | c2
// .. | c3 ..] (two saturating packs of four columns' int32 over 8 blocks
// give that, lane L holding blocks 4L..4L+3) to [j0 c0..c3 | j1 .. | ..].
constexpr std::array<uint8_t, 32> transpose4x4() {
  std::array<uint8_t, 32> t{};
  for (int l = 0; l < 2; ++l)
    for (int i = 0; i < 4; ++i)
      for (int c = 0; c < 4; ++c)
        t[static_cast<size_t>(16 * l + 4 * i + c)] = static_cast<uint8_t>(4 * c + i);
  return t;
}
// From a block's four u bytes (c0 c1 c2 c3) in every dword: (u0, u1) in
// every word of the low lane, (u2, u3) of the high one.
constexpr std::array<uint8_t, 32> pairs() {
  std::array<uint8_t, 32> t{};
  for (int i = 0; i < 32; ++i)
    t[static_cast<size_t>(i)] = static_cast<uint8_t>((i >= 16 ? 2 : 0) + (i & 1));
  return t;
}
constexpr std::array<uint8_t, 32> kT4x4 = transpose4x4();
constexpr std::array<uint8_t, 32> kPairs = pairs();

inline __m256i load32(const std::array<uint8_t, 32>& t) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.data()));
}
inline __m128i load16(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

// As in the AVX-512 kernel: one group ahead, into L2.
constexpr int64_t kAhead = 1;

// y[0..31] of one block += s * (int32 sums + corr), the sums' outputs in order.
inline void add_block(float* y, float s, __m256i v0, __m256i v1, __m256i v2, __m256i v3) {
  const __m256 sv = _mm256_set1_ps(s);
  _mm256_storeu_ps(y, _mm256_fmadd_ps(sv, _mm256_cvtepi32_ps(v0), _mm256_loadu_ps(y)));
  _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(sv, _mm256_cvtepi32_ps(v1), _mm256_loadu_ps(y + 8)));
  _mm256_storeu_ps(y + 16, _mm256_fmadd_ps(sv, _mm256_cvtepi32_ps(v2), _mm256_loadu_ps(y + 16)));
  _mm256_storeu_ps(y + 24, _mm256_fmadd_ps(sv, _mm256_cvtepi32_ps(v3), _mm256_loadu_ps(y + 24)));
}

// One Q4_0 block j: kQuads quads of kept rows (their quants at byte at).
template <int kQuads>
inline void q4_block(float* y, const uint8_t* const* row, size_t at, const uint32_t (*u4)[8],
                     int64_t j, int32_t corr, float s) {
  const __m256i nib = _mm256_set1_epi8(0x0F), pair = load32(kPairs);
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;  // int16 sums
  for (int qd = 0; qd < kQuads; ++qd) {
    const uint8_t* const* r = row + 4 * qd;
    // Byte i of a column: output i's quant in its low nibble, i + 16's in its high one.
    const __m256i x =
        _mm256_inserti128_si256(_mm256_castsi128_si256(load16(r[0] + at)), load16(r[2] + at), 1);
    const __m256i z =
        _mm256_inserti128_si256(_mm256_castsi128_si256(load16(r[1] + at)), load16(r[3] + at), 1);
    const __m256i p = _mm256_unpacklo_epi8(x, z);  // outputs 0..7 (and 16..23)
    const __m256i q = _mm256_unpackhi_epi8(x, z);  // 8..15 (and 24..31)
    const __m256i u = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int32_t>(u4[qd][j])), pair);
    a0 = _mm256_add_epi16(a0, _mm256_maddubs_epi16(_mm256_and_si256(p, nib), u));
    a1 = _mm256_add_epi16(a1, _mm256_maddubs_epi16(_mm256_and_si256(q, nib), u));
    a2 = _mm256_add_epi16(a2,
                          _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(p, 4), nib), u));
    a3 = _mm256_add_epi16(a3,
                          _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), nib), u));
  }
  // Each output's two lanes (columns 0-1 and 2-3 of every quad) to int32.
  const __m256i c = _mm256_set1_epi32(corr);
  auto total = [&](__m256i a) {
    return _mm256_add_epi32(c, _mm256_cvtepi16_epi32(_mm_add_epi16(
                                   _mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1))));
  };
  add_block(y, s, total(a0), total(a1), total(a2), total(a3));
}

// One Q8_0 block j: per quad two column pairs, each output's two quants as
// adjacent words times (u_a, u_b) by VPMADDWD (exact in int32).
template <int kQuads>
inline void q8_block(float* y, const uint8_t* const* row, size_t at, const uint32_t (*u4)[8],
                     int64_t j, float s) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (int qd = 0; qd < kQuads; ++qd) {
    const uint8_t* const* r = row + 4 * qd;
    const __m128i uw = _mm_cvtepi8_epi16(_mm_cvtsi32_si128(static_cast<int32_t>(u4[qd][j])));
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ca = r[2 * h] + at;
      const uint8_t* cb = r[2 * h + 1] + at;
      const __m256i u = _mm256_broadcastd_epi32(h == 0 ? uw : _mm_srli_si128(uw, 4));
      const __m256i lo_a = _mm256_cvtepi8_epi16(load16(ca)),
                    hi_a = _mm256_cvtepi8_epi16(load16(ca + 16));
      const __m256i lo_b = _mm256_cvtepi8_epi16(load16(cb)),
                    hi_b = _mm256_cvtepi8_epi16(load16(cb + 16));
      // Lanes: outputs [0-3 | 8-11], [4-7 | 12-15], [16-19 | 24-27], [20-23 | 28-31].
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi16(lo_a, lo_b), u));
      a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi16(lo_a, lo_b), u));
      a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_unpacklo_epi16(hi_a, hi_b), u));
      a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_unpackhi_epi16(hi_a, hi_b), u));
    }
  }
  add_block(y, s, _mm256_permute2x128_si256(a0, a1, 0x20), _mm256_permute2x128_si256(a0, a1, 0x31),
            _mm256_permute2x128_si256(a2, a3, 0x20), _mm256_permute2x128_si256(a2, a3, 0x31));
}

// One group of kQuads * 4 kept inputs (m of them real, the rest padding
// with u = 0) over nb output blocks from b0; next: the m_next rows of the
// group kAhead groups on, prefetched (the AVX-512 kernel's reasons), or null.
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
  const __m256 v127 = _mm256_set1_ps(127.0f), zero = _mm256_setzero_ps();
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  alignas(32) float s[8];
  alignas(32) int32_t corr[8];
  alignas(32) uint32_t u4[kQuads][8];  // per block: the quad's 4 int8 activations
  for (int64_t j0 = 0; j0 < nb; j0 += 8) {
    const int64_t mj = std::min<int64_t>(8, nb - j0);
    for (int64_t k = 0; k < m_next; ++k)
      _mm_prefetch(reinterpret_cast<const char*>(ahead[k] + 2 * (b0 + j0)), _MM_HINT_T1);
    // p(k) = a[k] * d(k, j) for 8 blocks j, and the max of |p| (MAXPS keeps
    // its second operand where the first is NaN, as the oracle's std::max).
    // A 16-byte load of 8 scales where fewer than 8 blocks are left reads the
    // row's next bytes (its quants follow its scales): lanes no block uses.
    __m256 p[kCols];
    __m256 amax = zero;
    for (int k = 0; k < kCols; ++k) {
      if (k >= m) {
        p[k] = zero;
        continue;
      }
      p[k] = _mm256_mul_ps(_mm256_set1_ps(a[k]), _mm256_cvtph_ps(load16(row[k] + 2 * (b0 + j0))));
      amax = _mm256_max_ps(_mm256_and_ps(p[k], abs_mask), amax);
    }
    _mm256_store_ps(s, _mm256_div_ps(amax, v127));
    const __m256 inv =
        _mm256_and_ps(_mm256_cmp_ps(amax, zero, _CMP_GT_OQ), _mm256_div_ps(v127, amax));
    // Per quad: u nearest even, packed with saturation to int8 (a non-finite
    // p * inv converts to 0x80000000 and packs to -128: set to 0, as the
    // oracle counts it), transposed in lane; and per block the sum of the
    // group's u (the offset's correction).
    const __m256i m128 = _mm256_set1_epi8(-128), ones8 = _mm256_set1_epi8(1),
                  ones16 = _mm256_set1_epi16(1);
    __m256i sum = _mm256_setzero_si256();
    for (int qd = 0; qd < kQuads; ++qd) {
      const __m256* pq = p + 4 * qd;
      const __m256i w01 = _mm256_packs_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(pq[0], inv)),
                                             _mm256_cvtps_epi32(_mm256_mul_ps(pq[1], inv)));
      const __m256i w23 = _mm256_packs_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(pq[2], inv)),
                                             _mm256_cvtps_epi32(_mm256_mul_ps(pq[3], inv)));
      __m256i b = _mm256_packs_epi16(w01, w23);
      b = _mm256_andnot_si256(_mm256_cmpeq_epi8(b, m128), b);
      const __m256i quad = _mm256_shuffle_epi8(b, load32(kT4x4));
      _mm256_store_si256(reinterpret_cast<__m256i*>(u4[qd]), quad);
      if constexpr (kType == DType::Q4_0)
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, quad), ones16));
    }
    // Q4_0's quants are stored plus 8: the sums start at -8 * sum(u).
    _mm256_store_si256(reinterpret_cast<__m256i*>(corr),
                       _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sum, 3)));
    for (int64_t j = 0; j < mj; ++j) {
      const int64_t jb = b0 + j0 + j;
      if (jb % kPerLine == 0)
        for (int64_t k = 0; k < m_next; ++k)
          _mm_prefetch(
              reinterpret_cast<const char*>(ahead[k] + qoff + static_cast<size_t>(jb) * kQB),
              _MM_HINT_T1);
      const size_t at = qoff + static_cast<size_t>(jb) * kQB;
      if constexpr (kType == DType::Q4_0) {
        q4_block<kQuads>(y + (j0 + j) * 32, row, at, u4, j, corr[j], s[j]);
      } else {
        q8_block<kQuads>(y + (j0 + j) * 32, row, at, u4, j, s[j]);
      }
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

// The cut-offs (ColumnMatrix::pays_below), measured on an AMD EPYC Zen 5
// (family 26 model 2) run with SLM_ISA=avx2, by bench_prune (2 threads, 32
// tokens, best of 4), the copies used at every share against never, at 25 /
// 40 / 50 / 60% pruned (75 / 59 / 48 / 36% kept): Qwen2.5-0.5B-shaped Q8_0
// 1.17 / 1.58 / 1.78 / 2.32x dense (the AVX2 float column kernels these
// replaced: 0.78 / 0.96 / 1.14 / 1.30x); Q4_0 0.91 / 1.13 / 1.34 / 1.61x
// (float: 0.47 / 0.56 / 0.64 / 0.79x); TinyLlama-shaped Q4_0 1.06 / 1.38 / 1.65 / 2.05x. So Q8_0
// pays at 75% kept and keeps the VNNI kernels' 0.8; Q4_0 pays at 75% on one shape and not the
// other: 0.7, with which Qwen's Q4_0 ran 1.14 / 1.27 / 1.49 / 1.75x and TinyLlama's 1.00 / 1.23
// / 1.57 / 1.92x (same runs: Q8_0 1.21 / 1.62 / 1.83 / 2.33x; Qwen Q4_K_M, whose Q8_0 copies of its
// Q6_K matrices and head alone run here, 1.00 / 1.11 / 1.19 / 1.25x). bench_columns (qwen Q4_0, 2
// threads, from memory): the stacked gate/up copy at half the inputs kept takes 0.80 of the dense
// time, 1.17 at three quarters.
void fill_avx2_columns_int8(TypeTable& t) {
  t.axpy_cols[static_cast<int>(DType::Q8_0)] = axpy_cols_int8<DType::Q8_0>;
  t.axpy_cols[static_cast<int>(DType::Q4_0)] = axpy_cols_int8<DType::Q4_0>;
  // No AVX2 code for these: the oracle's loops, whose copies are never built (cut-off 0).
  t.axpy_cols[static_cast<int>(DType::Q5_0)] = axpy_cols_int8_oracle(DType::Q5_0);
  t.axpy_cols[static_cast<int>(DType::Q6_0)] = axpy_cols_int8_oracle(DType::Q6_0);
  t.axpy_cols_algo = ColsAlgo::kInt8;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q8_0)] = 0.8;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q4_0)] = 0.7;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q5_0)] = 0;
  t.axpy_cols_pays_below[static_cast<int>(DType::Q6_0)] = 0;
}

}  // namespace slm::kernels
