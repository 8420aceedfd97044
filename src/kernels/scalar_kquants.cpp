// Scalar reference kernels of the K-quants (Q2_K..Q6_K) and their activation
// format Q8_K. Each type first unpacks a 256-element super-block into plain
// integer levels and per-sub-block scales; dequantize and the dot product are
// then one obvious loop each. The quantizers are simple weighted least-squares
// fits; given an importance matrix (llama.cpp's imatrix: one weight per
// column) the fit weights become imatrix * sqrt(sigma2 + x^2), the form of
// ggml's quantize_row_*_impl (the fits themselves are slm's, not ggml's).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "base/fp16.h"
#include "kernels/blocks.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

float half(uint16_t h) {
  return fp16_to_f32(h);
}

// Unpacked super-block: x[e] = d * scale[e / sub] * q[e] - dmin * min[e / sub]
// where sub is 16 or 32 depending on the type.
struct Unpacked {
  int q[kQKK];
  int scale[16];
  int min[16];
  float d = 0;
  float dmin = 0;
  int sub = 16;
};

// Bits of element e stored as four 2-bit fields per byte: byte 32 * (e / 128) +
// e % 32, shift 2 * ((e % 128) / 32). Shared by Q2_K and Q3_K.
int two_bits(const uint8_t* qs, int e) {
  return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

void unpack_q2_k(const BlockQ2_K& b, Unpacked& u) {
  u.d = half(b.d);
  u.dmin = half(b.dmin);
  u.sub = 16;
  for (int s = 0; s < 16; ++s) {
    u.scale[s] = b.scales[s] & 0xF;
    u.min[s] = b.scales[s] >> 4;
  }
  for (int e = 0; e < kQKK; ++e) u.q[e] = two_bits(b.qs, e);
}

void unpack_q3_k(const BlockQ3_K& b, Unpacked& u) {
  u.d = half(b.d);
  u.dmin = 0;
  u.sub = 16;
  for (int s = 0; s < 16; ++s) {
    u.scale[s] = q3k_scale(b.scales, s);
    u.min[s] = 0;
  }
  for (int e = 0; e < kQKK; ++e) {
    const int high = (b.hmask[e % 32] >> (e / 32)) & 1;
    u.q[e] = (two_bits(b.qs, e) | (high << 2)) - 4;
  }
}

// Q4_K and Q5_K share d, dmin, the 6-bit scales and the nibble layout; Q5_K
// adds bit 4 of element e as bit (e / 32) of qh[e % 32].
template <typename Block>
void unpack_k4(const Block& b, Unpacked& u) {
  u.d = half(b.d);
  u.dmin = half(b.dmin);
  u.sub = 32;
  for (int s = 0; s < 8; ++s) {
    uint8_t sc, m;
    unpack_scale_min_k4(s, b.scales, &sc, &m);
    u.scale[s] = sc;
    u.min[s] = m;
  }
  for (int e = 0; e < kQKK; ++e) {
    const uint8_t byte = b.qs[32 * (e / 64) + e % 32];
    u.q[e] = (e % 64) < 32 ? byte & 0xF : byte >> 4;
    if constexpr (std::is_same_v<Block, BlockQ5_K>) u.q[e] |= ((b.qh[e % 32] >> (e / 32)) & 1) << 4;
  }
}

void unpack_q6_k(const BlockQ6_K& b, Unpacked& u) {
  u.d = half(b.d);
  u.dmin = 0;
  u.sub = 16;
  for (int s = 0; s < 16; ++s) {
    u.scale[s] = b.scales[s];
    u.min[s] = 0;
  }
  for (int e = 0; e < kQKK; ++e) {
    const int h = e / 128, r = e % 128, l = r % 32, quarter = r / 32;
    const uint8_t low_byte = b.ql[64 * h + 32 * (quarter & 1) + l];
    const int low = quarter < 2 ? low_byte & 0xF : low_byte >> 4;
    const int high = (b.qh[32 * h + l] >> (2 * quarter)) & 3;
    u.q[e] = (low | (high << 4)) - 32;
  }
}

void dequantize_unpacked(const Unpacked& u, float* dst) {
  for (int e = 0; e < kQKK; ++e) {
    const int s = e / u.sub;
    dst[e] = u.d * static_cast<float>(u.scale[s]) * static_cast<float>(u.q[e]) -
             u.dmin * static_cast<float>(u.min[s]);
  }
}

// dot with a Q8_K block: d dy sum_s scale_s sum_e q y - dmin dy sum_s min_s sum_e y,
// the inner sums of y being the block's bsums (two per 32-wide sub-block).
float dot_unpacked(const Unpacked& u, const BlockQ8_K& y) {
  int isum = 0, msum = 0;
  const int n_sub = kQKK / u.sub;
  for (int s = 0; s < n_sub; ++s) {
    int dot = 0, ysum = 0;
    for (int e = s * u.sub; e < (s + 1) * u.sub; ++e) dot += u.q[e] * y.qs[e];
    for (int g = s * u.sub / 16; g < (s + 1) * u.sub / 16; ++g) ysum += y.bsums[g];
    isum += u.scale[s] * dot;
    msum += u.min[s] * ysum;
  }
  return y.d * u.d * static_cast<float>(isum) - y.d * u.dmin * static_cast<float>(msum);
}

template <typename Block, void (*kUnpack)(const Block&, Unpacked&)>
void dequantize_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const Block*>(src);
  Unpacked u;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    kUnpack(x[i], u);
    dequantize_unpacked(u, dst + i * kQKK);
  }
}

