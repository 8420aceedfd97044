// AVX2 + FMA versions of the ops loops (simd_body.inc with 8-float vectors).
// Compiled with per-file ISA flags; reached only when kernels chose AVX2 or
// better.
#include <immintrin.h>

#include <array>
#include <cmath>
#include <limits>

#include "base/fp16.h"
#include "kernels/blocks.h"
#include "ops/simd.h"

namespace slm::ops {
namespace {

struct V : VecOps<__v8sf> {  // __m256 without its may_alias attribute
  static constexpr int kMaxQVecs = 16;
  static constexpr int kRegs = 16;  // vector registers (attend_rows pairs rows if they fit)
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static float half(uint16_t h) { return _cvtsh_ss(h); }
  static Reg load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static Reg load_i8(const int8_t* p) {
    return _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static float reduce_add(Reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static Reg exp(Reg x);
  // reduce4's last stage as a vertical add (simd_body.inc AttendRows): its
  // 128-bit lanes' sums q[0] + q[1].
  static Reg across(const Reg* q) { return add(q[0], q[1]); }
  static void reduce4(const Reg* v, float scale, float* out) {
    // Per 128-bit lane: [a, b, c, d] partial sums, then the two lanes added.
    const Reg ab = add(_mm256_unpacklo_ps(v[0], v[1]), _mm256_unpackhi_ps(v[0], v[1]));
    const Reg cd = add(_mm256_unpacklo_ps(v[2], v[3]), _mm256_unpackhi_ps(v[2], v[3]));
    const __m256d abd = _mm256_castps_pd(ab), cdd = _mm256_castps_pd(cd);
    const Reg abcd = add(_mm256_castpd_ps(_mm256_unpacklo_pd(abd, cdd)),
                         _mm256_castpd_ps(_mm256_unpackhi_pd(abd, cdd)));
    const __m128 sum = _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
    _mm_storeu_ps(out, _mm_mul_ps(sum, _mm_set1_ps(scale)));
  }
};

#include "ops/simd_body.inc"

// 2^n built in the exponent field; x is clamped to [-87, 88] so n + 127
// stays a normal exponent (e^-87 ~ 1.6e-38: softmax weights that small are 0
// to float accuracy anyway).
V::Reg V::exp(Reg x) {
  x = _mm256_max_ps(_mm256_min_ps(x, set1(88.3f)), set1(-87.0f));
  const Reg n = _mm256_round_ps(mul(x, set1(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  Reg r = _mm256_fnmadd_ps(n, set1(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return mul(exp_poly(r), _mm256_castsi256_ps(bits));
}

// zero_below_scalar's result 8 at a time (ordered less-than: a NaN stays).
int64_t zero_below_256(float* x, int64_t n, float thr) {
  const __m256 t = _mm256_set1_ps(thr), sign = _mm256_set1_ps(-0.0f);
  int64_t z = 0, i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 small = _mm256_cmp_ps(_mm256_andnot_ps(sign, v), t, _CMP_LT_OQ);
    _mm256_storeu_ps(x + i, _mm256_andnot_ps(small, v));
    z += __builtin_popcount(static_cast<unsigned>(_mm256_movemask_ps(small)));
  }
  return z + zero_below_scalar(x + i, n - i, thr);
}

// Entry k, lane j (4 bits each): the position of k's j-th set bit.
constexpr std::array<uint32_t, 256> set_bit_positions() {
  std::array<uint32_t, 256> t{};
  for (uint32_t k = 0; k < 256; ++k)
    for (uint32_t b = 0, j = 0; b < 8; ++b)
      if ((k >> b) & 1) t[k] |= b << (4 * j++);
  return t;
}
constexpr std::array<uint32_t, 256> kSetBits = set_bit_positions();

// list_nonzero_scalar's list 8 at a time: the block's start plus the
// positions of its non-zero lanes (kSetBits), stored whole; the stray entries
// past the count lie within kept [n] and the next store overwrites them.
int64_t list_nonzero_256(const float* x, int64_t n, int32_t* kept) {
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i low = _mm256_set1_epi32(0xF);
  int64_t m = 0, i = 0;
  for (; i + 8 <= n; i += 8) {
    const auto nz = static_cast<unsigned>(_mm256_movemask_ps(
        _mm256_cmp_ps(_mm256_loadu_ps(x + i), _mm256_setzero_ps(), _CMP_NEQ_UQ)));
    const __m256i at = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int32_t>(kSetBits[nz])), shifts), low);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(kept + m),
                        _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(i)), at));
    m += __builtin_popcount(nz);
  }
  for (; i < n; ++i) {
    kept[m] = static_cast<int32_t>(i);
    m += x[i] != 0.0f;
  }
  return m;
}

// argmax_scalar's pick, 8 at a time (as argmax_512: VMAXPS(x, m) keeps m
// where x is NaN), the tails scalar.
int64_t argmax_256(const float* x, int64_t n) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const __m256 ninf = _mm256_set1_ps(kNegInf);
  __m256 m[4] = {ninf, ninf, ninf, ninf};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k) m[k] = _mm256_max_ps(_mm256_loadu_ps(x + i + 8 * k), m[k]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3])));
  float best = kNegInf;
  for (const float l : lanes) best = l > best ? l : best;
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  if (best == kNegInf) return -1;
  const __m256 b = _mm256_set1_ps(best);
  for (i = 0; i + 8 <= n; i += 8) {
    const int eq = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), b, _CMP_EQ_OQ));
    if (eq != 0) return i + __builtin_ctz(static_cast<unsigned>(eq));
  }
  while (!(x[i] == best)) ++i;
  return i;
}

}  // namespace

void fill_ops_avx2(OpsTable& t) {
  fill_simd(t);
  t.zero_below = zero_below_256;
  t.list_nonzero = list_nonzero_256;
  t.argmax = argmax_256;
}

}  // namespace slm::ops
