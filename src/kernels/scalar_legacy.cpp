// Scalar reference kernels of the 32-element block types (Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, IQ4_NL). They are the test oracle for every ISA: plain loops,
// formulas as in ggml (integer sums per block, one float multiply-add per
// block), no cleverness. Each type turns a block into 32 integer levels (the
// values its d multiplies, offsets removed; levels_of), so dequantize and the
// dot product are written once for all six; Q4_1 / Q5_1 add their min m.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

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

// Q4_1 and Q5_1 carry a min: x = d * q + m.
template <typename Block>
constexpr bool kHasMin = std::is_same_v<Block, BlockQ4_1> || std::is_same_v<Block, BlockQ5_1>;
// Q5_0 and Q5_1 keep the fifth bit of element j as bit j of qh (LE u32).
template <typename Block>
constexpr bool kHasQh = std::is_same_v<Block, BlockQ5_0> || std::is_same_v<Block, BlockQ5_1>;

// ---------------------------------------------------------------- levels

// Element j sits in the low nibble of qs[j], element j + 16 in the high one;
// the fifth bits, where the block has them, on top.
template <typename Block>
void unsigned_levels(const Block& b, int* q) {
  for (int j = 0; j < kHalf; ++j) {
    q[j] = b.qs[j] & 0xF;
    q[j + kHalf] = b.qs[j] >> 4;
  }
  if constexpr (kHasQh<Block>) {
    uint32_t qh;
    std::memcpy(&qh, b.qh, 4);
    for (int j = 0; j < kQK32; ++j) q[j] |= static_cast<int>((qh >> j) & 1) << 4;
  }
}

// The inverse for levels in [0, 32): nibbles into qs, fifth bits into qh.
template <typename Block>
void store_levels(const int* q, Block& b) {
  for (int j = 0; j < kHalf; ++j)
    b.qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + kHalf] & 0xF) << 4));
  if constexpr (kHasQh<Block>) {
    uint32_t qh = 0;
    for (int j = 0; j < kQK32; ++j) qh |= static_cast<uint32_t>(q[j] >> 4) << j;
    std::memcpy(b.qh, &qh, 4);
  }
}

// Signed levels, the integers d multiplies.
template <typename Block>
void levels_of(const Block& b, int* q) {
  if constexpr (std::is_same_v<Block, BlockQ8_0>) {
    for (int j = 0; j < kQK32; ++j) q[j] = b.qs[j];
  } else {
    unsigned_levels(b, q);
    if constexpr (std::is_same_v<Block, BlockIq4Nl>) {
      for (int j = 0; j < kQK32; ++j) q[j] = kIq4nlValues[q[j]];
    } else if constexpr (!kHasMin<Block>) {  // Q4_0, Q5_0: offset 8 or 16
      for (int j = 0; j < kQK32; ++j) q[j] -= kHasQh<Block> ? 16 : 8;
    }
  }
}

template <typename Block>
void dequantize_32(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const Block*>(src);
  int q[kQK32];
  for (int64_t i = 0; i < n / kQK32; ++i, dst += kQK32) {
    levels_of(x[i], q);
    const float d = half(x[i].d);
    for (int j = 0; j < kQK32; ++j) {
      if constexpr (kHasMin<Block>)
        dst[j] = static_cast<float>(q[j]) * d + half(x[i].m);
      else
        dst[j] = static_cast<float>(q[j]) * d;
    }
  }
}

// With a min: sum((d q + m) * dy qy) = d dy sum(q qy) + m dy sum(qy).
template <typename Block>
void vec_dot_32(int64_t n, float* s, const void* w, const void* a) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  int q[kQK32];
  float sum = 0;
  for (int64_t i = 0; i < n / kQK32; ++i) {
    levels_of(x[i], q);
    int sumi = 0, sumy = 0;
    for (int j = 0; j < kQK32; ++j) {
      sumi += q[j] * y[i].qs[j];
      if constexpr (kHasMin<Block>) sumy += y[i].qs[j];
    }
    const float dy = half(y[i].d);
    if constexpr (kHasMin<Block>)
      sum += static_cast<float>(sumi) * (half(x[i].d) * dy) +
             static_cast<float>(sumy) * (half(x[i].m) * dy);
    else
      sum += static_cast<float>(sumi) * (half(x[i].d) * dy);
  }
  *s = sum;
}

// ---------------------------------------------------------------- quantizers

