// LoRA's shrink and expand kernels (kernels.h LoraKernels) on every compiled
// ISA: against float64 sums of the same F16 factors, with tolerances from
// float accumulation (n terms: at most about n * 2^-24 of the sum of
// |terms|), and bit-for-bit independence of a row's result from the other
// rows of its call and from how the k and j ranges are split (what makes a
// mixed batch equal each sequence alone).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/fp16.h"
#include "kernels/kernels.h"

namespace slm::kernels {
namespace {

struct Case {
  int64_t n_in, n_out, r, m;
};
// Edge sizes: below one vector, odd tails, partial column blocks, and the
// row blocking (4 rows) with a remainder.
const Case kCases[] = {{1, 1, 1, 1},      {7, 23, 3, 5},   {33, 17, 2, 4},  {64, 48, 16, 2},
                       {896, 130, 16, 9}, {250, 64, 5, 1}, {100, 200, 7, 2}};

struct Lora {
  std::vector<uint16_t> a, bt;  // [r][n_in], blocked B^T (lora_bt_size)
  std::vector<float> scale, x, y0;
  Case c;
  float b(int64_t j, int64_t k) const {
    return fp16_to_f32(
        bt[static_cast<size_t>((j / kLoraCols * c.r + k) * kLoraCols + j % kLoraCols)]);
  }
  float av(int64_t k, int64_t i) const {
    return fp16_to_f32(a[static_cast<size_t>(k * c.n_in + i)]);
  }
  void shrink(Isa isa, int64_t k0, int64_t k1, const float* xs, int64_t m, float* t) const {
    lora_kernels(isa).shrink(a.data(), c.n_in, c.r, scale.data(), k0, k1, xs, m, t);
  }
  void expand(Isa isa, const float* t, int64_t m, int64_t j0, int64_t j1, float* y) const {
    lora_kernels(isa).expand(bt.data(), c.n_out, c.r, t, m, j0, j1, y);
  }
};

Lora make(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> pow2(-20, -8);
  Lora l;
  l.c = c;
  // Factor values as model/lora.cpp stores them: rows up to ~2^15.
  for (int64_t i = 0; i < c.r * c.n_in; ++i) l.a.push_back(f32_to_fp16(4096.0f * nd(rng)));
  l.bt.assign(static_cast<size_t>(lora_bt_size(c.n_out, c.r)), 0);
  for (int64_t j = 0; j < c.n_out; ++j)
    for (int64_t k = 0; k < c.r; ++k)
      l.bt[static_cast<size_t>((j / kLoraCols * c.r + k) * kLoraCols + j % kLoraCols)] =
          f32_to_fp16(4096.0f * nd(rng));
  for (int64_t k = 0; k < c.r; ++k) l.scale.push_back(std::ldexp(1.0f, pow2(rng)));
  for (int64_t i = 0; i < c.m * c.n_in; ++i) l.x.push_back(nd(rng));
  for (int64_t i = 0; i < c.m * c.n_out; ++i) l.y0.push_back(nd(rng));
  return l;
}

// The kernels' sums against float64 sums of the factor values l.av / l.b.
template <class L>
void expect_float64_sums(Isa isa, const L& l) {
  const Case& c = l.c;
  SCOPED_TRACE(std::string(isa_name(isa)) + " n_in " + std::to_string(c.n_in) + " n_out " +
               std::to_string(c.n_out) + " r " + std::to_string(c.r) + " m " + std::to_string(c.m));
  std::vector<float> t(static_cast<size_t>(c.m * c.r), -1.0f), y = l.y0;
  l.shrink(isa, 0, c.r, l.x.data(), c.m, t.data());
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t k = 0; k < c.r; ++k) {
      double want = 0, mag = 0;
      for (int64_t e = 0; e < c.n_in; ++e) {
        const double p = static_cast<double>(l.av(k, e)) * l.x[static_cast<size_t>(i * c.n_in + e)];
        want += p;
        mag += std::fabs(p);
      }
      const double s = l.scale[static_cast<size_t>(k)];
      ASSERT_NEAR(t[static_cast<size_t>(i * c.r + k)], want * s, (c.n_in + 4) * 0x1p-24 * mag * s)
          << "row " << i << " k " << k;
    }
  // Expand from the kernel's own t, so only its sums are checked.
  l.expand(isa, t.data(), c.m, 0, c.n_out, y.data());
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n_out; ++j) {
      double want = l.y0[static_cast<size_t>(i * c.n_out + j)], mag = std::fabs(want);
      for (int64_t k = 0; k < c.r; ++k) {
        const double p = static_cast<double>(t[static_cast<size_t>(i * c.r + k)]) * l.b(j, k);
        want += p;
        mag += std::fabs(p);
      }
      ASSERT_NEAR(y[static_cast<size_t>(i * c.n_out + j)], want, (c.r + 2) * 0x1p-24 * mag)
          << "row " << i << " column " << j;
    }
}

