// Every ISA compiled in and supported by this CPU against the scalar oracle,
// for every type: random-byte blocks (all bit patterns), quantized data, zero
// blocks, outliers, and sizes from one block up, including odd block counts
// and, for the float types, lengths that are not a multiple of any SIMD width.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "kernel_test_util.h"

namespace slm::kernels {
namespace {

using test::block_size;
using test::random_floats;

std::vector<int64_t> test_lengths(DType t) {
  const int64_t bs = block_size(t);
  if (bs == 1)
    return {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 1000, 4097};
  std::vector<int64_t> out;
  for (int64_t blocks : {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33}) out.push_back(blocks * bs);
  out.push_back(std::max<int64_t>(4096, bs * 2));
  return out;
}

struct Case {
  Isa isa;
  DType type;
};

std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (Isa isa : available_isas())
    if (isa != Isa::kScalar)
      for (DType t : test::weight_types()) out.push_back({isa, t});
  return out;
}

class IsaVsScalar : public ::testing::TestWithParam<Case> {};

// Weight rows to try: random bytes, quantized Gaussian, all zero, outliers.
std::vector<std::vector<uint8_t>> weight_rows(DType t, int64_t n, uint32_t seed) {
  std::vector<std::vector<uint8_t>> rows;
  rows.push_back(test::random_blocks(t, n, seed));
  rows.push_back(test::quantize(t, random_floats(n, seed + 1)));
  rows.push_back(std::vector<uint8_t>(static_cast<size_t>(row_bytes(t, n)), 0));
  auto spiky = random_floats(n, seed + 2, 0.01f);
  for (int64_t i = 0; i < n; i += 37)
    spiky[static_cast<size_t>(i)] = (i % 2 ? 1.0f : -1.0f) * 50.0f;
  rows.push_back(test::quantize(t, spiky));
  return rows;
}

std::vector<std::vector<float>> activation_rows(int64_t n, uint32_t seed) {
  std::vector<std::vector<float>> rows;
  rows.push_back(random_floats(n, seed + 3));
  rows.push_back(std::vector<float>(static_cast<size_t>(n), 0.0f));
  auto outlier = random_floats(n, seed + 4, 1e-3f);
  outlier[static_cast<size_t>(n / 2)] = 1e4f;
  rows.push_back(outlier);
  std::vector<float> negative(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    negative[static_cast<size_t>(i)] = -0.5f - static_cast<float>(i % 7);
  rows.push_back(negative);
  return rows;
}

// sum_e |a_e| * 4 * max |w| over e's block.
double block_magnitude(DType t, const std::vector<float>& w, const std::vector<float>& a) {
  const size_t bs = static_cast<size_t>(block_size(t));
  double mag = 0;
  for (size_t b = 0; b < w.size(); b += bs) {
    float amax = 0;
    for (size_t i = b; i < b + bs; ++i) amax = std::max(amax, std::fabs(w[i]));
    for (size_t i = b; i < b + bs; ++i) mag += 4.0 * amax * std::fabs(a[i]);
  }
  return mag;
}

TEST_P(IsaVsScalar, Dequantize) {
  const auto [isa, t] = GetParam();
  for (int64_t n : test_lengths(t)) {
    for (const auto& w : weight_rows(t, n, static_cast<uint32_t>(n))) {
      const auto ref = test::dequantize(t, w.data(), n, Isa::kScalar);
      const auto got = test::dequantize(t, w.data(), n, isa);
      float amax = 0;
      for (float v : ref) amax = std::max(amax, std::fabs(v));
      // Same products of the same integers and scales; only the rounding of
      // d * sc * q - dmin * m may differ (FMA, operation order): a few ulps
      // of the row's largest value.
      const float tol = amax * 4e-7f;
      for (int64_t i = 0; i < n; ++i)
        ASSERT_NEAR(got[static_cast<size_t>(i)], ref[static_cast<size_t>(i)], tol)
            << isa_name(isa) << " " << dtype_name(t) << " n=" << n << " i=" << i;
    }
  }
}

TEST_P(IsaVsScalar, VecDot) {
  const auto [isa, t] = GetParam();
  const TypeTraits& ref_tt = traits(Isa::kScalar, t);
  const TypeTraits& tt = traits(isa, t);
  ASSERT_EQ(tt.vec_dot_type, ref_tt.vec_dot_type);
  for (int64_t n : test_lengths(t)) {
    const auto weights = weight_rows(t, n, static_cast<uint32_t>(n) * 7);
    for (const auto& x : activation_rows(n, static_cast<uint32_t>(n))) {
      const auto act = test::activation(t, x);
      const auto a = test::dequantize(ref_tt.vec_dot_type, act.data(), n);
      for (const auto& w : weights) {
        float want = 0, got = 0;
        ref_tt.vec_dot(n, &want, w.data(), act.data());
        tt.vec_dot(n, &got, w.data(), act.data());
        // Integer block sums are exact in every ISA; only the float terms'
        // order and grouping differ (d q y and m y separately, offsets folded
        // through bsums), each term bounded by 4 * max|w| of its block times
        // |a|: a few float epsilons of that per level of the summation tree.
        const double mag = block_magnitude(t, test::dequantize(t, w.data(), n), a);
        const double tol = mag * 6e-8 * (8 + std::log2(static_cast<double>(n))) + 1e-30;
        ASSERT_NEAR(got, want, tol) << isa_name(isa) << " " << dtype_name(t) << " n=" << n;
      }
    }
  }
}

TEST_P(IsaVsScalar, QuantizeIsBitExact) {
  const auto [isa, t] = GetParam();
  // Activation quantizers must give the same bytes on every ISA so a model's
  // numerics do not depend on the CPU beyond float summation order; weight
  // quantizers run offline and stay scalar unless an ISA overrides them.
  for (DType q : {t, traits(Isa::kScalar, t).vec_dot_type}) {
    if (traits(isa, q).quantize_row == nullptr) continue;
    for (int64_t n : test_lengths(q)) {
      for (const auto& x : activation_rows(n, static_cast<uint32_t>(n) + 99)) {
        std::vector<uint8_t> want(static_cast<size_t>(row_bytes(q, n))), got(want.size(), 0xCD);
        traits(Isa::kScalar, q).quantize_row(x.data(), want.data(), n);
        traits(isa, q).quantize_row(x.data(), got.data(), n);
        ASSERT_EQ(got, want) << isa_name(isa) << " " << dtype_name(q) << " n=" << n;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, IsaVsScalar, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  return std::string(isa_name(info.param.isa)) + "_" + std::string(dtype_name(info.param.type));
});
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(IsaVsScalar);

TEST(KernelDispatch, IsasAndSelection) {
  const auto isas = available_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), Isa::kScalar);
  EXPECT_EQ(best_isa(), isas.back());
  const Isa before = active_isa();
  for (Isa isa : isas) {
    EXPECT_TRUE(set_active_isa(isa));
    EXPECT_EQ(active_isa(), isa);
    EXPECT_EQ(&traits(DType::Q4_0), &traits(isa, DType::Q4_0));
  }
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512, Isa::kAmx, Isa::kNeon})
    if (std::find(isas.begin(), isas.end(), isa) == isas.end()) {
      EXPECT_FALSE(set_active_isa(isa));
    }
  set_active_isa(before);
  std::string names;
  for (Isa isa : isas) names += std::string(isa_detail(isa)) + " ";
  RecordProperty("isas", names);
  std::printf("available ISAs: %s(active %s)\n", names.c_str(),
              std::string(isa_name(active_isa())).c_str());
}

