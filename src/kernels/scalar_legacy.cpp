// Scalar reference kernels of the 32-element block types (Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, IQ4_NL). They are the test oracle for every ISA: plain loops,
// formulas as in ggml (integer sums per block, one float multiply-add per
// block), no cleverness.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "kernels/blocks.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

constexpr int kHalf = kQK32 / 2;

float half(uint16_t h) {
  return fp16_to_f32(h);
}

// Index of the signed max-magnitude element (its sign sets the scale's sign so
// the extreme value lands exactly on the most negative level).
float signed_absmax(const float* x, int n) {
  float amax = 0, max = 0;
  for (int j = 0; j < n; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---------------------------------------------------------------- Q4_0

void quantize_q4_0(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ4_0*>(dst);
  for (int64_t i = 0; i < n / kQK32; ++i, src += kQK32) {
    const float d = signed_absmax(src, kQK32) / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    for (int j = 0; j < kHalf; ++j) {
      // +8.5 then truncation rounds half up into [0, 16]; 16 only for the
      // element opposite the extreme one, clamped to 15.
      const int q0 = std::min(15, static_cast<int>(src[j] * id + 8.5f));
      const int q1 = std::min(15, static_cast<int>(src[j + kHalf] * id + 8.5f));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void dequantize_q4_0(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / kQK32; ++i, dst += kQK32) {
    const float d = half(x[i].d);
    for (int j = 0; j < kHalf; ++j) {
      dst[j] = static_cast<float>((x[i].qs[j] & 0xF) - 8) * d;
      dst[j + kHalf] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void vec_dot_q4_0(int64_t n, float* s, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK32; ++i) {
    int sumi = 0;
    for (int j = 0; j < kHalf; ++j) {
      sumi += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j];
      sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + kHalf];
    }
    sum += static_cast<float>(sumi) * (half(x[i].d) * half(y[i].d));
  }
  *s = sum;
}

// ---------------------------------------------------------------- Q4_1

void quantize_q4_1(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ4_1*>(dst);
  for (int64_t i = 0; i < n / kQK32; ++i, src += kQK32) {
    const float min = *std::min_element(src, src + kQK32);
    const float max = *std::max_element(src, src + kQK32);
    const float d = (max - min) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    y[i].m = f32_to_fp16(min);
    for (int j = 0; j < kHalf; ++j) {
      const int q0 = std::min(15, static_cast<int>((src[j] - min) * id + 0.5f));
      const int q1 = std::min(15, static_cast<int>((src[j + kHalf] - min) * id + 0.5f));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void dequantize_q4_1(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / kQK32; ++i, dst += kQK32) {
    const float d = half(x[i].d), m = half(x[i].m);
    for (int j = 0; j < kHalf; ++j) {
      dst[j] = static_cast<float>(x[i].qs[j] & 0xF) * d + m;
      dst[j + kHalf] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
    }
  }
}

// sum((d q + m) * dy qy) = d dy sum(q qy) + m dy sum(qy)
void vec_dot_q4_1(int64_t n, float* s, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_1*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK32; ++i) {
    int sumi = 0, sumy = 0;
    for (int j = 0; j < kHalf; ++j) {
      sumi += (x[i].qs[j] & 0xF) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + kHalf];
      sumy += y[i].qs[j] + y[i].qs[j + kHalf];
    }
    const float dy = half(y[i].d);
    sum += static_cast<float>(sumi) * (half(x[i].d) * dy) +
           static_cast<float>(sumy) * (half(x[i].m) * dy);
  }
  *s = sum;
}

// ---------------------------------------------------------------- Q5_0

void quantize_q5_0(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ5_0*>(dst);
  for (int64_t i = 0; i < n / kQK32; ++i, src += kQK32) {
    const float d = signed_absmax(src, kQK32) / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < kHalf; ++j) {
      const int q0 = std::min(31, static_cast<int>(src[j] * id + 16.5f));
      const int q1 = std::min(31, static_cast<int>(src[j + kHalf] * id + 16.5f));
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>(q0 >> 4) << j;
      qh |= static_cast<uint32_t>(q1 >> 4) << (j + kHalf);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

// Five-bit values of a Q5 block: q[j] = low nibble | bit j of qh << 4.
void unpack_q5(const uint8_t* qs, const uint8_t* qh_bytes, int* q) {
  const uint32_t qh = load_u32(qh_bytes);
  for (int j = 0; j < kHalf; ++j) {
    q[j] = (qs[j] & 0xF) | static_cast<int>(((qh >> j) & 1) << 4);
    q[j + kHalf] = (qs[j] >> 4) | static_cast<int>(((qh >> (j + kHalf)) & 1) << 4);
  }
}

void dequantize_q5_0(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ5_0*>(src);
  int q[kQK32];
  for (int64_t i = 0; i < n / kQK32; ++i, dst += kQK32) {
    const float d = half(x[i].d);
    unpack_q5(x[i].qs, x[i].qh, q);
    for (int j = 0; j < kQK32; ++j) dst[j] = static_cast<float>(q[j] - 16) * d;
  }
}

void vec_dot_q5_0(int64_t n, float* s, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  int q[kQK32];
  float sum = 0;
  for (int64_t i = 0; i < n / kQK32; ++i) {
    unpack_q5(x[i].qs, x[i].qh, q);
    int sumi = 0;
    for (int j = 0; j < kQK32; ++j) sumi += (q[j] - 16) * y[i].qs[j];
    sum += static_cast<float>(sumi) * (half(x[i].d) * half(y[i].d));
  }
  *s = sum;
}

// ---------------------------------------------------------------- Q5_1

void quantize_q5_1(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ5_1*>(dst);
  for (int64_t i = 0; i < n / kQK32; ++i, src += kQK32) {
    const float min = *std::min_element(src, src + kQK32);
    const float max = *std::max_element(src, src + kQK32);
    const float d = (max - min) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    y[i].m = f32_to_fp16(min);
    uint32_t qh = 0;
    for (int j = 0; j < kHalf; ++j) {
      const int q0 = std::min(31, static_cast<int>((src[j] - min) * id + 0.5f));
      const int q1 = std::min(31, static_cast<int>((src[j + kHalf] - min) * id + 0.5f));
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>(q0 >> 4) << j;
      qh |= static_cast<uint32_t>(q1 >> 4) << (j + kHalf);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

void dequantize_q5_1(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ5_1*>(src);
  int q[kQK32];
  for (int64_t i = 0; i < n / kQK32; ++i, dst += kQK32) {
    const float d = half(x[i].d), m = half(x[i].m);
    unpack_q5(x[i].qs, x[i].qh, q);
    for (int j = 0; j < kQK32; ++j) dst[j] = static_cast<float>(q[j]) * d + m;
  }
}

void vec_dot_q5_1(int64_t n, float* s, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_1*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  int q[kQK32];
  float sum = 0;
  for (int64_t i = 0; i < n / kQK32; ++i) {
    unpack_q5(x[i].qs, x[i].qh, q);
    int sumi = 0, sumy = 0;
    for (int j = 0; j < kQK32; ++j) {
      sumi += q[j] * y[i].qs[j];
      sumy += y[i].qs[j];
    }
    const float dy = half(y[i].d);
    sum += static_cast<float>(sumi) * (half(x[i].d) * dy) +
           static_cast<float>(sumy) * (half(x[i].m) * dy);
  }
  *s = sum;
}

// ---------------------------------------------------------------- Q8_0

// Also the activation quantizer of every 32-block type: d = amax / 127 and
// round half away from zero (roundf), as ggml's reference does.
void quantize_q8_0(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK32; ++i, src += kQK32) {
    float amax = 0;
    for (int j = 0; j < kQK32; ++j) amax = std::max(amax, std::fabs(src[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    for (int j = 0; j < kQK32; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(src[j] * id));
  }
}

void dequantize_q8_0(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / kQK32; ++i, dst += kQK32) {
    const float d = half(x[i].d);
    for (int j = 0; j < kQK32; ++j) dst[j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

void vec_dot_q8_0(int64_t n, float* s, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ8_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK32; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK32; ++j) sumi += x[i].qs[j] * y[i].qs[j];
    sum += static_cast<float>(sumi) * (half(x[i].d) * half(y[i].d));
  }
  *s = sum;
}

// ---------------------------------------------------------------- IQ4_NL

// Nearest code book level to v (levels ascending).
int nearest_iq4nl(float v) {
  int best = 0;
  float best_err = std::fabs(v - kIq4nlValues[0]);
  for (int k = 1; k < 16; ++k) {
    const float err = std::fabs(v - kIq4nlValues[k]);
    if (err < best_err) {
      best_err = err;
      best = k;
    }
  }
  return best;
}

// Weighted least squares over a few trial scales around max / -127 (the
// extreme element on the extreme level), weights x^2 as ggml does without an
// importance matrix.
void quantize_iq4_nl(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<BlockIq4Nl*>(dst);
  uint8_t levels[kQK32];
  for (int64_t i = 0; i < n / kQK32; ++i, src += kQK32) {
    const float max = signed_absmax(src, kQK32);
    std::memset(y[i].qs, 0, sizeof(y[i].qs));
    y[i].d = 0;
    if (std::fabs(max) < 1e-15f) continue;
    float best_d = 0, best_score = -1;
    for (int t = -7; t <= 7; ++t) {
      const float id = (static_cast<float>(t) + kIq4nlValues[0]) / max;
      float sumqx = 0, sumq2 = 0;
      for (int j = 0; j < kQK32; ++j) {
        const float q = kIq4nlValues[nearest_iq4nl(id * src[j])];
        const float wgt = src[j] * src[j];
        sumqx += wgt * q * src[j];
        sumq2 += wgt * q * q;
      }
      // Error reduction of the optimal scale for this assignment: sumqx^2/sumq2.
      if (sumq2 > 0 && sumqx * sumqx / sumq2 > best_score) {
        best_score = sumqx * sumqx / sumq2;
        best_d = sumqx / sumq2;
      }
    }
    y[i].d = f32_to_fp16(best_d);
    const float d = half(y[i].d);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQK32; ++j) levels[j] = static_cast<uint8_t>(nearest_iq4nl(id * src[j]));
    for (int j = 0; j < kHalf; ++j)
      y[i].qs[j] = static_cast<uint8_t>(levels[j] | (levels[j + kHalf] << 4));
  }
}

void dequantize_iq4_nl(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockIq4Nl*>(src);
  for (int64_t i = 0; i < n / kQK32; ++i, dst += kQK32) {
    const float d = half(x[i].d);
    for (int j = 0; j < kHalf; ++j) {
      dst[j] = d * kIq4nlValues[x[i].qs[j] & 0xF];
      dst[j + kHalf] = d * kIq4nlValues[x[i].qs[j] >> 4];
    }
  }
}

void vec_dot_iq4_nl(int64_t n, float* s, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIq4Nl*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK32; ++i) {
    int sumi = 0;
    for (int j = 0; j < kHalf; ++j) {
      sumi += kIq4nlValues[x[i].qs[j] & 0xF] * y[i].qs[j];
      sumi += kIq4nlValues[x[i].qs[j] >> 4] * y[i].qs[j + kHalf];
    }
    sum += static_cast<float>(sumi) * (half(x[i].d) * half(y[i].d));
  }
  *s = sum;
}

}  // namespace

void fill_scalar_legacy(TypeTable& t) {
  t[DType::Q4_0] = {DType::Q8_0, dequantize_q4_0, quantize_q4_0, vec_dot_q4_0};
  t[DType::Q4_1] = {DType::Q8_0, dequantize_q4_1, quantize_q4_1, vec_dot_q4_1};
  t[DType::Q5_0] = {DType::Q8_0, dequantize_q5_0, quantize_q5_0, vec_dot_q5_0};
  t[DType::Q5_1] = {DType::Q8_0, dequantize_q5_1, quantize_q5_1, vec_dot_q5_1};
  t[DType::Q8_0] = {DType::Q8_0, dequantize_q8_0, quantize_q8_0, vec_dot_q8_0};
  t[DType::IQ4_NL] = {DType::Q8_0, dequantize_iq4_nl, quantize_iq4_nl, vec_dot_iq4_nl};
}

}  // namespace slm::kernels