// Q4_0 / Q5_0 (kLevels 16 / 32): d = signed extreme / -(kLevels / 2), so the
// extreme element lands on level 0. Adding kLevels / 2 + 0.5 then truncating
// rounds half up into [0, kLevels]; kLevels only for the element opposite the
// extreme one, clamped. Q4_1 / Q5_1: levels 0..kLevels - 1 span [min, max].
template <typename Block, int kLevels>
void quantize_32(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<Block*>(dst);
  int q[kQK32];
  for (int64_t i = 0; i < n / kQK32; ++i, src += kQK32) {
    if constexpr (kHasMin<Block>) {
      const float min = *std::min_element(src, src + kQK32);
      const float d = (*std::max_element(src, src + kQK32) - min) / (kLevels - 1);
      const float id = d != 0 ? 1.0f / d : 0.0f;
      y[i].m = f32_to_fp16(min);
      y[i].d = f32_to_fp16(d);
      for (int j = 0; j < kQK32; ++j)
        q[j] = std::min(kLevels - 1, static_cast<int>((src[j] - min) * id + 0.5f));
    } else {
      y[i].d = f32_to_fp16(symmetric_levels_32(src, kLevels, q));
    }
    store_levels(q, y[i]);
  }
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

// ---------------------------------------------------------------- IQ4_NL

// Nearest code book level to v (levels ascending); a tie goes to the upper
// level, as ggml's best_index_int8 decides it.
int nearest_iq4nl(float v) {
  if (v <= kIq4nlValues[0]) return 0;
  if (v >= kIq4nlValues[15]) return 15;
  int k = 1;
  while (v >= kIq4nlValues[k]) ++k;  // kIq4nlValues[k - 1] <= v < kIq4nlValues[k]
  return v - kIq4nlValues[k - 1] < kIq4nlValues[k] - v ? k - 1 : k;
}

// Weighted least squares of the code book levels, the ggml scheme step for
// step so files match llama-quantize's byte for byte: a first fit with the
// signed extreme on level -127, then 15 trial scales around it, keeping the
// assignment whose optimal scale removes the most weighted error; the levels
// are then re-picked with the kept (unrounded) scale. Weights x^2 without an
// importance matrix; with one (qw, per element of the row) qw * sqrt(sigma2 +
// x^2), sigma2 = 2 mean(x^2) of the block, as ggml's quantize_row_iq4_nl_impl.
void quantize_iq4_nl_impl(const float* src, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockIq4Nl*>(dst);
  int levels[kQK32];
  float wt[kQK32];
  // sumqx and sumq2 of the levels id * x falls on.
  auto fit = [&](const float* x, float id, float& sumqx, float& sumq2) {
    sumqx = sumq2 = 0;
    for (int j = 0; j < kQK32; ++j) {
      const float q = kIq4nlValues[nearest_iq4nl(id * x[j])];
      sumqx += wt[j] * q * x[j];
      sumq2 += wt[j] * q * q;
    }
  };
  for (int64_t i = 0; i < n / kQK32; ++i, src += kQK32) {
    float sigma2 = 0;
    for (int j = 0; j < kQK32; ++j) sigma2 += src[j] * src[j];
    sigma2 *= 2.0f / kQK32;
    for (int j = 0; j < kQK32; ++j)
      wt[j] = qw ? qw[i * kQK32 + j] * std::sqrt(sigma2 + src[j] * src[j]) : src[j] * src[j];
    const float max = signed_absmax(src, kQK32);
    float d = 0;
    if (std::fabs(max) >= 1e-15f) {
      d = max / -static_cast<float>(kIq4nlValues[0]);
      float sumqx, sumq2;
      fit(src, 1 / d, sumqx, sumq2);
      if (sumq2 > 0) d = sumqx / sumq2;  // all weights zero: keep the extreme's scale
      float best = d * sumqx;
      for (int t = -7; t <= 7; ++t) {
        fit(src, (static_cast<float>(t) + kIq4nlValues[0]) / max, sumqx, sumq2);
        // sumqx^2 / sumq2 is the error the assignment's optimal scale removes.
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
          d = sumqx / sumq2;
          best = d * sumqx;
        }
      }
    }
    y[i].d = f32_to_fp16(d);
    const float id = d != 0 ? 1.0f / d : 0.0f;  // a zero block stores the level nearest 0
    for (int j = 0; j < kQK32; ++j) levels[j] = nearest_iq4nl(id * src[j]);
    store_levels(levels, y[i]);
  }
}

