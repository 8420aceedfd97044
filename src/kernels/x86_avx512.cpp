// AVX-512 (F, BW, VL, DQ) + VNNI kernels. Every type gets the 256-bit kernel
// body of x86_kernels256.inc with VPDPBUSD as its int8 primitive; the hottest
// decode types (Q4_0, Q4_K) get 512-bit kernels below that handle two 32-blocks
// or a 64-element chunk per instruction.
// GCC 12's avx512fintrin.h builds its "undefined" vectors as `__m512i __Y =
// __Y;`, which -Wuninitialized flags once inlined here (a known false
// positive); nothing in this file reads uninitialized data.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#include "base/fp16.h"
#include "kernels/blocks.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

inline __m256i mul_sum_u8s8(__m256i u, __m256i s) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}

// Scaled sums stay on VPMADDUBSW + VPMADDWD: the scale rides along in the
// int16 -> int32 step, cheaper than VPDPBUSD followed by VPMULLD.
inline __m256i scaled_sum_u8s8(__m256i u, __m256i s, int scale_lo, int scale_hi) {
  const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(scale_hi)),
                                          _mm_set1_epi16(static_cast<int16_t>(scale_lo)));
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scales);
}

#include "kernels/x86_kernels256.inc"

// ------------------------------------------------------------------ 512-bit Q4_0

// Per-16-bit-lane shift counts 0 / 4 for alternating 128-bit groups.
inline __m512i nibble_shifts_alternating() {
  const int64_t four = 0x0004000400040004;
  return _mm512_set_epi64(four, four, 0, 0, four, four, 0, 0);
}

// Blocks i and i + 1: 32 unsigned levels each, [low nibbles i, high nibbles i,
// low i + 1, high i + 1] = element order of the two blocks.
inline __m512i q4_0_pair_levels(const BlockQ4_0* x, __m512i shifts) {
  const __m256i both = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[0].qs))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[1].qs)), 1);
  const __m512i wide = _mm512_castsi256_si512(both);
  const __m512i dup = _mm512_shuffle_i64x2(wide, wide, _MM_SHUFFLE(1, 1, 0, 0));
  return _mm512_and_si512(_mm512_srlv_epi16(dup, shifts), _mm512_set1_epi8(0x0F));
}

inline __m512i load_pair(const BlockQ8_0* y) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(load32(y[0].qs)), load32(y[1].qs), 1);
}

// Lanes 0..7 = a, lanes 8..15 = b.
inline __m512 two_scales(float a, float b) {
  return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

// sum (q - 8) y = sum q y - 8 sum y, both with VPDPBUSD (q unsigned).
inline __m512 q4_0_pair(const BlockQ4_0* x, const BlockQ8_0* y, __m512i shifts, __m512 acc) {
  const __m512i yv = load_pair(y);
  const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q4_0_pair_levels(x, shifts), yv);
  const __m512i off = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(8), yv);
  const __m512 scale = two_scales(h2f(x[0].d) * h2f(y[0].d), h2f(x[1].d) * h2f(y[1].d));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dot, off)), scale, acc);
}

void vec_dot_q4_0_512(int64_t n, float* s, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / kQK32;
  const __m512i shifts = nibble_shifts_alternating();
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 4 <= nb; i += 4) {
    acc0 = q4_0_pair(x + i, y + i, shifts, acc0);
    acc1 = q4_0_pair(x + i + 2, y + i + 2, shifts, acc1);
  }
  if (i + 2 <= nb) {
    acc0 = q4_0_pair(x + i, y + i, shifts, acc0);
    i += 2;
  }
  float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  if (i < nb) {  // odd block count: the 256-bit path for the last one
    float last;
    vec_dot_32<BlockQ4_0>(kQK32, &last, x + i, y + i);
    sum += last;
  }
  *s = sum;
}

// ------------------------------------------------------------------ 512-bit Q4_K

