// AVX2 + FMA versions of the ops loops (simd_body.inc with 8-float vectors).
// Compiled with per-file ISA flags; reached only when kernels chose AVX2 or
// better.
#include <immintrin.h>

#include <cmath>

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

}  // namespace

void fill_ops_avx2(OpsTable& t) {
  fill_simd(t);
}

}  // namespace slm::ops