template <typename Block, void (*kUnpack)(const Block&, Unpacked&)>
void vec_dot_k(int64_t n, float* s, const void* w, const void* a) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  Unpacked u;
  float sum = 0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    kUnpack(x[i], u);
    sum += dot_unpacked(u, y[i]);
  }
  *s = sum;
}

// ---------------------------------------------------------------- fitting

// x ~= scale * L + min with L in [0, nmax], scale >= 0, min <= 0: tries scales
// around nmax / (max - min) and keeps the weighted least-squares fit with the
// smallest error. Returns scale; *neg_min = -min >= 0. Weights: wt[i] when
// given, else rms + |x[i]|.
float fit_affine(const float* x, int n, int nmax, float* neg_min, const float* wt) {
  float lo = std::min(0.0f, *std::min_element(x, x + n));
  const float hi = *std::max_element(x, x + n);
  *neg_min = -lo;
  if (hi <= lo) return 0;
  float rms = 0;
  for (int i = 0; i < n; ++i) rms += x[i] * x[i];
  rms = std::sqrt(rms / static_cast<float>(n));
  float best_err = INFINITY, best_scale = (hi - lo) / static_cast<float>(nmax), best_min = lo;
  for (int step = -10; step <= 10; ++step) {
    const float iscale = (static_cast<float>(nmax) + 0.1f * static_cast<float>(step)) / (hi - lo);
    float sw = 0, sl = 0, sl2 = 0, sx = 0, sxl = 0;
    int levels[kQKK];
    for (int i = 0; i < n; ++i) {
      levels[i] = std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax);
      const float w = wt ? wt[i] : rms + std::fabs(x[i]), l = static_cast<float>(levels[i]);
      sw += w, sl += w * l, sl2 += w * l * l, sx += w * x[i], sxl += w * x[i] * l;
    }
    const float det = sw * sl2 - sl * sl;
    if (det <= 0) continue;
    float scale = (sw * sxl - sx * sl) / det;
    float min = (sl2 * sx - sl * sxl) / det;
    if (min > 0) {  // the format only subtracts mins
      min = 0;
      scale = sxl / sl2;
    }
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = scale * static_cast<float>(levels[i]) + min - x[i];
      err += (wt ? wt[i] : rms + std::fabs(x[i])) * diff * diff;
    }
    if (err < best_err) best_err = err, best_scale = scale, best_min = min;
  }
  *neg_min = -best_min;
  return best_scale;
}

// x ~= d * L with L in [-nneg, nneg - 1]; d may be negative so the extreme
// element uses the wider negative side. Weights wt where given, else x^2
// (favouring large values). The scheme of ggml's make_qx_quants: the extreme
// on -nneg first, then 18 trial scales around it, keeping the assignment
// whose optimal d removes the most weighted error (sumlx^2 / suml2, compared
// as products the way ggml does, so ties break alike). levels (optional)
// gets the kept L + nneg (all 0 for a zero group).
float fit_symmetric(const float* x, int n, int nneg, const float* wt, int* levels) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
  if (amax < 1e-15f) {
    if (levels) std::fill(levels, levels + n, 0);
    return 0;
  }
  // sumlx and suml2 of the levels iscale * x falls on (stored in levels when given).
  auto fit = [&](float iscale, float& sumlx, float& suml2, int* out) {
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nneg, nneg - 1);
      if (out) out[i] = l + nneg;
      const float w = wt ? wt[i] : x[i] * x[i];
      sumlx += w * x[i] * static_cast<float>(l);
      suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
  };
  float sumlx, suml2;
  fit(-static_cast<float>(nneg) / max, sumlx, suml2, levels);
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    const float iscale = -(static_cast<float>(nneg) + 0.1f * static_cast<float>(step)) / max;
    fit(iscale, sumlx, suml2, nullptr);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      if (levels) fit(iscale, sumlx, suml2, levels);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q3_K and Q6_K: fit_symmetric of each 16-wide sub-block into scales[16];