// One 64-element chunk c of a Q4_K block: 32 bytes of qs hold sub-block 2c in
// the low nibbles and 2c + 1 in the high ones, matching 64 contiguous bytes
// of the Q8_K block.
void vec_dot_q4_k_512(int64_t n, float* s, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  const int64_t four = 0x0004000400040004;
  const __m512i shifts = _mm512_set_epi64(four, four, four, four, 0, 0, 0, 0);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  __m512 acc = _mm512_setzero_ps();
  float tail = 0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; ++j) unpack_scale_min_k4(j, x[i].scales, &sc[j], &mn[j]);
    __m512i isum = _mm512_setzero_si512();
    for (int c = 0; c < 4; ++c) {
      const __m512i q = _mm512_broadcast_i64x4(load32(x[i].qs + 32 * c));
      const __m512i levels = _mm512_and_si512(_mm512_srlv_epi16(q, shifts), low4);
      const __m512i yv = _mm512_loadu_si512(y[i].qs + 64 * c);
      const __m512i scales =
          _mm512_inserti64x4(_mm512_set1_epi16(sc[2 * c]), _mm256_set1_epi16(sc[2 * c + 1]), 1);
      isum = _mm512_add_epi32(isum, _mm512_madd_epi16(_mm512_maddubs_epi16(levels, yv), scales));
    }
    int min_sum = 0;
    for (int j = 0; j < 8; ++j) min_sum += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(h2f(x[i].d) * y[i].d), acc);
    tail -= h2f(x[i].dmin) * y[i].d * static_cast<float>(min_sum);
  }
  *s = _mm512_reduce_add_ps(acc) + tail;
}

// ------------------------------------------------------------------ F16 / BF16 tiles

inline __m512 load16_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load16_bf16(const uint16_t* p) {
  const __m512i wide =
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

// kNr rows x kNt tokens: each weight vector is converted once and used kNt
// times; kNr * kNt accumulators (16 at 4 x 4) keep the FMA pipes busy.
template <__m512 (*kLoad)(const uint16_t*), bool kBf16, int kNr, int kNt>
void float_tile(int64_t n, const uint8_t* w, size_t w_row, const float* x, int64_t x_row, float* y,
                int64_t ldy) {
  __m512 acc[kNr][kNt];
#pragma GCC unroll 4
  for (int r = 0; r < kNr; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < kNt; ++t) acc[r][t] = _mm512_setzero_ps();
  const uint16_t* rows[kNr];
  for (int r = 0; r < kNr; ++r) rows[r] = reinterpret_cast<const uint16_t*>(w + r * w_row);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 wv[kNr];
#pragma GCC unroll 4
    for (int r = 0; r < kNr; ++r) wv[r] = kLoad(rows[r] + i);
#pragma GCC unroll 4
    for (int t = 0; t < kNt; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + t * x_row + i);
#pragma GCC unroll 4
      for (int r = 0; r < kNr; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < kNr; ++r)
    for (int t = 0; t < kNt; ++t) {
      float sum = _mm512_reduce_add_ps(acc[r][t]);
      for (int64_t j = i; j < n; ++j) sum += to_f32(rows[r][j], kBf16) * x[t * x_row + j];
      y[t * ldy + r] = sum;
    }
}

template <__m512 (*kLoad)(const uint16_t*), bool kBf16, int kNr>
void float_tile_nt(int64_t n, const uint8_t* w, size_t w_row, const float* x, int64_t x_row, int nt,
                   float* y, int64_t ldy) {
  switch (nt) {
    case 4:
      return float_tile<kLoad, kBf16, kNr, 4>(n, w, w_row, x, x_row, y, ldy);
    case 3:
      return float_tile<kLoad, kBf16, kNr, 3>(n, w, w_row, x, x_row, y, ldy);
    case 2:
      return float_tile<kLoad, kBf16, kNr, 2>(n, w, w_row, x, x_row, y, ldy);
    case 1:
      return float_tile<kLoad, kBf16, kNr, 1>(n, w, w_row, x, x_row, y, ldy);
    default:
      return;
  }
}

template <__m512 (*kLoad)(const uint16_t*), bool kBf16>
void float_tile_any(int64_t n, const uint8_t* w, size_t w_row, int nr, const float* x,
                    int64_t x_row, int nt, float* y, int64_t ldy) {
  switch (nr) {
    case 4:
      return float_tile_nt<kLoad, kBf16, 4>(n, w, w_row, x, x_row, nt, y, ldy);
    case 3:
      return float_tile_nt<kLoad, kBf16, 3>(n, w, w_row, x, x_row, nt, y, ldy);
    case 2:
      return float_tile_nt<kLoad, kBf16, 2>(n, w, w_row, x, x_row, nt, y, ldy);
    case 1:
      return float_tile_nt<kLoad, kBf16, 1>(n, w, w_row, x, x_row, nt, y, ldy);
    default:
      return;
  }
}

// kernels.h axpy_rows: 64 outputs in four registers per pass over the rows,
// then 16 at a time, the last under a mask (no scalar tail).
void axpy_rows_512(float* out, const float* a, int64_t nr, const float* w, int64_t ld, int64_t nc) {
  int64_t c = 0;
  // 128 columns a step: 8 independent FMA chains keep both FMA ports busy
  // (4 chains leave them waiting on the 4-cycle latency). Each element still
  // takes its rows in order, so results do not depend on the step width.
  for (; c + 128 <= nc; c += 128) {
    __m512 y[8];
    for (int j = 0; j < 8; ++j) y[j] = _mm512_loadu_ps(out + c + 16 * j);
    for (int64_t i = 0; i < nr; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      const float* wi = w + i * ld + c;
      for (int j = 0; j < 8; ++j) y[j] = _mm512_fmadd_ps(ai, _mm512_loadu_ps(wi + 16 * j), y[j]);
    }
    for (int j = 0; j < 8; ++j) _mm512_storeu_ps(out + c + 16 * j, y[j]);
  }
  for (; c + 64 <= nc; c += 64) {
    __m512 y0 = _mm512_loadu_ps(out + c), y1 = _mm512_loadu_ps(out + c + 16);
    __m512 y2 = _mm512_loadu_ps(out + c + 32), y3 = _mm512_loadu_ps(out + c + 48);
    for (int64_t i = 0; i < nr; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      const float* wi = w + i * ld + c;
      y0 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(wi), y0);
      y1 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(wi + 16), y1);
      y2 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(wi + 32), y2);
      y3 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(wi + 48), y3);
    }
    _mm512_storeu_ps(out + c, y0);
    _mm512_storeu_ps(out + c + 16, y1);
    _mm512_storeu_ps(out + c + 32, y2);
    _mm512_storeu_ps(out + c + 48, y3);
  }
  for (; c < nc; c += 16) {
    const __mmask16 m = nc - c >= 16 ? static_cast<__mmask16>(0xffff)
                                     : static_cast<__mmask16>((1u << (nc - c)) - 1);
    __m512 y = _mm512_maskz_loadu_ps(m, out + c);
    for (int64_t i = 0; i < nr; ++i)
      y = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), _mm512_maskz_loadu_ps(m, w + i * ld + c), y);
    _mm512_mask_storeu_ps(out + c, m, y);
  }
}