// Each row alone, with the ranges cut in pieces (one rank, one column block
// at a time), gives the bits of one call over every row and the whole ranges.
template <class L>
void expect_rows_independent(Isa isa, const L& l) {
  const Case& c = l.c;
  SCOPED_TRACE(std::string(isa_name(isa)) + " n_in " + std::to_string(c.n_in) + " m " +
               std::to_string(c.m));
  std::vector<float> t(static_cast<size_t>(c.m * c.r)), y = l.y0;
  l.shrink(isa, 0, c.r, l.x.data(), c.m, t.data());
  l.expand(isa, t.data(), c.m, 0, c.n_out, y.data());
  for (int64_t i = 0; i < c.m; ++i) {
    std::vector<float> ti(static_cast<size_t>(c.r)),
        yi(l.y0.begin() + i * c.n_out, l.y0.begin() + (i + 1) * c.n_out);
    for (int64_t k = 0; k < c.r; ++k)
      l.shrink(isa, k, k + 1, l.x.data() + i * c.n_in, 1, ti.data());
    for (int64_t j = 0; j < c.n_out; j += kLoraCols)
      l.expand(isa, ti.data(), 1, j, std::min(c.n_out, j + kLoraCols), yi.data());
    for (int64_t k = 0; k < c.r; ++k)
      ASSERT_EQ(ti[static_cast<size_t>(k)], t[static_cast<size_t>(i * c.r + k)])
          << "row " << i << " k " << k;
    for (int64_t j = 0; j < c.n_out; ++j)
      ASSERT_EQ(yi[static_cast<size_t>(j)], y[static_cast<size_t>(i * c.n_out + j)])
          << "row " << i << " column " << j;
  }
}

TEST(LoraKernels, MatchFloat64Sums) {
  for (Isa isa : available_isas()) {
    ASSERT_NE(lora_kernels(isa).shrink, nullptr);
    ASSERT_NE(lora_kernels(isa).expand, nullptr);
    for (const Case& c : kCases)
      expect_float64_sums(isa, make(c, static_cast<uint32_t>(c.n_in * 31 + c.n_out)));
  }
}

TEST(LoraKernels, RowsDoNotDependOnTheBatchOrTheSplit) {
  for (Isa isa : available_isas())
    for (const Case& c : kCases)
      expect_rows_independent(isa, make(c, static_cast<uint32_t>(c.r * 7 + c.m)));
}

// Every SIMD expand adds one fused multiply-add per rank to y in rank order,
// so they agree bit for bit (AVX2 and AVX-512 here; NEON has only itself).
TEST(LoraKernels, SimdExpandsAgree) {
  for (const Case& c : kCases) {
    const Lora l = make(c, 5);
    std::vector<float> t(static_cast<size_t>(c.m * c.r));
    lora_kernels(Isa::kScalar)
        .shrink(l.a.data(), c.n_in, c.r, l.scale.data(), 0, c.r, l.x.data(), c.m, t.data());
    std::vector<float> first;
    for (Isa isa : available_isas()) {
      if (isa == Isa::kScalar) continue;
      std::vector<float> y = l.y0;
      lora_kernels(isa).expand(l.bt.data(), c.n_out, c.r, t.data(), c.m, 0, c.n_out, y.data());
      if (first.empty())
        first = y;
      else
        EXPECT_EQ(y, first) << isa_name(isa) << " n_out " << c.n_out;
    }
  }
}