// returns the signed scale of largest magnitude (0 when all are 0), which
// sets the super-block scale.
float fit_symmetric_16(const float* src, int nneg, float* scales, const float* wt,
                       int* levels = nullptr) {
  float amax = 0, max_scale = 0;
  for (int s = 0; s < 16; ++s) {
    scales[s] = fit_symmetric(src + 16 * s, 16, nneg, wt ? wt + 16 * s : nullptr,
                              levels ? levels + 16 * s : nullptr);
    if (std::fabs(scales[s]) > amax) amax = std::fabs(scales[s]), max_scale = scales[s];
  }
  return max_scale;
}

// Fit weights of one super-block from its importance qw (nullptr: none, and
// wt stays unused): qw * sqrt(sigma2 + x^2) with sigma2 = sigma_scale *
// mean(x^2), as ggml's quantize_row_*_impl.
const float* importance_weights(const float* x, const float* qw, float sigma_scale, float* wt) {
  if (qw == nullptr) return nullptr;
  float sum_x2 = 0;
  for (int e = 0; e < kQKK; ++e) sum_x2 += x[e] * x[e];
  const float sigma2 = sigma_scale * sum_x2 / kQKK;
  for (int e = 0; e < kQKK; ++e) wt[e] = qw[e] * std::sqrt(sigma2 + x[e] * x[e]);
  return wt;
}

// Scales of 16-wide sub-blocks coded as 4-bit sc and min: Q2_K.
void quantize_q2_k_impl(const float* src, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ2_K*>(dst);
  float wbuf[kQKK];
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    const float* wt = importance_weights(src, qw ? qw + i * kQKK : nullptr, 1.0f, wbuf);
    float scales[16], mins[16], max_scale = 0, max_min = 0;
    for (int s = 0; s < 16; ++s) {
      scales[s] = fit_affine(src + 16 * s, 16, 3, &mins[s], wt ? wt + 16 * s : nullptr);
      max_scale = std::max(max_scale, scales[s]);
      max_min = std::max(max_min, mins[s]);
    }
    y[i].d = f32_to_fp16(max_scale / 15);
    y[i].dmin = f32_to_fp16(max_min / 15);
    const float d = half(y[i].d), dmin = half(y[i].dmin);
    for (int s = 0; s < 16; ++s) {
      const int ls = d > 0 ? std::clamp(nearest_int(scales[s] / d), 0, 15) : 0;
      const int lm = dmin > 0 ? std::clamp(nearest_int(mins[s] / dmin), 0, 15) : 0;
      y[i].scales[s] = static_cast<uint8_t>(ls | (lm << 4));
    }
    std::memset(y[i].qs, 0, sizeof(y[i].qs));
    for (int e = 0; e < kQKK; ++e) {
      const float sd = d * static_cast<float>(y[i].scales[e / 16] & 0xF);
      const float m = dmin * static_cast<float>(y[i].scales[e / 16] >> 4);
      const int l = sd > 0 ? std::clamp(nearest_int((src[e] + m) / sd), 0, 3) : 0;
      y[i].qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>(l << (2 * ((e % 128) / 32)));
    }
  }
}

// Inverse of q3k_scale: ORs the 6-bit code l (scale + 32) of sub-block s into
// the zeroed packed scales.
void put_q3k_scale(uint8_t* scales, int s, int l) {
  if (s < 8)
    scales[s] |= static_cast<uint8_t>(l & 0xF);
  else
    scales[s - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
  scales[8 + s % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (s / 4)));
}