// kernels.h axpy_rows_n: NT output rows by 64 columns in 4 * NT registers;
// each row of w is loaded once for all NT (axpy_rows loads it once per
// output row, so a rank update of many rows waits on loads, not FMAs).
// Every element takes axpy_rows_512's steps: one FMA per row, in order.
template <int NT>
void axpy_tile_512(float* out, int64_t ldo, const float* a, int64_t lda, int64_t nr, const float* w,
                   int64_t ld, int64_t nc) {
  int64_t c = 0;
  for (; c + 64 <= nc; c += 64) {
    __m512 y[NT][4];
    for (int t = 0; t < NT; ++t)
      for (int j = 0; j < 4; ++j) y[t][j] = _mm512_loadu_ps(out + t * ldo + c + 16 * j);
    for (int64_t i = 0; i < nr; ++i) {
      const float* wi = w + i * ld + c;
      const __m512 w0 = _mm512_loadu_ps(wi), w1 = _mm512_loadu_ps(wi + 16);
      const __m512 w2 = _mm512_loadu_ps(wi + 32), w3 = _mm512_loadu_ps(wi + 48);
      for (int t = 0; t < NT; ++t) {
        const __m512 at = _mm512_set1_ps(a[t * lda + i]);
        y[t][0] = _mm512_fmadd_ps(at, w0, y[t][0]);
        y[t][1] = _mm512_fmadd_ps(at, w1, y[t][1]);
        y[t][2] = _mm512_fmadd_ps(at, w2, y[t][2]);
        y[t][3] = _mm512_fmadd_ps(at, w3, y[t][3]);
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int j = 0; j < 4; ++j) _mm512_storeu_ps(out + t * ldo + c + 16 * j, y[t][j]);
  }
  for (; c < nc; c += 16) {
    const __mmask16 m = nc - c >= 16 ? static_cast<__mmask16>(0xffff)
                                     : static_cast<__mmask16>((1u << (nc - c)) - 1);
    __m512 y[NT];
    for (int t = 0; t < NT; ++t) y[t] = _mm512_maskz_loadu_ps(m, out + t * ldo + c);
    for (int64_t i = 0; i < nr; ++i) {
      const __m512 wi = _mm512_maskz_loadu_ps(m, w + i * ld + c);
      for (int t = 0; t < NT; ++t) y[t] = _mm512_fmadd_ps(_mm512_set1_ps(a[t * lda + i]), wi, y[t]);
    }
    for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(out + t * ldo + c, m, y[t]);
  }
}

// Six rows a tile (24 accumulators, 4 row vectors and a broadcast: 29 of the
// 32 registers), the remainder in one narrower tile.
void axpy_rows_n_512(float* out, int64_t ldo, const float* a, int64_t lda, int64_t nt, int64_t nr,
                     const float* w, int64_t ld, int64_t nc) {
  constexpr int64_t kTile = 6;
  int64_t t = 0;
  for (; t + kTile <= nt; t += kTile)
    axpy_tile_512<kTile>(out + t * ldo, ldo, a + t * lda, lda, nr, w, ld, nc);
  float* o = out + t * ldo;
  const float* at = a + t * lda;
  switch (nt - t) {
    case 5:
      return axpy_tile_512<5>(o, ldo, at, lda, nr, w, ld, nc);
    case 4:
      return axpy_tile_512<4>(o, ldo, at, lda, nr, w, ld, nc);
    case 3:
      return axpy_tile_512<3>(o, ldo, at, lda, nr, w, ld, nc);
    case 2:
      return axpy_tile_512<2>(o, ldo, at, lda, nr, w, ld, nc);
    case 1:
      return axpy_tile_512<1>(o, ldo, at, lda, nr, w, ld, nc);
    default:
      return;
  }
}

// ------------------------------------------------------------------ 512-bit LoRA
// The LoRA kernels of x86_kernels256.inc on zmm: 16 columns (one column block
// of B^T) or 2 x 16 inputs per step, masked loads for the tails, the same
// row independence (kernels.h). Expand's elements take exactly the 256-bit
// kernel's steps (one FMA per k from y), so the two agree bit for bit.
//
// Decoding gives each adapter only a row or two, so a single output's sum is
// a chain of dependent FMAs (4 cycles each) that would leave the core idle
// between the factor bytes it streams from memory. Both kernels therefore
// work on several outputs at once (shrink: kK ranks of A; expand: kBlocks
// column blocks of B^T), each output still taking its own steps in its own
// order, so results are the bits of one output at a time.

inline __m512 load16_f16_masked(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

// Where the factors come from: F16 values, or int8 values times a float
// scale per group (kernels.h LoraQ8Kernels: 32 inputs of A, 16 outputs of B),
// widened and scaled to float exactly as the scalar table rounds them. The
// tiles below are written once over either.
inline __m512 load16_q8(const int8_t* p, float d) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                           _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))),
                       _mm512_set1_ps(d));
}
inline __m512 load16_q8_masked(const int8_t* p, float d, __mmask16 m) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p))),
                       _mm512_set1_ps(d));
}

