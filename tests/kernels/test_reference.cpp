// The scalar table is the oracle for every ISA, so it is tested on its own:
// hand-built blocks pin the ggml layouts, quantize -> dequantize stays within
// bounds derived from each format's step size, and vec_dot matches a float64
// dot of the dequantized rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "kernel_test_util.h"

namespace slm::kernels {
namespace {

using test::block_size;
using test::dequantize;
using test::quantize;
using test::random_floats;

constexpr uint16_t kHalfOne = 0x3C00;  // 1.0 as IEEE half

TEST(KernelReference, EveryTypeHasScalarKernels) {
  for (DType t : test::weight_types()) {
    const TypeTraits& tt = traits(Isa::kScalar, t);
    EXPECT_NE(tt.dequantize_row, nullptr) << dtype_name(t);
    EXPECT_NE(tt.quantize_row, nullptr) << dtype_name(t);
    EXPECT_NE(tt.vec_dot, nullptr) << dtype_name(t);
    const DType want = t == DType::F32 || t == DType::F16 || t == DType::BF16 ? DType::F32
                       : block_size(t) == 256                                 ? DType::Q8_K
                                                                              : DType::Q8_0;
    EXPECT_EQ(tt.vec_dot_type, want) << dtype_name(t);
  }
  EXPECT_NE(traits(Isa::kScalar, DType::Q8_K).quantize_row, nullptr);
  EXPECT_EQ(traits(Isa::kScalar, DType::Q8_1).vec_dot, nullptr);
}

TEST(KernelReference, Q4_0Layout) {
  BlockQ4_0 b{};
  b.d = kHalfOne;
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const auto y = dequantize(DType::Q4_0, &b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], static_cast<float>(j - 8));
    EXPECT_EQ(y[j + 16], static_cast<float>(7 - j));
  }
}

TEST(KernelReference, Q5_0HighBits) {
  BlockQ5_0 b{};
  b.d = kHalfOne;
  const uint32_t qh = 0x80000001u;  // element 0 and element 31 get bit 4
  std::memcpy(b.qh, &qh, 4);
  const auto y = dequantize(DType::Q5_0, &b, 32);
  EXPECT_EQ(y[0], 0.0f);    // 16 - 16
  EXPECT_EQ(y[1], -16.0f);  // 0 - 16
  EXPECT_EQ(y[31], 0.0f);
  EXPECT_EQ(y[16], -16.0f);
}

TEST(KernelReference, Q4_KScalePacking) {
  // Scales 1..8 and mins 8..1 through the packer's inverse layout.
  BlockQ4_K b{};
  b.d = kHalfOne;
  b.dmin = kHalfOne;
  const uint8_t sc[8] = {1, 2, 3, 4, 60, 61, 62, 63}, mn[8] = {0, 5, 9, 33, 17, 2, 63, 40};
  for (int j = 0; j < 4; ++j) {
    b.scales[j] = sc[j] | static_cast<uint8_t>((sc[j + 4] >> 4) << 6);
    b.scales[j + 4] = mn[j] | static_cast<uint8_t>((mn[j + 4] >> 4) << 6);
    b.scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
  for (int l = 0; l < 32; ++l) b.qs[l] = 0x21;  // element l: 1, element l + 32: 2
  const auto y = dequantize(DType::Q4_K, &b, 256);
  for (int s = 0; s < 8; ++s) {
    const float q = s == 0 ? 1.0f : s == 1 ? 2.0f : 0.0f;
    EXPECT_EQ(y[32 * s + 5], q * sc[s] - mn[s]) << "sub-block " << s;
  }
}

TEST(KernelReference, Q6_KElementOrder) {
  // Only element e gets a nonzero level; every other element is level 32 (0).
  for (int e : {0, 17, 40, 70, 100, 127, 128, 200, 255}) {
    BlockQ6_K b{};
    b.d = kHalfOne;
    for (int s = 0; s < 16; ++s) b.scales[s] = 1;
    for (auto& v : b.qh) v = 0xAA;  // top bits 2 -> level 32
    const int h = e / 128, r = e % 128, l = r % 32, quarter = r / 32;
    b.ql[64 * h + 32 * (quarter & 1) + l] |= static_cast<uint8_t>(5 << (quarter < 2 ? 0 : 4));
    const auto y = dequantize(DType::Q6_K, &b, 256);
    for (int k = 0; k < 256; ++k) EXPECT_EQ(y[k], k == e ? 5.0f : 0.0f) << "e=" << e << " k=" << k;
  }
}

TEST(KernelReference, Q3_KSignsAndHmask) {
  BlockQ3_K b{};
  b.d = kHalfOne;
  for (int s = 0; s < 16; ++s) {  // every scale code 33 -> +1
    const int l = 33;
    if (s < 8)
      b.scales[s] |= static_cast<uint8_t>(l & 0xF);
    else
      b.scales[s - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
    b.scales[8 + s % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (s / 4)));
  }
  b.hmask[3] = 0x04;  // element 3 + 32 * 2 = 67 has its high bit: level 4 -> 0
  const auto y = dequantize(DType::Q3_K, &b, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], e == 67 ? 0.0f : -4.0f) << e;
}

