// AArch64 Advanced SIMD versions of the float ops (any ARMv8-A, so no extra
// ISA flags): attention and SwiGLU from simd_body.inc with 4-float vectors,
// plus RMSNorm, add, softmax and RoPE, which the x86 tables leave scalar.
// Reached when the kernels' active ISA is NEON (base/cpu.h detection).
// Built with -ffp-contract=off: the FMAs here are the explicit vfmaq ones, so
// add and RoPE round exactly like the scalar reference.
#include <arm_neon.h>

#include <cmath>

#include "base/fp16.h"
#include "kernels/blocks.h"
#include "ops/simd.h"

namespace slm::ops {
namespace {

struct V : VecOps<float32x4_t> {
  // 32 architectural registers; head_dim up to 256 keeps q in 64 vectors,
  // the excess spilled to L1, which beats the scalar fallback by far.
  static constexpr int kMaxQVecs = 64;
  static constexpr int kRegs = 32;  // vector registers (attend_rows pairs rows if they fit)
  static Reg fmadd(Reg a, Reg b, Reg c) { return vfmaq_f32(c, a, b); }
  static float half(uint16_t h) {
    __fp16 f;
    __builtin_memcpy(&f, &h, sizeof f);
    return static_cast<float>(f);
  }
  static Reg load_f16(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
  static Reg load_i8(const int8_t* p) {
    int32_t four;  // exactly 4 bytes: a wider load could pass the end of the cache
    __builtin_memcpy(&four, p, sizeof four);
    const int16x8_t wide = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(four)));
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(wide)));
  }
  static float reduce_add(Reg v) { return vaddvq_f32(v); }
  static Reg exp(Reg x);
  static void reduce4(const Reg* v, float scale, float* out) {
    // Pairwise adds: [v0 pairs, v1 pairs], [v2 pairs, v3 pairs], then the four sums.
    const Reg abcd = vpaddq_f32(vpaddq_f32(v[0], v[1]), vpaddq_f32(v[2], v[3]));
    vst1q_f32(out, vmulq_f32(abcd, vdupq_n_f32(scale)));
  }
};

#include "ops/simd_body.inc"

// 2^n built in the exponent field, as in ops_avx2.cpp (x clamped so n + 127
// stays a normal exponent).
V::Reg V::exp(Reg x) {
  x = vmaxq_f32(vminq_f32(x, set1(88.3f)), set1(-87.0f));
  const Reg n = vrndnq_f32(mul(x, set1(1.44269504088896341f)));
  Reg r = vfmsq_f32(x, n, set1(0.693359375f));
  r = vfmsq_f32(r, n, set1(-2.12194440e-4f));
  const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return mul(exp_poly(r), vreinterpretq_f32_s32(bits));
}

// Sum of the squares of four floats, widened to double (the scalar version
// accumulates in double too).
inline float64x2_t add_squares(float64x2_t acc, float32x4_t x) {
  const float64x2_t lo = vcvt_f64_f32(vget_low_f32(x)), hi = vcvt_high_f64_f32(x);
  return vfmaq_f64(vfmaq_f64(acc, lo, lo), hi, hi);
}

void rms_norm_neon(const float* x, const float* w, int64_t n, float eps, float* out) {
  float64x2_t acc0 = vdupq_n_f64(0.0), acc1 = vdupq_n_f64(0.0);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    acc0 = add_squares(acc0, vld1q_f32(x + i));
    acc1 = add_squares(acc1, vld1q_f32(x + i + 4));
  }
  double ss = vaddvq_f64(vaddq_f64(acc0, acc1));
  for (; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  const float32x4_t vs = vdupq_n_f32(scale);
  i = 0;
  for (; i + 4 <= n; i += 4)
    vst1q_f32(out + i, vmulq_f32(vmulq_f32(vld1q_f32(x + i), vs), vld1q_f32(w + i)));
  for (; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void add_neon(float* x, const float* b, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vaddq_f32(vld1q_f32(x + i), vld1q_f32(b + i)));
  for (; i < n; ++i) x[i] += b[i];
}

// Max, exponentials (summed in double like the scalar version), scale.
void softmax_neon(float* x, int64_t n) {
  float mx = x[0];
  int64_t i = 0;
  if (n >= 4) {
    float32x4_t vmax = vld1q_f32(x);
    for (i = 4; i + 4 <= n; i += 4) vmax = vmaxq_f32(vmax, vld1q_f32(x + i));
    mx = vmaxvq_f32(vmax);
  }
  for (; i < n; ++i) mx = mx > x[i] ? mx : x[i];
  const float32x4_t vmx = vdupq_n_f32(mx);
  float64x2_t acc = vdupq_n_f64(0.0);
  i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t e = V::exp(vsubq_f32(vld1q_f32(x + i), vmx));
    vst1q_f32(x + i, e);
    acc = vaddq_f64(acc, vaddq_f64(vcvt_f64_f32(vget_low_f32(e)), vcvt_high_f64_f32(e)));
  }
  double sum = vaddvq_f64(acc);
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  const float32x4_t vinv = vdupq_n_f32(inv);
  i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_f32(vld1q_f32(x + i), vinv));
  for (; i < n; ++i) x[i] *= inv;
}

// The same products and differences as rope_apply, four pairs at a time:
// neox pairs come from the two halves, adjacent pairs from a de-interleaving
// load.
void rope_apply_neon(float* x, int64_t n_rot, const float* cs, bool neox) {
  const int64_t half = n_rot / 2;
  int64_t i = 0;
  for (; i + 4 <= half; i += 4) {
    const float32x4_t c = vld1q_f32(cs + i), s = vld1q_f32(cs + half + i);
    if (neox) {
      const float32x4_t x0 = vld1q_f32(x + i), x1 = vld1q_f32(x + half + i);
      vst1q_f32(x + i, vsubq_f32(vmulq_f32(x0, c), vmulq_f32(x1, s)));
      vst1q_f32(x + half + i, vaddq_f32(vmulq_f32(x0, s), vmulq_f32(x1, c)));
    } else {
      float32x4x2_t p = vld2q_f32(x + 2 * i);
      const float32x4_t x0 = p.val[0], x1 = p.val[1];
      p.val[0] = vsubq_f32(vmulq_f32(x0, c), vmulq_f32(x1, s));
      p.val[1] = vaddq_f32(vmulq_f32(x0, s), vmulq_f32(x1, c));
      vst2q_f32(x + 2 * i, p);
    }
  }
  rope_rotate_pairs(x, half, cs, neox, i);
}

}  // namespace

void fill_ops_neon(OpsTable& t) {
  fill_simd(t);
  t.rms_norm = rms_norm_neon;
  t.add = add_neon;
  t.softmax = softmax_neon;
  t.rope_apply = rope_apply_neon;
}

}  // namespace slm::ops
