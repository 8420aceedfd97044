// Scalar reference kernels of the K-quants (Q2_K..Q6_K) and their activation
// format Q8_K. Each type first unpacks a 256-element super-block into plain
// integer levels and per-sub-block scales; dequantize and the dot product are
// then one obvious loop each. The quantizers follow ggml's reference schemes
// step for step (make_qkx2_quants for Q2_K/Q4_K/Q5_K, make_q3_quants for
// Q3_K, make_qx_quants for Q6_K, and their scale coding), so a file slm
// quantizes has llama-quantize's bytes. Given an importance matrix
// (llama.cpp's imatrix: one weight per column) the same fits run with the
// weights imatrix * sqrt(sigma2 + x^2), the form of ggml's
// quantize_row_*_impl (whose searches differ: weighted output is slm's own).
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

}  // namespace

// x ~= scale * L + min with L in [0, nmax], scale >= 0, min <= 0, weights w:
// the scheme of ggml's make_qkx2_quants, so the unweighted K-quants match
// llama.cpp's bytes. The plain min/max fit first, then each trial scale's
// weighted least-squares (scale, min) for the levels it picks (measured
// from the best min so far), keeping the smallest weighted error. levels
// gets the kept L; returns scale, *neg_min = -min >= 0.
float fit_affine(const float* x, const float* w, int n, int nmax, const AffineSearch& search,
                 uint8_t* levels, float* neg_min) {
  float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(levels, levels + n, 0);
    *neg_min = -min;
    return 0;
  }
  auto error_of = [&](float scale, float m, const uint8_t* l) {
    float err = 0;
    for (int i = 0; i < n; ++i) {
      float diff = scale * static_cast<float>(l[i]) + m - x[i];
      diff = search.mad ? std::fabs(diff) : diff * diff;
      err += w[i] * diff;
    }
    return err;
  };
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  for (int i = 0; i < n; ++i)
    levels[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
  float best_error = error_of(scale, min, levels);
  uint8_t aux[32];
  for (int k = 0; k <= search.nstep; ++k) {
    iscale = (search.rmin + search.rdelta * static_cast<float>(k) + static_cast<float>(nmax)) /
             (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      aux[i] = static_cast<uint8_t>(l);
      const float lf = static_cast<float>(l);
      sum_l += w[i] * lf;
      sum_l2 += w[i] * lf * lf;
      sum_xl += w[i] * lf * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0) {  // the format only subtracts mins
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    const float err = error_of(this_scale, this_min, aux);
    if (err < best_error) {
      std::copy(aux, aux + n, levels);
      best_error = err;
      scale = this_scale;
      min = this_min;
    }
  }
  *neg_min = -min;
  return scale;
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

namespace {

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

// Scales of 16-wide sub-blocks coded as 4-bit sc and min: Q2_K. Weights |x|
// (or the imatrix's), ggml's search, and its coding of the scales, so the
// unweighted bytes match quantize_row_q2_K_ref.
void quantize_q2_k_impl(const float* src, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ2_K*>(dst);
  constexpr AffineSearch kSearch = {-0.5f, 0.1f, 15, true};
  float wbuf[kQKK], plain[16];
  uint8_t levels[kQKK];
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    const float* wt = importance_weights(src, qw ? qw + i * kQKK : nullptr, 1.0f, wbuf);
    float scales[16], mins[16], max_scale = 0, max_min = 0;
    for (int s = 0; s < 16; ++s) {
      const float* x = src + 16 * s;
      for (int l = 0; l < 16; ++l) plain[l] = std::fabs(x[l]);
      scales[s] =
          fit_affine(x, wt ? wt + 16 * s : plain, 16, 3, kSearch, levels + 16 * s, &mins[s]);
      max_scale = std::max(max_scale, scales[s]);
      max_min = std::max(max_min, mins[s]);
    }
    std::memset(y[i].scales, 0, sizeof(y[i].scales));
    y[i].d = y[i].dmin = 0;
    if (max_scale > 0) {
      const float iscale = 15.f / max_scale;
      for (int s = 0; s < 16; ++s)
        y[i].scales[s] = static_cast<uint8_t>(nearest_int(iscale * scales[s]));
      y[i].d = f32_to_fp16(max_scale / 15.f);
    }
    if (max_min > 0) {
      const float iscale = 15.f / max_min;
      for (int s = 0; s < 16; ++s)
        y[i].scales[s] |= static_cast<uint8_t>(nearest_int(iscale * mins[s]) << 4);
      y[i].dmin = f32_to_fp16(max_min / 15.f);
    }
    // Levels against the coded scales (a sub-block coded to scale 0 keeps its fit's).
    for (int s = 0; s < 16; ++s) {
      const float d = half(y[i].d) * static_cast<float>(y[i].scales[s] & 0xF);
      if (d == 0) continue;
      const float m = half(y[i].dmin) * static_cast<float>(y[i].scales[s] >> 4);
      for (int e = 16 * s; e < 16 * s + 16; ++e)
        levels[e] = static_cast<uint8_t>(std::clamp(nearest_int((src[e] + m) / d), 0, 3));
    }
    std::memset(y[i].qs, 0, sizeof(y[i].qs));
    for (int e = 0; e < kQKK; ++e)
      y[i].qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>(levels[e] << (2 * ((e % 128) / 32)));
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

// x ~= d * L, L in [-nmax, nmax - 1], for a Q3_K sub-block: the scheme of
// ggml's make_q3_quants (rmse): levels from the extreme on -nmax, then up to
// five passes moving single levels while that raises sumlx^2 / suml2.
// Weights wt, else x^2. levels gets L + nmax (all 0 for a zero group).
float fit_q3(const float* x, int n, int nmax, const float* wt, int* levels) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
  if (amax < 1e-15f) {
    std::fill(levels, levels + n, 0);
    return 0;
  }
  const float iscale = -static_cast<float>(nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    levels[i] = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    const float w = wt ? wt[i] : x[i] * x[i], l = static_cast<float>(levels[i]);
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int pass = 0; pass < 5; ++pass) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = wt ? wt[i] : x[i] * x[i], li = static_cast<float>(levels[i]);
      float slx = sumlx - w * x[i] * li;
      if (slx <= 0) continue;
      float sl2 = suml2 - w * li * li;
      const int new_l = std::clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
      if (new_l == levels[i]) continue;
      const float nl = static_cast<float>(new_l);
      slx += w * x[i] * nl;
      sl2 += w * nl * nl;
      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
        levels[i] = new_l;
        sumlx = slx;
        suml2 = sl2;
        ++n_changed;
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) levels[i] += nmax;
  return suml2 > 0 ? sumlx / suml2 : 0.0f;
}

// Q3_K: 16 signed 6-bit sub-block scales and 3-bit levels, coded as
// quantize_row_q3_K_ref does (an all-zero block is all zero bytes).
void quantize_q3_k_impl(const float* src, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ3_K*>(dst);
  float wbuf[kQKK];
  int levels[kQKK];
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    const float* wt = importance_weights(src, qw ? qw + i * kQKK : nullptr, 2.0f, wbuf);
    float scales[16], max_scale = 0, amax = 0;
    for (int s = 0; s < 16; ++s) {
      scales[s] = fit_q3(src + 16 * s, 16, 4, wt ? wt + 16 * s : nullptr, levels + 16 * s);
      if (std::fabs(scales[s]) > amax) amax = std::fabs(scales[s]), max_scale = scales[s];
    }
    std::memset(y[i].scales, 0, sizeof(y[i].scales));
    std::memset(y[i].hmask, 0, sizeof(y[i].hmask));
    std::memset(y[i].qs, 0, sizeof(y[i].qs));
    y[i].d = 0;
    if (max_scale != 0) {
      const float iscale = -32.0f / max_scale;
      for (int s = 0; s < 16; ++s)
        put_q3k_scale(y[i].scales, s, std::clamp(nearest_int(iscale * scales[s]), -32, 31) + 32);
      y[i].d = f32_to_fp16(1 / iscale);
    }
    // Levels against the coded scales (a sub-block coded to scale 0 keeps its fit's).
    for (int s = 0; s < 16; ++s) {
      const float d = half(y[i].d) * static_cast<float>(q3k_scale(y[i].scales, s));
      if (d == 0) continue;
      for (int e = 16 * s; e < 16 * s + 16; ++e)
        levels[e] = std::clamp(nearest_int(src[e] / d), -4, 3) + 4;
    }
    for (int e = 0; e < kQKK; ++e) {
      y[i].qs[32 * (e / 128) + e % 32] |=
          static_cast<uint8_t>((levels[e] & 3) << (2 * ((e % 128) / 32)));
      if (levels[e] & 4) y[i].hmask[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
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
  // ggml's searches: Q4_K 21 trial scales from nmax - 1, Q5_K 16 from nmax - 0.5.
  constexpr AffineSearch kSearch =
      kFifthBit ? AffineSearch{-0.5f, 0.1f, 15, false} : AffineSearch{-1.f, 0.1f, 20, false};
  auto* y = static_cast<Block*>(dst);
  float wbuf[kQKK], plain[32];
  uint8_t levels[kQKK];
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    const float* wt = importance_weights(src, qw ? qw + i * kQKK : nullptr, 2.0f, wbuf);
    float scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int s = 0; s < 8; ++s) {
      const float* x = src + 32 * s;
      // Without an imatrix: rms of the sub-block + |x|, as ggml.
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += x[l] * x[l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) plain[l] = av_x + std::fabs(x[l]);
      scales[s] =
          fit_affine(x, wt ? wt + 32 * s : plain, 32, kMax, kSearch, levels + 32 * s, &mins[s]);
      max_scale = std::max(max_scale, scales[s]);
      max_min = std::max(max_min, mins[s]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int s = 0; s < 8; ++s) {
      ls[s] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[s])));
      lm[s] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[s])));
    }
    pack_scale_min_k4(ls, lm, y[i].scales);
    y[i].d = f32_to_fp16(max_scale / 63.f);
    y[i].dmin = f32_to_fp16(max_min / 63.f);
    // Levels against the coded scales (a sub-block coded to scale 0 keeps its fit's).
    for (int s = 0; s < 8; ++s) {
      const float d = half(y[i].d) * static_cast<float>(ls[s]);
      if (d == 0) continue;
      const float m = half(y[i].dmin) * static_cast<float>(lm[s]);
      for (int e = 32 * s; e < 32 * s + 32; ++e)
        levels[e] = static_cast<uint8_t>(std::clamp(nearest_int((src[e] + m) / d), 0, kMax));
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