// Q4_0 / Q5_0 (kLevels 16 / 32) and Q4_1 / Q5_1 with importance weights
// qw * sqrt(sigma2 + x^2), sigma2 the row's mean x^2, as ggml's
// quantize_row_q4_0_impl and kin: the symmetric types by make_qx_quants'
// search, the min types by the K-quants' affine search (ggml uses its
// make_qkx3_quants variant there). Without an imatrix quantize_32 runs.
template <typename Block, int kLevels>
void quantize_32_weighted(const float* src, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<Block*>(dst);
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += src[j] * src[j];
  const float sigma2 = sum_x2 / static_cast<float>(n);
  float wt[kQK32];
  int q[kQK32];
  for (int64_t i = 0; i < n / kQK32; ++i, src += kQK32) {
    for (int j = 0; j < kQK32; ++j) wt[j] = qw[i * kQK32 + j] * std::sqrt(sigma2 + src[j] * src[j]);
    if constexpr (kHasMin<Block>) {
      constexpr AffineSearch kSearch = {-0.9f, 0.05f, 36, false};
      uint8_t levels[kQK32];
      float neg_min;
      const float d = fit_affine(src, wt, kQK32, kLevels - 1, kSearch, levels, &neg_min);
      for (int j = 0; j < kQK32; ++j) q[j] = levels[j];
      y[i].d = f32_to_fp16(d);
      y[i].m = f32_to_fp16(-neg_min);
    } else {
      y[i].d = f32_to_fp16(fit_symmetric(src, kQK32, kLevels / 2, wt, q));
    }
    store_levels(q, y[i]);
  }
}

void quantize_iq4_nl(const float* src, void* dst, int64_t n) {
  quantize_iq4_nl_impl(src, dst, n, nullptr);
}

}  // namespace

float symmetric_levels_32(const float* x, int levels, int* q) {
  const float d = signed_absmax(x, kQK32) / static_cast<float>(-(levels / 2));
  const float id = d != 0 ? 1.0f / d : 0.0f;
  const float top = static_cast<float>(levels - 1);
  for (int j = 0; j < kQK32; ++j) {
    // Finite quotients give v >= 0.5 - rounding: as truncation then min.
    const float v = x[j] * id + (static_cast<float>(levels / 2) + 0.5f);
    q[j] = v > 0 ? static_cast<int>(std::min(v, top)) : 0;
  }
  return d;
}

QuantizeWeightedFn weighted_legacy(DType t) {
  switch (t) {
    case DType::Q4_0:
      return quantize_32_weighted<BlockQ4_0, 16>;
    case DType::Q4_1:
      return quantize_32_weighted<BlockQ4_1, 16>;
    case DType::Q5_0:
      return quantize_32_weighted<BlockQ5_0, 32>;
    case DType::Q5_1:
      return quantize_32_weighted<BlockQ5_1, 32>;
    case DType::IQ4_NL:
      return quantize_iq4_nl_impl;
    default:
      return nullptr;
  }
}

void fill_scalar_legacy(TypeTable& t) {
  t[DType::Q4_0] = {DType::Q8_0, dequantize_32<BlockQ4_0>, quantize_32<BlockQ4_0, 16>,
                    vec_dot_32<BlockQ4_0>};
  t[DType::Q4_1] = {DType::Q8_0, dequantize_32<BlockQ4_1>, quantize_32<BlockQ4_1, 16>,
                    vec_dot_32<BlockQ4_1>};
  t[DType::Q5_0] = {DType::Q8_0, dequantize_32<BlockQ5_0>, quantize_32<BlockQ5_0, 32>,
                    vec_dot_32<BlockQ5_0>};
  t[DType::Q5_1] = {DType::Q8_0, dequantize_32<BlockQ5_1>, quantize_32<BlockQ5_1, 32>,
                    vec_dot_32<BlockQ5_1>};
  t[DType::Q8_0] = {DType::Q8_0, dequantize_32<BlockQ8_0>, quantize_q8_0, vec_dot_32<BlockQ8_0>};
  t[DType::IQ4_NL] = {DType::Q8_0, dequantize_32<BlockIq4Nl>, quantize_iq4_nl,
                      vec_dot_32<BlockIq4Nl>};
}

}  // namespace slm::kernels