// ------------------------------------------------------------ activations

TEST(KernelReference, Q8_0Quantizer) {
  std::vector<float> x = random_floats(64, 1);
  x[5] = 3.0f;    // block 0's extreme, positive
  x[40] = -7.0f;  // block 1's extreme, negative
  const auto q = quantize(DType::Q8_0, x);
  const auto* b = reinterpret_cast<const BlockQ8_0*>(q.data());
  EXPECT_EQ(b[0].d, f32_to_fp16(3.0f / 127));
  EXPECT_EQ(b[0].qs[5], 127);
  EXPECT_EQ(b[1].qs[8], -127);
  for (int i = 0; i < 2; ++i) {
    const float d = 1.0f / (std::fabs(i == 0 ? 3.0f : -7.0f) / 127);
    for (int j = 0; j < 32; ++j)
      EXPECT_EQ(b[i].qs[j], static_cast<int8_t>(std::round(x[32 * i + j] * d)));
  }
  // Ties round away from zero (roundf), as ggml's reference quantizer.
  std::vector<float> ties(32, 0.0f);
  ties[0] = 127.0f;
  ties[1] = 2.5f;
  ties[2] = -2.5f;
  const auto qt = quantize(DType::Q8_0, ties);
  const auto* bt = reinterpret_cast<const BlockQ8_0*>(qt.data());
  EXPECT_EQ(bt->qs[1], 3);
  EXPECT_EQ(bt->qs[2], -3);
}

TEST(KernelReference, Q8_KQuantizer) {
  std::vector<float> x = random_floats(512, 2);
  x[300] = 9.0f;
  std::fill(x.begin(), x.begin() + 256, 0.0f);  // block 0 all zero
  const auto q = quantize(DType::Q8_K, x);
  const auto* b = reinterpret_cast<const BlockQ8_K*>(q.data());
  EXPECT_EQ(b[0].d, 0.0f);
  for (int g = 0; g < 16; ++g) EXPECT_EQ(b[0].bsums[g], 0);
  EXPECT_FLOAT_EQ(b[1].d, 9.0f / -127.0f);
  EXPECT_EQ(b[1].qs[300 - 256], -127);
  for (int g = 0; g < 16; ++g) {
    int sum = 0;
    for (int e = 0; e < 16; ++e) sum += b[1].qs[16 * g + e];
    EXPECT_EQ(b[1].bsums[g], sum);
  }
  for (int e = 0; e < 256; ++e)
    EXPECT_LE(std::fabs(b[1].d * b[1].qs[e] - x[256 + e]), std::fabs(b[1].d) * 0.5001f);
}

// ------------------------------------------------------------ round trips

// Bound on the round-trip RMSE of Gaussian data relative to its RMS, from the
// format's step: uniform rounding error has RMS step / sqrt(12), and the step
// is about the block's range (~5 sigma for 32 samples, ~4 for 16) over the
// number of levels. The factor 1.5 covers fp16 scales and coarse sub-block
// scale codes; measured values are well inside.
double rmse_bound(DType t) {
  auto step = [](double range, int levels) { return range / (levels - 1) / std::sqrt(12.0) * 1.5; };
  switch (t) {
    case DType::F32:
      return 0;
    case DType::F16:
      return std::ldexp(1.0, -11);
    case DType::BF16:
      return std::ldexp(1.0, -8);
    case DType::Q8_0:
      return step(5.0, 255);
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::IQ4_NL:
    case DType::Q4_K:
      return step(5.0, 16);
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q5_K:
      return step(5.0, 32);
    case DType::Q6_K:
      return step(4.0, 64);
    case DType::Q3_K:
      return step(4.0, 8);
    case DType::Q2_K:
      return step(4.0, 4);
    default:
      return 0;
  }
}

class RoundTrip : public ::testing::TestWithParam<DType> {};