// The rank-nr row update of training's transposed product: every SIMD
// version against the scalar oracle, on widths around each vector and unroll
// size, with a row stride wider than the row.
TEST(IsaAxpyRows, EveryIsaMatchesScalar) {
  const AxpyRowsFn ref = axpy_rows(Isa::kScalar);
  ASSERT_NE(ref, nullptr);
  std::mt19937 rng(12);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (const Isa isa : available_isas()) {
    const AxpyRowsFn f = axpy_rows(isa);
    ASSERT_NE(f, nullptr) << isa_name(isa);
    if (isa != Isa::kScalar && isa != Isa::kNeon) {
      EXPECT_NE(f, ref) << isa_name(isa) << " has no SIMD version";
    }
    double worst = 0;
    for (const int64_t nr : {0, 1, 3, 8, 13})
      for (const int64_t nc :
           {0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200, 256, 257}) {
        const int64_t ld = nc + 5;
        std::vector<float> a(static_cast<size_t>(nr)), w(static_cast<size_t>(nr * ld) + 1),
            out(static_cast<size_t>(nc) + 1);
        for (float& x : a) x = d(rng);
        for (float& x : w) x = d(rng);
        for (float& x : out) x = d(rng);
        const float guard = out.back();
        std::vector<float> want = out;
        ref(want.data(), a.data(), nr, w.data(), ld, nc);
        f(out.data(), a.data(), nr, w.data(), ld, nc);
        EXPECT_EQ(out.back(), guard) << "wrote past nc=" << nc;
        for (int64_t c = 0; c < nc; ++c) {
          // Error bound: each of the nr + 1 roundings of the scalar sum, on
          // the magnitude of what is summed.
          double mag = std::fabs(static_cast<double>(want[static_cast<size_t>(c)]));
          for (int64_t i = 0; i < nr; ++i)
            mag += std::fabs(static_cast<double>(a[static_cast<size_t>(i)]) *
                             w[static_cast<size_t>(i * ld + c)]);
          const double err = std::fabs(static_cast<double>(out[static_cast<size_t>(c)]) -
                                       want[static_cast<size_t>(c)]);
          worst = std::max(worst, err / (mag + 1e-30));
          EXPECT_LE(err, 2.0 * static_cast<double>(nr + 1) * 1.2e-7 * mag)
              << isa_name(isa) << " nr " << nr << " nc " << nc;
        }
      }
    std::printf("[ axpy_rows ] %-6s worst error %.3g of the summed magnitude\n",
                std::string(isa_name(isa)).c_str(), worst);
  }
}