void quantize_q3_k_impl(const float* src, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ3_K*>(dst);
  float wbuf[kQKK];
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    const float* wt = importance_weights(src, qw ? qw + i * kQKK : nullptr, 2.0f, wbuf);
    float scales[16];
    const float max_scale = fit_symmetric_16(src, 4, scales, wt);
    std::memset(y[i].scales, 0, sizeof(y[i].scales));
    std::memset(y[i].hmask, 0, sizeof(y[i].hmask));
    std::memset(y[i].qs, 0, sizeof(y[i].qs));
    y[i].d = 0;
    if (max_scale == 0) {
      // All-zero block: level 0 is q = 4 (high bit set), scale code 32 (0).
      for (int s = 0; s < 16; ++s) put_q3k_scale(y[i].scales, s, 32);
      std::memset(y[i].hmask, 0xFF, sizeof(y[i].hmask));
      continue;
    }
    const float iscale = -32.0f / max_scale;
    for (int s = 0; s < 16; ++s)
      put_q3k_scale(y[i].scales, s, std::clamp(nearest_int(iscale * scales[s]), -32, 31) + 32);
    y[i].d = f32_to_fp16(1 / iscale);
    const float d = half(y[i].d);
    for (int e = 0; e < kQKK; ++e) {
      const float sd = d * static_cast<float>(q3k_scale(y[i].scales, e / 16));
      const int l = (sd != 0 ? std::clamp(nearest_int(src[e] / sd), -4, 3) : 0) + 4;
      y[i].qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>((l & 3) << (2 * ((e % 128) / 32)));
      if (l & 4) y[i].hmask[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
    }
  }
}

// 6-bit scales and mins of eight 32-wide sub-blocks, packed as Q4_K/Q5_K expect.
void pack_scale_min_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* q) {
  std::memset(q, 0, kKScaleBytes);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      q[j] = ls[j];
      q[j + 4] = lm[j];
    } else {
      q[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      q[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      q[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

// Q4_K (levels 0..15) and Q5_K (0..31, the fifth bit in qh): fits the
// sub-blocks, codes their scales and mins in 6 bits, then re-picks levels
// against the coded values.
template <typename Block>
void quantize_k4_impl(const float* src, void* dst, int64_t n, const float* qw) {
  constexpr bool kFifthBit = std::is_same_v<Block, BlockQ5_K>;
  constexpr int kMax = kFifthBit ? 31 : 15;
  auto* y = static_cast<Block*>(dst);
  float wbuf[kQKK];
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    const float* wt = importance_weights(src, qw ? qw + i * kQKK : nullptr, 2.0f, wbuf);
    float scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int s = 0; s < 8; ++s) {
      scales[s] = fit_affine(src + 32 * s, 32, kMax, &mins[s], wt ? wt + 32 * s : nullptr);
      max_scale = std::max(max_scale, scales[s]);
      max_min = std::max(max_min, mins[s]);
    }
    y[i].d = f32_to_fp16(max_scale / 63);
    y[i].dmin = f32_to_fp16(max_min / 63);
    const float d = half(y[i].d), dmin = half(y[i].dmin);
    uint8_t ls[8], lm[8], levels[kQKK];
    for (int s = 0; s < 8; ++s) {
      ls[s] = static_cast<uint8_t>(d > 0 ? std::clamp(nearest_int(scales[s] / d), 0, 63) : 0);
      lm[s] = static_cast<uint8_t>(dmin > 0 ? std::clamp(nearest_int(mins[s] / dmin), 0, 63) : 0);
    }
    pack_scale_min_k4(ls, lm, y[i].scales);
    for (int e = 0; e < kQKK; ++e) {
      const float sd = d * ls[e / 32], m = dmin * lm[e / 32];
      levels[e] =
          static_cast<uint8_t>(sd > 0 ? std::clamp(nearest_int((src[e] + m) / sd), 0, kMax) : 0);
    }
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        y[i].qs[32 * c + l] = static_cast<uint8_t>((levels[64 * c + l] & 0xF) |
                                                   ((levels[64 * c + 32 + l] & 0xF) << 4));
    if constexpr (kFifthBit) {
      std::memset(y[i].qh, 0, sizeof(y[i].qh));
      for (int e = 0; e < kQKK; ++e)
        y[i].qh[e % 32] |= static_cast<uint8_t>((levels[e] >> 4) << (e / 32));
    }
  }
}

void quantize_q6_k_impl(const float* src, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ6_K*>(dst);
  float wbuf[kQKK];
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    const float* wt = importance_weights(src, qw ? qw + i * kQKK : nullptr, 1.0f, wbuf);
    float scales[16];
    int levels[kQKK];
    const float max_scale = fit_symmetric_16(src, 32, scales, wt, levels);
    std::memset(&y[i], 0, sizeof(BlockQ6_K));
    if (std::fabs(max_scale) < 1e-15f)
      continue;  // an all-zero block: all bytes 0, as ggml writes it
    const float iscale = -128.0f / max_scale;
    for (int s = 0; s < 16; ++s)
      y[i].scales[s] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[s])));
    y[i].d = f32_to_fp16(1 / iscale);
    const float d = half(y[i].d);
    // Levels against the coded scales; a sub-block whose scale codes to 0
    // keeps its fit's levels (they decode to 0 either way), as in ggml.
    for (int e = 0; e < kQKK; ++e) {
      const float sd = d * static_cast<float>(y[i].scales[e / 16]);
      if (sd != 0) levels[e] = std::clamp(nearest_int(src[e] / sd), -32, 31) + 32;
    }
    for (int e = 0; e < kQKK; ++e) {
      const int h = e / 128, r = e % 128, l = r % 32, quarter = r / 32;
      uint8_t& low_byte = y[i].ql[64 * h + 32 * (quarter & 1) + l];
      low_byte |= static_cast<uint8_t>((levels[e] & 0xF) << (quarter < 2 ? 0 : 4));
      y[i].qh[32 * h + l] |= static_cast<uint8_t>((levels[e] >> 4) << (2 * quarter));
    }
  }
}