// Rows of A ([r][n_in], row q at stride n): 16 inputs of row q from column c.
struct F16RowsA {
  const uint16_t* a;
  int64_t n;
  F16RowsA from_row(int64_t k) const { return {a + k * n, n}; }
  __m512 load(int q, int64_t c) const { return load16_f16(a + q * n + c); }
  __m512 load_masked(int q, int64_t c, __mmask16 m) const {
    return load16_f16_masked(a + q * n + c, m);
  }
};
struct Q8RowsA {
  const int8_t* a;
  const float* ad;  // [r][groups]
  int64_t groups, n;
  Q8RowsA from_row(int64_t k) const { return {a + k * n, ad + k * groups, groups, n}; }
  __m512 load(int q, int64_t c) const {
    return load16_q8(a + q * n + c, ad[q * groups + c / kLoraGroupA]);
  }
  __m512 load_masked(int q, int64_t c, __mmask16 m) const {
    return load16_q8_masked(a + q * n + c, ad[q * groups + c / kLoraGroupA], m);
  }
};

// Column blocks of B^T ([n_out / 16][r][16]): the 16 outputs of block b at rank k.
struct F16BlocksB {
  const uint16_t* bt;
  int64_t r;
  F16BlocksB from_block(int64_t j) const { return {bt + j * r * kLoraCols, r}; }
  __m512 load(int b, int64_t k) const { return load16_f16(bt + (b * r + k) * kLoraCols); }
};
struct Q8BlocksB {
  const int8_t* bt;
  const float* bd;  // [n_out / 16][r]
  int64_t r;
  Q8BlocksB from_block(int64_t j) const { return {bt + j * r * kLoraCols, bd + j * r, r}; }
  __m512 load(int b, int64_t k) const {
    return load16_q8(bt + (b * r + k) * kLoraCols, bd[b * r + k]);
  }
};