// The many-row update equals the same ISA's one-row update bit for bit (the
// same steps per element), on tile remainders, column tails and row strides
// wider than the rows; a and out rows beyond nt are left alone.
TEST(IsaAxpyRows, ManyRowsEqualOneRowAtATime) {
  std::mt19937 rng(13);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (const Isa isa : available_isas()) {
    const AxpyRowsFn one = axpy_rows(isa);
    const AxpyRowsNFn many = axpy_rows_n(isa);
    ASSERT_NE(many, nullptr) << isa_name(isa);
    for (const int64_t nt : {0, 1, 2, 5, 6, 7, 13})
      for (const int64_t nr : {0, 1, 3, 32})
        for (const int64_t nc : {0, 1, 15, 16, 17, 63, 64, 65, 130, 256}) {
          const int64_t ld = nc + 3, ldo = nc + 2, lda = nr + 1;
          std::vector<float> a(static_cast<size_t>(nt * lda)), w(static_cast<size_t>(nr * ld)),
              out(static_cast<size_t>((nt + 1) * ldo));
          for (float& x : a) x = d(rng);
          for (float& x : w) x = d(rng);
          for (float& x : out) x = d(rng);
          std::vector<float> want = out;
          for (int64_t t = 0; t < nt; ++t)
            one(want.data() + t * ldo, a.data() + t * lda, nr, w.data(), ld, nc);
          many(out.data(), ldo, a.data(), lda, nt, nr, w.data(), ld, nc);
          ASSERT_EQ(out, want) << isa_name(isa) << " nt " << nt << " nr " << nr << " nc " << nc;
        }
  }
}

}  // namespace
}  // namespace slm::kernels