void quantize_q2_k(const float* src, void* dst, int64_t n) {
  quantize_q2_k_impl(src, dst, n, nullptr);
}
void quantize_q3_k(const float* src, void* dst, int64_t n) {
  quantize_q3_k_impl(src, dst, n, nullptr);
}
template <typename Block>
void quantize_k4(const float* src, void* dst, int64_t n) {
  quantize_k4_impl<Block>(src, dst, n, nullptr);
}
void quantize_q6_k(const float* src, void* dst, int64_t n) {
  quantize_q6_k_impl(src, dst, n, nullptr);
}

// ---------------------------------------------------------------- Q8_K

// Activation quantizer of the K-quants, as ggml's reference: the signed
// extreme maps to -127 (round half to even), bsums per 16.
void quantize_q8_k(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    float amax = 0, max = 0;
    for (int e = 0; e < kQKK; ++e)
      if (std::fabs(src[e]) > amax) amax = std::fabs(src[e]), max = src[e];
    if (amax == 0) {
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int e = 0; e < kQKK; ++e)
      y[i].qs[e] = static_cast<int8_t>(std::min(127, nearest_int(iscale * src[e])));
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int e = 0; e < 16; ++e) sum += y[i].qs[16 * g + e];
      y[i].bsums[g] = static_cast<int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

void dequantize_q8_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ8_K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i)
    for (int e = 0; e < kQKK; ++e) dst[i * kQKK + e] = x[i].d * static_cast<float>(x[i].qs[e]);
}

}  // namespace

void fill_scalar_kquants(TypeTable& t) {
  t[DType::Q2_K] = {DType::Q8_K, dequantize_k<BlockQ2_K, unpack_q2_k>, quantize_q2_k,
                    vec_dot_k<BlockQ2_K, unpack_q2_k>};
  t[DType::Q3_K] = {DType::Q8_K, dequantize_k<BlockQ3_K, unpack_q3_k>, quantize_q3_k,
                    vec_dot_k<BlockQ3_K, unpack_q3_k>};
  t[DType::Q4_K] = {DType::Q8_K, dequantize_k<BlockQ4_K, unpack_k4<BlockQ4_K>>,
                    quantize_k4<BlockQ4_K>, vec_dot_k<BlockQ4_K, unpack_k4<BlockQ4_K>>};
  t[DType::Q5_K] = {DType::Q8_K, dequantize_k<BlockQ5_K, unpack_k4<BlockQ5_K>>,
                    quantize_k4<BlockQ5_K>, vec_dot_k<BlockQ5_K, unpack_k4<BlockQ5_K>>};
  t[DType::Q6_K] = {DType::Q8_K, dequantize_k<BlockQ6_K, unpack_q6_k>, quantize_q6_k,
                    vec_dot_k<BlockQ6_K, unpack_q6_k>};
  t[DType::Q8_K] = {DType::Q8_K, dequantize_q8_k, quantize_q8_k, nullptr};
}

QuantizeWeightedFn weighted_kquant(DType t) {
  switch (t) {
    case DType::Q2_K:
      return quantize_q2_k_impl;
    case DType::Q3_K:
      return quantize_q3_k_impl;
    case DType::Q4_K:
      return quantize_k4_impl<BlockQ4_K>;
    case DType::Q5_K:
      return quantize_k4_impl<BlockQ5_K>;
    case DType::Q6_K:
      return quantize_q6_k_impl;
    default:
      return nullptr;
  }
}

}  // namespace slm::kernels