// t[i * r + q] = scale[q] * dot(a[q], x[i]) for q < kK, i < kRows:
// a [kK][n], x [kRows][n].
template <int kRows, int kK, class RowsA>
void lora_shrink_tile_512(const RowsA& a, int64_t n, const float* x, const float* scale, float* t,
                          int64_t r) {
  static_assert(kLoraGroupA == 32, "a q8 group is one 32-input step");
  __m512 acc0[kK][kRows], acc1[kK][kRows];
  for (int q = 0; q < kK; ++q)
    for (int i = 0; i < kRows; ++i) acc0[q][i] = acc1[q][i] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 32 <= n; c += 32)
    for (int q = 0; q < kK; ++q) {
      const __m512 a0 = a.load(q, c), a1 = a.load(q, c + 16);
      for (int i = 0; i < kRows; ++i) {
        acc0[q][i] = _mm512_fmadd_ps(a0, _mm512_loadu_ps(x + i * n + c), acc0[q][i]);
        acc1[q][i] = _mm512_fmadd_ps(a1, _mm512_loadu_ps(x + i * n + c + 16), acc1[q][i]);
      }
    }
  for (; c < n; c += 16) {  // at most two masked steps, into acc0
    const __mmask16 m = static_cast<__mmask16>(n - c >= 16 ? 0xFFFF : (1u << (n - c)) - 1);
    for (int q = 0; q < kK; ++q) {
      const __m512 av = a.load_masked(q, c, m);
      for (int i = 0; i < kRows; ++i)
        acc0[q][i] = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i * n + c), acc0[q][i]);
    }
  }
  for (int q = 0; q < kK; ++q)
    for (int i = 0; i < kRows; ++i)
      t[i * r + q] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[q][i], acc1[q][i])) * scale[q];
}

template <class RowsA>
void lora_shrink_any_512(const RowsA& a, int64_t n_in, int64_t r, const float* scale, int64_t k0,
                         int64_t k1, const float* x, int64_t m, float* t) {
  for (int64_t i0 = 0; i0 < m; i0 += 4)
    with_count<4>(static_cast<int>(std::min<int64_t>(4, m - i0)), [&](auto rows) {
      constexpr int kRows = decltype(rows)::value;
      constexpr int kK = kRows <= 2 ? 4 : 2;  // 8 to 16 accumulators
      const float* xi = x + i0 * n_in;
      float* ti = t + i0 * r;
      int64_t k = k0;
      for (; k + kK <= k1; k += kK)
        lora_shrink_tile_512<kRows, kK>(a.from_row(k), n_in, xi, scale + k, ti + k, r);
      for (; k < k1; ++k)
        lora_shrink_tile_512<kRows, 1>(a.from_row(k), n_in, xi, scale + k, ti + k, r);
    });
}

// y[i * n_out + b * 16 + 0..16) += sum_k t[i * r + k] * B^T block b, for
// kBlocks consecutive column blocks (the last one's columns masked by last).
template <int kRows, int kBlocks, class BlocksB>
void lora_expand_tile_512(const BlocksB& blocks, int64_t n_out, int64_t r, const float* t, float* y,
                          __mmask16 last) {
  __mmask16 mask[kBlocks];
  for (int b = 0; b < kBlocks; ++b) mask[b] = b + 1 == kBlocks ? last : __mmask16(0xFFFF);
  __m512 acc[kRows][kBlocks];
  for (int i = 0; i < kRows; ++i)
    for (int b = 0; b < kBlocks; ++b)
      acc[i][b] = _mm512_maskz_loadu_ps(mask[b], y + i * n_out + b * kLoraCols);
  for (int64_t k = 0; k < r; ++k) {
    __m512 bk[kBlocks];  // whole blocks (zero-padded)
    for (int b = 0; b < kBlocks; ++b) bk[b] = blocks.load(b, k);
    for (int i = 0; i < kRows; ++i) {
      const __m512 tk = _mm512_set1_ps(t[i * r + k]);
      for (int b = 0; b < kBlocks; ++b) acc[i][b] = _mm512_fmadd_ps(tk, bk[b], acc[i][b]);
    }
  }
  for (int i = 0; i < kRows; ++i)
    for (int b = 0; b < kBlocks; ++b)
      _mm512_mask_storeu_ps(y + i * n_out + b * kLoraCols, mask[b], acc[i][b]);
}