TEST_P(RoundTrip, GaussianWithinStepBound) {
  const DType t = GetParam();
  const int64_t n = 4096;
  const auto x = random_floats(n, 3, 0.7f);
  const auto y = dequantize(t, quantize(t, x).data(), n);
  double err = 0, ref = 0;
  for (int64_t i = 0; i < n; ++i) {
    err += (x[i] - y[i]) * static_cast<double>(x[i] - y[i]);
    ref += x[i] * static_cast<double>(x[i]);
  }
  const double rel = std::sqrt(err / ref);
  EXPECT_LE(rel, rmse_bound(t)) << dtype_name(t);
  std::printf("%s: relative RMSE %.4f (bound %.4f)\n", std::string(dtype_name(t)).c_str(), rel,
              rmse_bound(t));
}

TEST_P(RoundTrip, EdgeBlocks) {
  const DType t = GetParam();
  const int64_t bs = std::max<int64_t>(block_size(t), 32);
  const int64_t n = bs * 5;
  std::vector<float> x(static_cast<size_t>(n), 0.0f);    // block 0: zeros
  std::fill(x.begin() + bs, x.begin() + 2 * bs, 0.25f);  // block 1: constant
  const auto g = random_floats(bs, 4, 1e-3f);            // block 2: outlier in noise
  std::copy(g.begin(), g.end(), x.begin() + 2 * bs);
  x[2 * bs + 7] = 300.0f;
  for (int64_t i = 0; i < bs; ++i)
    x[3 * bs + i] = -1.0f - static_cast<float>(i % 13) * 0.1f;              // all negative
  for (int64_t i = 0; i < bs; ++i) x[4 * bs + i] = (i % 2 ? 1e4f : -1e4f);  // large +-
  const auto y = dequantize(t, quantize(t, x).data(), n);
  for (int64_t b = 0; b < 5; ++b) {
    float amax = 0;
    for (int64_t i = b * bs; i < (b + 1) * bs; ++i) amax = std::max(amax, std::fabs(x[i]));
    // Worst case: a coarse format (Q2_K) may spend its 4 levels badly; no
    // element may be off by more than the block's own magnitude.
    for (int64_t i = b * bs; i < (b + 1) * bs; ++i) {
      ASSERT_TRUE(std::isfinite(y[i])) << dtype_name(t) << " i=" << i;
      ASSERT_LE(std::fabs(y[i] - x[i]), amax * 0.51f + 1e-6f)
          << dtype_name(t) << " block " << b << " i=" << i;
    }
  }
  for (int64_t i = 0; i < bs; ++i) EXPECT_EQ(y[i], 0.0f) << dtype_name(t);  // zeros stay zero
}

// The legacy symmetric types have an exact per-element bound: half a step,
// except the element opposite the extreme which may be clamped one step off.
TEST(KernelReference, LegacyMaxErrorBound) {
  for (auto [t, levels] :
       {std::pair{DType::Q4_0, 8}, std::pair{DType::Q5_0, 16}, std::pair{DType::Q8_0, 127}}) {
    const auto x = random_floats(32 * 64, 5);
    const auto y = dequantize(t, quantize(t, x).data(), static_cast<int64_t>(x.size()));
    for (size_t b = 0; b < x.size() / 32; ++b) {
      float amax = 0;
      for (size_t i = 32 * b; i < 32 * b + 32; ++i) amax = std::max(amax, std::fabs(x[i]));
      const float step = amax / static_cast<float>(levels);
      // Plus the fp16 rounding of d (2^-11 relative) times the largest level.
      const float rounding = t == DType::Q8_0 ? 0.5f : 1.0f;
      const float bound = step * (rounding + static_cast<float>(levels) * 0x1p-11f) * 1.001f;
      for (size_t i = 32 * b; i < 32 * b + 32; ++i)
        ASSERT_LE(std::fabs(y[i] - x[i]), bound) << dtype_name(t);
    }
  }
}

