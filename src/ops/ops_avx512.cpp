// AVX-512F versions of the ops loops (simd_body.inc with 16-float vectors).
// Compiled with per-file ISA flags; reached only when kernels chose AVX-512.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>

#include "base/fp16.h"
#include "kernels/blocks.h"
#include "ops/simd.h"

namespace slm::ops {
namespace {

struct V : VecOps<__v16sf> {  // __m512 without its may_alias attribute
  static constexpr int kMaxQVecs = 16;
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static float half(uint16_t h) { return _cvtsh_ss(h); }
  static Reg load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static Reg load_i8(const int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  static float reduce_add(Reg v) { return _mm512_reduce_add_ps(v); }
  static Reg exp(Reg x);
  static void reduce4(const Reg* v, float scale, float* out) {
    // Per 128-bit lane: [a, b, c, d] partial sums, then the four lanes added.
    const Reg ab = add(_mm512_unpacklo_ps(v[0], v[1]), _mm512_unpackhi_ps(v[0], v[1]));
    const Reg cd = add(_mm512_unpacklo_ps(v[2], v[3]), _mm512_unpackhi_ps(v[2], v[3]));
    const __m512d abd = _mm512_castps_pd(ab), cdd = _mm512_castps_pd(cd);
    const Reg abcd = add(_mm512_castpd_ps(_mm512_unpacklo_pd(abd, cdd)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(abd, cdd)));
    const __m256 half = _mm256_add_ps(_mm512_castps512_ps256(abcd), _mm512_extractf32x8_ps(abcd, 1));
    const __m128 quarter = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
    _mm_storeu_ps(out, _mm_mul_ps(quarter, _mm_set1_ps(scale)));
  }
};

#include "ops/simd_body.inc"

// 2^n by VSCALEFPS, which also flushes to 0 / saturates to inf at the ends.
V::Reg V::exp(Reg x) {
  x = _mm512_max_ps(_mm512_min_ps(x, set1(88.7f)), set1(-104.0f));
  const Reg n = _mm512_roundscale_ps(mul(x, set1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  Reg r = _mm512_fnmadd_ps(n, set1(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
  return _mm512_scalef_ps(exp_poly(r), n);
}

}  // namespace

void fill_ops_avx512(OpsTable& t) {
  fill_simd(t);
}

}  // namespace slm::ops