template <class BlocksB>
void lora_expand_any_512(const BlocksB& bt, int64_t n_out, int64_t r, const float* t, int64_t m,
                         int64_t j0, int64_t j1, float* y) {
  static_assert(kLoraCols == 16, "one zmm per column block");
  constexpr int kMaxBlocks = 4;  // 4 x 4 accumulators at most
  for (int64_t jb = j0; jb < j1; jb += kMaxBlocks * kLoraCols) {
    const int64_t cols = std::min(kMaxBlocks * kLoraCols, j1 - jb);
    const int blocks = static_cast<int>((cols + kLoraCols - 1) / kLoraCols);
    const int64_t tail = cols - (blocks - 1) * kLoraCols;  // columns of the last block
    const __mmask16 last = static_cast<__mmask16>(tail == 16 ? 0xFFFF : (1u << tail) - 1);
    const BlocksB from = bt.from_block(jb / kLoraCols);
    for (int64_t i0 = 0; i0 < m; i0 += 4)
      with_count<4>(static_cast<int>(std::min<int64_t>(4, m - i0)), [&](auto rows) {
        with_count<kMaxBlocks>(blocks, [&](auto nb) {
          lora_expand_tile_512<decltype(rows)::value, decltype(nb)::value>(
              from, n_out, r, t + i0 * r, y + i0 * n_out + jb, last);
        });
      });
  }
}

void lora_shrink_512(const uint16_t* a, int64_t n_in, int64_t r, const float* scale, int64_t k0,
                     int64_t k1, const float* x, int64_t m, float* t) {
  lora_shrink_any_512(F16RowsA{a, n_in}, n_in, r, scale, k0, k1, x, m, t);
}
void lora_expand_512(const uint16_t* bt, int64_t n_out, int64_t r, const float* t, int64_t m,
                     int64_t j0, int64_t j1, float* y) {
  lora_expand_any_512(F16BlocksB{bt, r}, n_out, r, t, m, j0, j1, y);
}
void lora_shrink_q8_512(const int8_t* a, const float* ad, int64_t n_in, int64_t r,
                        const float* scale, int64_t k0, int64_t k1, const float* x, int64_t m,
                        float* t) {
  lora_shrink_any_512(Q8RowsA{a, ad, lora_groups_a(n_in), n_in}, n_in, r, scale, k0, k1, x, m, t);
}
void lora_expand_q8_512(const int8_t* bt, const float* bd, int64_t n_out, int64_t r, const float* t,
                        int64_t m, int64_t j0, int64_t j1, float* y) {
  lora_expand_any_512(Q8BlocksB{bt, bd, r}, n_out, r, t, m, j0, j1, y);
}

// ------------------------------------------------------------------ Q8_0 activations

// The activation quantizer of every 32-block type on zmm: bit-exact with the
// scalar quantize_q8_0 (same amax, d = amax / 127, id = 1 / d, x * id rounded
// half away from zero; VCVTPS2PH rounds d to nearest even, as f32_to_fp16
// does), one block per two vectors instead of four.
// Block i's 32 floats as Q8_0 quants with the inverse scale id (the scalar
// quantizer's rounding: half away from zero).
inline void quantize_block_q8_0(const float* src, float id, int8_t* qs) {
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  const __m512 vid = _mm512_set1_ps(id);
  for (int h = 0; h < 2; ++h) {
    const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(src + 16 * h), vid);
    // trunc, then one step toward x's sign where the exact fraction is >= 1/2
    const __m512 t = _mm512_roundscale_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(x, t)), half, _CMP_GE_OQ);
    const __m512 step = _mm512_or_ps(one, _mm512_and_ps(x, _mm512_set1_ps(-0.0f)));
    const __m512i q = _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, step));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16 * h), _mm512_cvtsepi32_epi8(q));
  }
}