// ---- 8-bit factors (LoraQ8Kernels): the same checks against the values
// float(q) * d (rounded to float, as kernels.h defines them).

struct LoraQ8 {
  std::vector<int8_t> a, bt;  // [r][n_in], blocked B^T
  std::vector<float> ad, bd;  // group scales
  std::vector<float> scale, x, y0;
  Case c;
  float av(int64_t k, int64_t i) const {
    return static_cast<float>(a[static_cast<size_t>(k * c.n_in + i)]) *
           ad[static_cast<size_t>(k * lora_groups_a(c.n_in) + i / kLoraGroupA)];
  }
  float b(int64_t j, int64_t k) const {
    return static_cast<float>(
               bt[static_cast<size_t>((j / kLoraCols * c.r + k) * kLoraCols + j % kLoraCols)]) *
           bd[static_cast<size_t>(j / kLoraCols * c.r + k)];
  }
  void shrink(Isa isa, int64_t k0, int64_t k1, const float* xs, int64_t m, float* t) const {
    lora_q8_kernels(isa).shrink(a.data(), ad.data(), c.n_in, c.r, scale.data(), k0, k1, xs, m, t);
  }
  void expand(Isa isa, const float* t, int64_t m, int64_t j0, int64_t j1, float* y) const {
    lora_q8_kernels(isa).expand(bt.data(), bd.data(), c.n_out, c.r, t, m, j0, j1, y);
  }
};

LoraQ8 make_q8(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> q(-127, 127);
  std::uniform_real_distribution<float> ud(0.5f, 2.0f);
  LoraQ8 l;
  l.c = c;
  for (int64_t i = 0; i < c.r * c.n_in; ++i) l.a.push_back(static_cast<int8_t>(q(rng)));
  // Scales far from a power of two, so that float(q) * d rounds.
  for (int64_t i = 0; i < c.r * lora_groups_a(c.n_in); ++i) l.ad.push_back(0.01f * ud(rng));
  l.bt.assign(static_cast<size_t>(lora_bt_size(c.n_out, c.r)), 0);
  for (int64_t j = 0; j < c.n_out; ++j)
    for (int64_t k = 0; k < c.r; ++k)
      l.bt[static_cast<size_t>((j / kLoraCols * c.r + k) * kLoraCols + j % kLoraCols)] =
          static_cast<int8_t>(q(rng));
  for (int64_t i = 0; i < (c.n_out + kLoraCols - 1) / kLoraCols * c.r; ++i)
    l.bd.push_back(0.003f * ud(rng));
  for (int64_t k = 0; k < c.r; ++k) l.scale.push_back(ud(rng));
  for (int64_t i = 0; i < c.m * c.n_in; ++i) l.x.push_back(nd(rng));
  for (int64_t i = 0; i < c.m * c.n_out; ++i) l.y0.push_back(nd(rng));
  return l;
}

TEST(LoraKernelsQ8, MatchFloat64Sums) {
  for (Isa isa : available_isas()) {
    ASSERT_NE(lora_q8_kernels(isa).shrink, nullptr);
    ASSERT_NE(lora_q8_kernels(isa).expand, nullptr);
    for (const Case& c : kCases)
      expect_float64_sums(isa, make_q8(c, static_cast<uint32_t>(c.n_in * 29 + c.n_out)));
  }
}

TEST(LoraKernelsQ8, RowsDoNotDependOnTheBatchOrTheSplit) {
  for (Isa isa : available_isas())
    for (const Case& c : kCases)
      expect_rows_independent(isa, make_q8(c, static_cast<uint32_t>(c.r * 5 + c.m)));
}

}  // namespace
}  // namespace slm::kernels