// A NaN in a hostile file's float weights: the symmetric quantizers
// (symmetric_levels_32) skip it for the scale and give it level 0, the rest
// of the block as if it were 0 (no extreme there); an infinity: every level
// from a finite product, no undefined float-to-int cast.
TEST(KernelReference, LegacyQuantizersTakeNonFiniteInputs) {
  for (DType t : {DType::Q4_0, DType::Q5_0}) {
    constexpr int kNan = 31;  // last: a NaN taken for the extreme would set d
    auto x = random_floats(32, 11);
    x[kNan] = 0.0f;
    const auto clean = dequantize(t, quantize(t, x).data(), 32);
    x[kNan] = std::nanf("");
    const auto y = dequantize(t, quantize(t, x).data(), 32);
    for (int i = 0; i < 32; ++i)
      if (i != kNan) {
        EXPECT_EQ(y[i], clean[i]) << dtype_name(t) << " element " << i;
      }
    float amax = 0, extreme = 0;  // level 0 is the extreme's value
    for (int i = 0; i < 32; ++i)
      if (i != kNan && std::fabs(x[i]) > amax) {
        amax = std::fabs(x[i]);
        extreme = clean[i];
      }
    EXPECT_EQ(y[kNan], extreme) << dtype_name(t);
    x[kNan - 1] = std::numeric_limits<float>::infinity();
    const auto z = quantize(t, x);  // d = -inf: every level from a NaN or -0 product
    for (float v : dequantize(t, z.data(), 32)) EXPECT_FALSE(std::isfinite(v) && v != 0.0f);
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, RoundTrip, ::testing::ValuesIn(test::weight_types()),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// ------------------------------------------------------------ vec_dot oracle

class ScalarDot : public ::testing::TestWithParam<DType> {};

TEST_P(ScalarDot, MatchesFloat64DotOfDequantized) {
  const DType t = GetParam();
  const TypeTraits& tt = traits(Isa::kScalar, t);
  for (int64_t blocks : {1, 3, 16}) {
    const int64_t n = std::max<int64_t>(block_size(t), 32) * blocks;
    for (uint32_t seed = 0; seed < 4; ++seed) {
      const auto wbytes =
          seed % 2 ? test::random_blocks(t, n, seed) : quantize(t, random_floats(n, seed + 10));
      const auto act = test::activation(t, random_floats(n, seed + 20));
      const auto w = dequantize(t, wbytes.data(), n);
      const auto a = dequantize(tt.vec_dot_type, act.data(), n);
      float s = 0;
      tt.vec_dot(n, &s, wbytes.data(), act.data());
      const auto ref = test::dot64(w, a);
      EXPECT_NEAR(s, ref.value, 1e-5 * ref.magnitude + 1e-30)
          << dtype_name(t) << " n=" << n << " seed=" << seed;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, ScalarDot, ::testing::ValuesIn(test::weight_types()),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace slm::kernels

namespace slm::kernels {
namespace {

// Importance-weighted quantizers (kernels.h quantize_row_weighted): they
// exist for every quantized weight type but Q8_0 (as in llama.cpp), give
// decodable rows, handle zero rows, and lower the error of the heavily
// weighted elements.
TEST(KernelReference, WeightedQuantizers) {
  for (DType t : {DType::Q8_0, DType::F16, DType::BF16, DType::F32})
    EXPECT_EQ(quantize_row_weighted(t), nullptr) << dtype_name(t);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q2_K, DType::Q3_K,
                  DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const QuantizeWeightedFn fn = quantize_row_weighted(t);
    ASSERT_NE(fn, nullptr);
    constexpr int64_t n = 1024;
    const std::vector<float> x = random_floats(n, 7);
    std::vector<float> w(n);
    for (int64_t i = 0; i < n; ++i) w[i] = i % 16 == 3 ? 50.0f : 0.05f;
    std::vector<uint8_t> plain = quantize(t, x), weighted(plain.size());
    fn(x.data(), weighted.data(), n, w.data());
    const std::vector<float> dp = dequantize(t, plain.data(), n),
                             dw = dequantize(t, weighted.data(), n);
    double ep = 0, ew = 0, total_w = 0;
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_TRUE(std::isfinite(dw[i]));
      ep += w[i] * (dp[i] - x[i]) * (dp[i] - x[i]);
      ew += w[i] * (dw[i] - x[i]) * (dw[i] - x[i]);
      total_w += (dw[i] - x[i]) * (dw[i] - x[i]);
    }
    EXPECT_LT(ew, 0.8 * ep) << "weighted error " << ew << " vs " << ep;
    EXPECT_LT(total_w / n, 0.25);  // still a fit of the whole row, not only the weighted elements
    // Equal weights: a fit as good as the plain one within 30%.
    std::vector<float> ones(n, 1.0f);
    fn(x.data(), weighted.data(), n, ones.data());
    const std::vector<float> d1 = dequantize(t, weighted.data(), n);
    double e1 = 0, e0 = 0;
    for (int64_t i = 0; i < n; ++i) {
      e1 += (d1[i] - x[i]) * (d1[i] - x[i]);
      e0 += (dp[i] - x[i]) * (dp[i] - x[i]);
    }
    EXPECT_LT(e1, 1.3 * e0);
    // A zero row with zero weights decodes to zeros.
    std::vector<float> zeros(n, 0.0f);
    fn(zeros.data(), weighted.data(), n, zeros.data());
    for (float v : dequantize(t, weighted.data(), n)) ASSERT_EQ(v, 0.0f);
  }
}

}  // namespace
}  // namespace slm::kernels