// 16 blocks' largest magnitudes: m[k] holds block k's 32 values folded to
// 16 lanes; returns lane k = max over m[k]'s lanes. Four rounds of halving
// (128-bit quarters, then pairs within quarters) leave block k + 4 j in lane
// 4 k + j; one permutation puts it back in lane k + 4 j.
inline __m512 block_maxima(__m512 m[16]) {
  __m512 r1[8], r2[4], r3[2];
  for (int p = 0; p < 8; ++p)  // lanes 0-7: block 2p's partial maxima, 8-15: 2p + 1's
    r1[p] = _mm512_max_ps(_mm512_shuffle_f32x4(m[2 * p], m[2 * p + 1], 0x44),
                          _mm512_shuffle_f32x4(m[2 * p], m[2 * p + 1], 0xEE));
  for (int q = 0; q < 4; ++q)  // quarter j: block 4q + j's 4 partial maxima
    r2[q] = _mm512_max_ps(_mm512_shuffle_f32x4(r1[2 * q], r1[2 * q + 1], 0x88),
                          _mm512_shuffle_f32x4(r1[2 * q], r1[2 * q + 1], 0xDD));
  for (int s = 0; s < 2; ++s)  // quarter k: blocks 8s + k, 8s + 4 + k, 2 lanes each
    r3[s] = _mm512_max_ps(_mm512_shuffle_ps(r2[2 * s], r2[2 * s + 1], 0x44),
                          _mm512_shuffle_ps(r2[2 * s], r2[2 * s + 1], 0xEE));
  const __m512 r =
      _mm512_max_ps(_mm512_shuffle_ps(r3[0], r3[1], 0x88), _mm512_shuffle_ps(r3[0], r3[1], 0xDD));
  // lane 4k + j holds block k + 4j
  const __m512i back = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(back, r);
}

// Activations to Q8_0, the scalar quantizer's bytes: d = amax / 127 and id =
// 1 / d per block, 16 blocks' scales at once (one vector division each
// instead of two scalar ones per block, and no per-block horizontal max:
// those chains made it ~34 cycles a block, 15% of a 512-token Qwen
// down-projection on AMX).
void quantize_q8_0_512(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ8_0*>(dst);
  const int64_t nb = n / kQK32;
  int64_t i = 0;
  for (; i + 16 <= nb; i += 16) {
    const float* s = src + i * kQK32;
    __m512 m[16];
#pragma GCC unroll 16
    for (int k = 0; k < 16; ++k)
      m[k] = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(s + kQK32 * k)),
                           _mm512_abs_ps(_mm512_loadu_ps(s + kQK32 * k + 16)));
    const __m512 d = _mm512_div_ps(block_maxima(m), _mm512_set1_ps(127.0f));
    const __m512 id = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_UQ),
                                          _mm512_set1_ps(1.0f), d);
    alignas(64) float ids[16];
    alignas(32) uint16_t dh[16];
    _mm512_store_ps(ids, id);
    _mm256_store_si256(reinterpret_cast<__m256i*>(dh),
                       _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (int k = 0; k < 16; ++k) {
      y[i + k].d = dh[k];
      quantize_block_q8_0(s + kQK32 * k, ids[k], y[i + k].qs);
    }
  }
  for (; i < nb; ++i) {
    const float* s = src + i * kQK32;
    const __m512 v0 = _mm512_loadu_ps(s), v1 = _mm512_loadu_ps(s + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = static_cast<uint16_t>(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    quantize_block_q8_0(s, id, y[i].qs);
  }
}

}  // namespace

void fill_avx512(TypeTable& table) {
  table.axpy_rows = axpy_rows_512;
  table.axpy_rows_n = axpy_rows_n_512;
  static_assert(kFloatTileRows == 4 && kFloatTileTokens == 4, "float tiles are written for 4 x 4");
  table.float_tile[static_cast<int>(DType::F16)] = float_tile_any<load16_f16, false>;
  table.float_tile[static_cast<int>(DType::BF16)] = float_tile_any<load16_bf16, true>;
  fill_256(table);
  table[DType::Q4_0].vec_dot = vec_dot_q4_0_512;
  table[DType::Q4_K].vec_dot = vec_dot_q4_k_512;
  table[DType::Q8_0].quantize_row = quantize_q8_0_512;
  table.lora = {lora_shrink_512, lora_expand_512};
  table.lora_q8 = {lora_shrink_q8_512, lora_expand_q8_512};
}

}  // namespace slm::kernels
