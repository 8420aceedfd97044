// Column copies for input-sparse decoding (kernels.h ColumnMatrix,
// axpy_cols, matvec_columns): the copy holds W's values up to one
// quantization step, every ISA's axpy_cols agrees with its algorithm's oracle, and
// matvec_columns over a subset of inputs equals a float64 reference over the
// copy (within float rounding, or the int8 algorithm's bound), whatever the
// thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <span>

#include "base/cpu.h"
#include "base/thread_pool.h"
#include "kernels/internal.h"
#include "kernels/kernel_test_util.h"

namespace slm::kernels::test {
namespace {

// The copy dequantized back to W's orientation: [rows][cols].
std::vector<float> copy_as_w(const ColumnMatrix& m) {
  std::vector<float> w(static_cast<size_t>(m.rows() * m.cols())),
      col(static_cast<size_t>(m.rows()));
  for (int64_t c = 0; c < m.cols(); ++c) {
    m.dequantize_row(c, col.data());
    for (int64_t r = 0; r < m.rows(); ++r)
      w[static_cast<size_t>(r * m.cols() + c)] = col[static_cast<size_t>(r)];
  }
  return w;
}

// W [rows][cols] = src quantized row by row to t.
std::vector<uint8_t> quantize_rows(DType t, const std::vector<float>& src, int64_t rows,
                                   int64_t cols) {
  std::vector<uint8_t> w;
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<uint8_t> q =
        quantize(t, std::vector<float>(src.begin() + r * cols, src.begin() + (r + 1) * cols));
    w.insert(w.end(), q.begin(), q.end());
  }
  return w;
}

// W [rows][cols] of random weights quantized row by row to t.
std::vector<uint8_t> quantized_matrix(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  return quantize_rows(t, random_floats(rows * cols, seed), rows, cols);
}

// Q6_K's copy: Q6_0 where the active ISA has a Q6_0 column kernel (AVX-512's int8 ones), else Q8_0.
DType q6_k_copy() {
  return axpy_cols_pays_below(active_isa(), DType::Q6_0) > 0 ? DType::Q6_0 : DType::Q8_0;
}

// A copy of type ct (Q8_0, Q6_0, Q5_0, Q4_0) of a random rows x cols matrix:
// quantized to ct itself, or (Q6_0, no file type) to Q8_0.
ColumnMatrix copy_of(DType ct, int64_t rows, int64_t cols, uint32_t seed) {
  const DType src = ct == DType::Q6_0 ? DType::Q8_0 : ct;
  const std::vector<uint8_t> w = quantized_matrix(src, rows, cols, seed);
  const ColumnMatrix::Part part{src, w.data(), rows};
  return ColumnMatrix::build(std::span<const ColumnMatrix::Part>(&part, 1), cols, ct);
}

// One step of a copy's block: max |column block| / 127 (Q8_0), / 32 (Q6_0),
// / 16 (Q5_0) or / 8 (Q4_0).
float copy_step(DType ct, float amax) {
  return amax / (ct == DType::Q8_0   ? 127.0f
                 : ct == DType::Q6_0 ? 32.0f
                 : ct == DType::Q5_0 ? 16.0f
                                     : 8.0f);
}

// The cut-offs, on every ISA: a copy as wide as its source pays below the
// same share whatever the source's name; a wider one (Q4_K's 4.5 bits a
// weight as Q5_0's 5.5) below a share lower by the width ratio, so that at its
// cut-off it reads no more bytes than the cut-off of a same-width copy would;
// no copy, 0. A copy type whose ISA runs only the scalar loops never pays
// (0: set_prune builds no such copy): Q5_0 and Q6_0 on AVX2 (and AVX-512
// without VBMI), every type on NEON and scalar. The int8 kernels pay up to
// most of the inputs kept.
TEST(Columns, CutOffsFollowTheIsaTheCopyAndItsWidth) {
  const Isa before = active_isa();
  for (const Isa isa : available_isas()) {
    ASSERT_TRUE(set_active_isa(isa));
    const std::string name(isa_name(isa));
    const double q5 = ColumnMatrix::pays_below(DType::Q5_0);
    EXPECT_GE(q5, 0.0) << name;
    EXPECT_LT(q5, 1.0) << name;
    EXPECT_EQ(ColumnMatrix::pays_below(DType::Q5_K), q5) << name;
    EXPECT_NEAR(ColumnMatrix::pays_below(DType::Q4_K), q5 * (144.0 / 256) / (22.0 / 32), 1e-12)
        << name;
    // Q6_K as Q6_0 (6.56 bits a weight as 6.5: not wider) or as Q8_0 (8.5: wider).
    if (ColumnMatrix::copy_type(DType::Q6_K) == DType::Q6_0)
      EXPECT_EQ(ColumnMatrix::pays_below(DType::Q6_K), q5) << name;
    else
      EXPECT_NEAR(ColumnMatrix::pays_below(DType::Q6_K),
                  ColumnMatrix::pays_below(DType::Q8_0) * (210.0 / 256) / (34.0 / 32), 1e-12)
          << name;
    EXPECT_EQ(ColumnMatrix::pays_below(DType::F16), 0.0) << name;
    EXPECT_EQ(ColumnMatrix::pays_below(DType::IQ4_NL), 0.0) << name;
    for (const DType t : {DType::Q8_0, DType::Q6_0, DType::Q5_0, DType::Q4_0}) {
      const double cut = axpy_cols_pays_below(isa, t);
      const bool loops = isa == Isa::kScalar || isa == Isa::kNeon ||
                         axpy_cols(isa, t) == axpy_cols(Isa::kScalar, t) ||
                         axpy_cols(isa, t) == axpy_cols_int8_oracle(t);
      if (loops)
        EXPECT_EQ(cut, 0.0) << name << " " << dtype_name(t);
      else if (axpy_cols_algo(isa) == ColsAlgo::kInt8)
        EXPECT_GE(cut, 0.7) << name << " " << dtype_name(t);
      else
        EXPECT_GT(cut, 0.0) << name << " " << dtype_name(t);
    }
    if (isa == Isa::kAvx2) {  // int8 kernels for Q8_0 and Q4_0 only
      EXPECT_EQ(q5, 0.0);
      EXPECT_EQ(ColumnMatrix::copy_type(DType::Q6_K), DType::Q8_0);
      EXPECT_EQ(ColumnMatrix::pays_below(DType::Q8_0), 0.8);
      EXPECT_EQ(ColumnMatrix::pays_below(DType::Q4_0), 0.7);
    }
  }
  set_active_isa(before);
}

// AVX-512 layers its own int8 column kernels over the AVX2 table's where
// the CPU has VBMI and keeps AVX2's (Q4_0 and Q8_0) where it has not: the
// algorithm is int8 either way.
#if defined(__x86_64__)
TEST(Columns, Avx512KeepsAvx2sInt8KernelsWithoutVbmi) {
  const std::vector<Isa> isas = available_isas();
  if (std::find(isas.begin(), isas.end(), Isa::kAvx512) == isas.end())
    GTEST_SKIP() << "no AVX-512 on this CPU";
  const TypeTable& a2 = isa_table(Isa::kAvx2);
  const TypeTable& a5 = isa_table(Isa::kAvx512);
  EXPECT_EQ(a5.axpy_cols_algo, ColsAlgo::kInt8);
  for (const DType c : {DType::Q8_0, DType::Q6_0, DType::Q5_0, DType::Q4_0}) {
    const int i = static_cast<int>(c);
    if (cpu_features().avx512_vbmi)
      EXPECT_NE(a5.axpy_cols[i], axpy_cols_int8_oracle(c)) << dtype_name(c);
    else
      EXPECT_EQ(a5.axpy_cols[i], a2.axpy_cols[i]) << dtype_name(c);
  }
}
#endif

TEST(Columns, CopyHoldsTheWeightsUpToOneStep) {
  // The source types with a copy, the copy's type for each; then Q6_0
  // copies of Q6_K and Q8_0 on every ISA (build with a type).
  const std::pair<DType, DType> copies[] = {{DType::Q8_0, DType::Q8_0}, {DType::Q4_0, DType::Q4_0},
                                            {DType::Q4_K, DType::Q5_0}, {DType::Q5_0, DType::Q5_0},
                                            {DType::Q5_K, DType::Q5_0}, {DType::Q6_K, q6_k_copy()},
                                            {DType::Q6_K, DType::Q6_0}, {DType::Q8_0, DType::Q6_0}};
  for (const auto& [t, ct] : copies) {
    const int64_t rows = 96, cols = 256;  // K-quant rows hold whole super-blocks
    const std::vector<uint8_t> w = quantized_matrix(t, rows, cols, 3);
    const bool own_type = ColumnMatrix::copy_type(t) == ct;
    EXPECT_TRUE(own_type || ct == DType::Q6_0) << dtype_info(t).name;
    ASSERT_TRUE(ColumnMatrix::supports(t, rows));
    EXPECT_FALSE(ColumnMatrix::supports(t, rows + 1));
    const ColumnMatrix::Part part{t, w.data(), rows};
    const ColumnMatrix m =
        own_type ? ColumnMatrix::build(t, w.data(), rows, cols)
                 : ColumnMatrix::build(std::span<const ColumnMatrix::Part>(&part, 1), cols, ct);
    EXPECT_EQ(m.type(), ct);
    EXPECT_EQ(m.size_bytes(),
              static_cast<size_t>(row_bytes(ct, rows) * cols));  // as many bytes as W in ct
    const std::vector<float> got = copy_as_w(m);
    const std::vector<float> want = dequantize(t, w.data(), rows * cols);
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t r0 = 0; r0 < rows; r0 += 32) {
        float amax = 0;
        for (int64_t r = r0; r < r0 + 32; ++r)
          amax = std::max(amax, std::fabs(want[static_cast<size_t>(r * cols + c)]));
        const float step = copy_step(ct, amax);
        for (int64_t r = r0; r < r0 + 32; ++r) {
          const size_t i = static_cast<size_t>(r * cols + c);
          ASSERT_LE(std::fabs(got[i] - want[i]), step * 1.01f + 1e-6f)
              << dtype_info(t).name << " " << r << "," << c;
        }
      }
  }
  for (const DType t : {DType::F16, DType::Q4_1, DType::Q5_1, DType::Q2_K, DType::IQ4_NL})
    EXPECT_FALSE(ColumnMatrix::supports(t, 96)) << dtype_info(t).name;
}

// The fp16 scale of block j of the copy's row i (W's column i).
float copy_scale(const ColumnMatrix& m, int64_t i, int64_t j) {
  uint16_t d;
  std::memcpy(&d, m.data() + static_cast<size_t>(i) * m.row_bytes() + 2 * static_cast<size_t>(j),
              2);
  return fp16_to_f32(d);
}

// The error bound of ColsAlgo::kInt8 on y = sum over k < n of a[k] *
// W[r][idx[k]] (kernels.h): per group of col_group kept inputs (in calls of 256) and
// output block, half a step s = max |a d| / 127 times each |q| = |W| / d,
// plus float rounding. wt: the copy as W [rows][cols].
std::vector<double> int8_bound(const ColumnMatrix& m, const std::vector<float>& wt,
                               const int32_t* idx, const float* a, int64_t n) {
  const int64_t rows = m.rows(), cols = m.cols();
  std::vector<double> bound(static_cast<size_t>(rows), 1e-5);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t j = r / 32;
    double slack = 0;
    const int64_t group = col_group(m.type());
    for (int64_t g = 0; g < n; g += group) {
      const int64_t e = std::min(n, std::min(g + group, (g / 256 + 1) * 256));
      double amax = 0, qsum = 0;
      for (int64_t k = g; k < e; ++k) {
        const double d = copy_scale(m, idx[k], j);
        amax = std::max(amax, std::fabs(static_cast<double>(a[k]) * d));
        const double wv = wt[static_cast<size_t>(r * cols + idx[k])];
        if (d != 0) qsum += std::fabs(wv / d);
        slack += std::fabs(static_cast<double>(a[k]) * wv);
      }
      bound[static_cast<size_t>(r)] += 0.51 * amax / 127 * qsum;
    }
    bound[static_cast<size_t>(r)] += 1e-5 * slack;
  }
  return bound;
}

// got's outputs 0, step, 2 step, ... against a float64 product of W (wt =
// copy_as_w(m)) with x over idx: the int8 kernels within their stated
// bound, the float ones within float rounding (isa's algorithm).
void expect_near_float64(const ColumnMatrix& m, const std::vector<float>& wt,
                         const std::vector<float>& x, const std::vector<int32_t>& idx,
                         const std::vector<float>& got, Isa isa, int64_t step) {
  std::vector<float> xk;
  for (const int32_t i : idx) xk.push_back(x[static_cast<size_t>(i)]);
  const std::vector<double> bound =
      int8_bound(m, wt, idx.data(), xk.data(), static_cast<int64_t>(idx.size()));
  const bool int8 = axpy_cols_algo(isa) == ColsAlgo::kInt8;
  const int64_t cols = m.cols();
  for (int64_t r = 0; r < m.rows(); r += step) {
    double ref = 0;
    for (const int32_t i : idx)
      ref += static_cast<double>(x[static_cast<size_t>(i)]) * wt[static_cast<size_t>(r * cols + i)];
    ASSERT_NEAR(got[static_cast<size_t>(r)], ref,
                int8 ? bound[static_cast<size_t>(r)] : 1e-4 * (1 + std::fabs(ref)))
        << isa_name(isa) << " " << r;
  }
}

// Kept inputs for the kernel tests: n distinct columns of 64 in a scattered
// order, activations random with every fifth 0 and, where zero_group, the
// whole second group 0.
struct Kept {
  std::vector<int32_t> idx;
  std::vector<float> a;
};
Kept kept_inputs(int64_t n, bool zero_group, uint32_t seed, int64_t group = kMaxColGroup) {
  Kept kept;
  kept.a = random_floats(n, seed);
  for (int64_t k = 0; k < n; ++k) {
    kept.idx.push_back(static_cast<int32_t>((k * 7 + 2) % 64));
    if (k % 5 == 3 || (zero_group && k >= group && k < 2 * group))
      kept.a[static_cast<size_t>(k)] = 0.0f;
  }
  return kept;
}

// Every ISA's axpy_cols against the oracle of its algorithm: the float
// ones (scalar, NEON) within float rounding of the scalar float oracle, the int8 ones
// bit for bit equal to axpy_cols_int8_oracle. Kept counts 1..40 (partial
// groups of 16, 8 and 4), zero activations, output ranges longer than the
// kernels' 16 blocks, odd and of one block.
TEST(Columns, EveryIsaAgreesWithItsOracle) {
  // The x86 ISAs run int8 kernels (AVX-512 with VBMI for every copy type,
  // else AVX2's for Q4_0 and Q8_0), scalar and NEON the float ones.
  for (const Isa isa : available_isas())
    EXPECT_EQ(axpy_cols_algo(isa) == ColsAlgo::kInt8,
              isa == Isa::kAvx2 || isa == Isa::kAvx512 || isa == Isa::kAmx)
        << isa_name(isa);
  for (const DType t : {DType::Q8_0, DType::Q6_0, DType::Q5_0, DType::Q4_0}) {
    const int64_t nbt = 35, rows = nbt * 32;
    const ColumnMatrix m = copy_of(t, rows, 64, 9);
    for (int64_t n = 0; n <= 40; ++n) {
      const Kept kept = kept_inputs(n, n % 2 == 0, static_cast<uint32_t>(5 + n), col_group(t));
      for (const auto& [b0, nb] : {std::pair<int64_t, int64_t>{0, nbt}, {1, 17}, {6, 1}, {2, 3}}) {
        std::vector<float> want_f(static_cast<size_t>(rows), 0.5f), want_i = want_f;
        axpy_cols(Isa::kScalar, t)(want_f.data() + 32 * b0, m.view(), b0, nb, kept.idx.data(),
                                   kept.a.data(), n);
        axpy_cols_int8_oracle(t)(want_i.data() + 32 * b0, m.view(), b0, nb, kept.idx.data(),
                                 kept.a.data(), n);
        for (const Isa isa : available_isas()) {
          std::vector<float> got(static_cast<size_t>(rows), 0.5f);
          const AxpyColsFn f = axpy_cols(isa, t);
          ASSERT_NE(f, nullptr);
          f(got.data() + 32 * b0, m.view(), b0, nb, kept.idx.data(), kept.a.data(), n);
          const bool int8 = axpy_cols_algo(isa) == ColsAlgo::kInt8;
          for (int64_t r = 0; r < rows; ++r) {
            const size_t i = static_cast<size_t>(r);
            if (int8)
              ASSERT_EQ(std::memcmp(&got[i], &want_i[i], 4), 0)
                  << isa_name(isa) << " " << dtype_info(t).name << " n=" << n << " r=" << r
                  << " b0=" << b0 << ": " << got[i] << " vs " << want_i[i];
            else
              ASSERT_NEAR(got[i], want_f[i], 1e-5 * (1 + std::fabs(want_f[i])))
                  << isa_name(isa) << " " << dtype_info(t).name << " n=" << n << " r=" << r
                  << " b0=" << b0;
          }
        }
      }
    }
  }
}

// Non-finite activations (hostile input) through the int8 kernels: a NaN
// counts 0 in its group (the group's other inputs still add up), an infinity
// makes its group's outputs NaN; bit for bit the oracle's either way. So do
// a group's products all below ~3.7e-37, where 127 / max overflows: each
// counts 0 (y = 0 stays 0).
TEST(Columns, Int8KernelsFollowTheOracleOnNonFiniteInputs) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const DType t : {DType::Q8_0, DType::Q6_0, DType::Q5_0, DType::Q4_0}) {
    const int64_t nbt = 19, rows = nbt * 32, g = col_group(t);
    const ColumnMatrix m = copy_of(t, rows, 64, 4);
    const int64_t n = 3 * g - 3;
    Kept kept = kept_inputs(n, false, 11, g);
    // y = 0.25 + the product, by the oracle and by every int8 kernel: the
    // oracle's outputs (each one NaN or not as finite says) and every
    // kernel's, equal bit for bit, NaN to NaN.
    auto check = [&](bool finite, float y0) {
      std::vector<float> want(static_cast<size_t>(rows), y0);
      axpy_cols_int8_oracle(t)(want.data(), m.view(), 0, nbt, kept.idx.data(), kept.a.data(), n);
      for (const float v : want) ASSERT_EQ(std::isfinite(v), finite) << dtype_info(t).name;
      for (const Isa isa : available_isas()) {
        if (axpy_cols_algo(isa) != ColsAlgo::kInt8) continue;
        std::vector<float> got(static_cast<size_t>(rows), y0);
        axpy_cols(isa, t)(got.data(), m.view(), 0, nbt, kept.idx.data(), kept.a.data(), n);
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_TRUE(std::memcmp(&got[i], &want[i], 4) == 0 ||
                      (std::isnan(got[i]) && std::isnan(want[i])))
              << isa_name(isa) << " " << dtype_info(t).name << " r=" << i;
      }
    };
    const Kept finite = kept;
    kept.a[1] = nan;  // group 0: a NaN among finite inputs counts 0
    ASSERT_NO_FATAL_FAILURE(check(true, 0.25f));
    kept.a[static_cast<size_t>(g + 2)] = -inf;  // group 1: every output NaN
    ASSERT_NO_FATAL_FAILURE(check(false, 0.25f));
    kept = finite;
    for (int64_t k = 0; k < n; ++k) kept.a[static_cast<size_t>(k)] = k % 3 ? 0.0f : 1e-38f;
    ASSERT_NO_FATAL_FAILURE(check(true, 0.0f));
    std::vector<float> y(static_cast<size_t>(rows), 0.0f);
    axpy_cols_int8_oracle(t)(y.data(), m.view(), 0, nbt, kept.idx.data(), kept.a.data(), n);
    ASSERT_EQ(std::count(y.begin(), y.end(), 0.0f), rows) << dtype_info(t).name;
  }
}

// The int8 oracle's steps on a hand example, then its error against float64
// within the bound kernels.h states (and not trivially: the bound is within
// a factor of 20 of the largest error seen).
TEST(Columns, Int8OracleFollowsItsDefinition) {
  // Two Q8_0 columns of one block (the other 30 zero), d and q read back
  // from the copy.
  const int64_t rows = 32, cols = 32;
  std::vector<float> src(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    src[static_cast<size_t>(r * cols)] = static_cast<float>(r - 16);
    src[static_cast<size_t>(r * cols + 1)] = static_cast<float>(15 - r) * 0.5f;
  }
  const std::vector<uint8_t> w = quantize_rows(DType::Q8_0, src, rows, cols);
  const ColumnMatrix m = ColumnMatrix::build(DType::Q8_0, w.data(), rows, cols);
  const int32_t idx[2] = {1, 0};
  const float a[2] = {0.75f, -0.3f};
  const float p0 = a[0] * copy_scale(m, 1, 0), p1 = a[1] * copy_scale(m, 0, 0);
  const float mx = std::max(std::fabs(p0), std::fabs(p1));
  const float s = mx / 127.0f, inv = 127.0f / mx;
  const int u0 = static_cast<int>(std::nearbyint(p0 * inv)),
            u1 = static_cast<int>(std::nearbyint(p1 * inv));
  std::vector<float> y(32, 0.25f);
  axpy_cols_int8_oracle(DType::Q8_0)(y.data(), m.view(), 0, 1, idx, a, 2);
  for (int r = 0; r < 32; ++r) {
    const int8_t q0 = static_cast<int8_t>(m.data()[m.row_bytes() + 2 + static_cast<size_t>(r)]);
    const int8_t q1 = static_cast<int8_t>(m.data()[2 + static_cast<size_t>(r)]);
    EXPECT_EQ(y[static_cast<size_t>(r)], std::fma(s, static_cast<float>(u0 * q0 + u1 * q1), 0.25f))
        << r;
  }

  for (const DType t : {DType::Q8_0, DType::Q6_0, DType::Q5_0, DType::Q4_0}) {
    const int64_t big = 96, nb = 3;
    const ColumnMatrix mb = copy_of(t, nb * 32, big, 17);
    const std::vector<float> wt = copy_as_w(mb);
    double worst = 0;
    for (const int64_t n : {1, 5, 8, 13, 40, 64}) {
      const Kept kept = kept_inputs(n, false, 30 + static_cast<uint32_t>(n));
      std::vector<float> y8(static_cast<size_t>(nb * 32), 0.0f);
      axpy_cols_int8_oracle(t)(y8.data(), mb.view(), 0, nb, kept.idx.data(), kept.a.data(), n);
      const std::vector<double> bound = int8_bound(mb, wt, kept.idx.data(), kept.a.data(), n);
      for (int64_t r = 0; r < nb * 32; ++r) {
        double ref = 0;
        for (int64_t k = 0; k < n; ++k)
          ref += static_cast<double>(kept.a[static_cast<size_t>(k)]) *
                 wt[static_cast<size_t>(r * big + kept.idx[static_cast<size_t>(k)])];
        const double err = std::fabs(y8[static_cast<size_t>(r)] - ref);
        ASSERT_LE(err, bound[static_cast<size_t>(r)])
            << dtype_info(t).name << " n=" << n << " " << r;
        if (n == 1) {
          // One input: u = +-127 exactly, so the only error is float rounding.
          ASSERT_NEAR(y8[static_cast<size_t>(r)], ref, 1e-5 * (1 + std::fabs(ref)));
        } else if (err > 0) {
          worst = std::max(worst, err / bound[static_cast<size_t>(r)]);
        }
      }
    }
    EXPECT_GT(worst, 0.05) << dtype_info(t).name << ": the bound is far looser than the error";
  }
}

TEST(Columns, MatvecOverSubsetMatchesReference) {
  const Isa before = active_isa();
  for (const DType t : {DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::Q4_K, DType::Q6_K}) {
    const int64_t rows = 512, cols = 256;  // 16 output blocks: several tasks
    const std::vector<uint8_t> w = quantized_matrix(t, rows, cols, 21);
    const ColumnMatrix m = ColumnMatrix::build(t, w.data(), rows, cols);
    const std::vector<float> wt = copy_as_w(m);
    const std::vector<float> x = random_floats(cols, 8);
    std::vector<int32_t> idx;
    for (int32_t i = 0; i < cols; ++i)
      if (std::fabs(x[static_cast<size_t>(i)]) > 0.6f) idx.push_back(i);
    ASSERT_GT(idx.size(), 10u);
    ASSERT_LT(idx.size(), static_cast<size_t>(cols));
    for (const Isa isa : available_isas()) {
      ASSERT_TRUE(set_active_isa(isa));
      std::vector<float> y1(static_cast<size_t>(rows), NAN), y3(static_cast<size_t>(rows), NAN), xs;
      ThreadPool p1(1), p3(3);
      matvec_columns(m, x.data(), idx.data(), static_cast<int64_t>(idx.size()), y1.data(), p1, xs);
      matvec_columns(m, x.data(), idx.data(), static_cast<int64_t>(idx.size()), y3.data(), p3, xs);
      EXPECT_EQ(y1, y3) << isa_name(isa);
      ASSERT_NO_FATAL_FAILURE(expect_near_float64(m, wt, x, idx, y1, isa, 1));
    }
  }
  set_active_isa(before);
}

// Q, K and V (different types and heights) in one pass: every output as
// in a call of its own, bit for bit, however the blocks fall across tasks.
TEST(Columns, FusedMatricesEqualSeparateCalls) {
  const int64_t cols = 256;
  const std::vector<std::pair<DType, int64_t>> shapes = {
      {DType::Q4_0, 320}, {DType::Q8_0, 64}, {DType::Q5_0, 96}};
  std::vector<ColumnMatrix> ms;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const std::vector<uint8_t> w =
        quantized_matrix(shapes[i].first, shapes[i].second, cols, 40 + static_cast<uint32_t>(i));
    ms.push_back(ColumnMatrix::build(shapes[i].first, w.data(), shapes[i].second, cols));
  }
  const std::vector<float> x = random_floats(cols, 12);
  std::vector<int32_t> idx;
  for (int32_t i = 0; i < cols; ++i)
    if (std::fabs(x[static_cast<size_t>(i)]) > 0.5f) idx.push_back(i);
  for (const int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    std::vector<float> xs;
    std::vector<std::vector<float>> alone, fused;
    std::vector<ColumnOut> outs;
    for (const ColumnMatrix& m : ms) {
      alone.emplace_back(static_cast<size_t>(m.rows()), NAN);
      fused.emplace_back(static_cast<size_t>(m.rows()), NAN);
    }
    for (size_t i = 0; i < ms.size(); ++i) {
      matvec_columns(ms[i], x.data(), idx.data(), static_cast<int64_t>(idx.size()), alone[i].data(),
                     pool, xs);
      outs.push_back({&ms[i], fused[i].data()});
    }
    matvec_columns(outs, x.data(), idx.data(), static_cast<int64_t>(idx.size()), pool, xs);
    for (size_t i = 0; i < ms.size(); ++i) {
      for (const float v : fused[i]) ASSERT_FALSE(std::isnan(v)) << threads << " " << i;
      EXPECT_EQ(fused[i], alone[i]) << threads << " threads, matrix " << i;
    }
  }
}

// A stacked copy (Q, K and V; gate and up; sources of different types with
// one copy type, as a Q4_K_M model's Q4_K and Q5_K matrices) holds each
// part's own copy in its rows' runs, byte for byte, and one product over it
// gives each part's outputs of a product over the part's own copy, bit for
// bit, on every ISA and thread count.
TEST(Columns, StackedCopyEqualsEachPartsOwnCopy) {
  const Isa before = active_isa();
  const int64_t cols = 256;  // K-quant rows hold whole super-blocks
  const std::vector<std::vector<std::pair<DType, int64_t>>> groups = {
      {{DType::Q4_0, 320}, {DType::Q4_0, 64}, {DType::Q4_0, 32}},
      {{DType::Q4_K, 256}, {DType::Q5_K, 32}, {DType::Q5_0, 96}},
      {{q6_k_copy() == DType::Q8_0 ? DType::Q8_0 : DType::Q6_K, 64}, {DType::Q6_K, 160}}};
  const std::vector<float> x = random_floats(cols, 31);
  std::vector<int32_t> idx;
  for (int32_t i = 0; i < cols; ++i)
    if (std::fabs(x[static_cast<size_t>(i)]) > 0.7f) idx.push_back(i);
  const int64_t n = static_cast<int64_t>(idx.size());
  for (const auto& g : groups) {
    set_active_isa(before);  // copy_type's (Q6_K) as when groups was made
    std::vector<std::vector<uint8_t>> ws;
    std::vector<ColumnMatrix> own;
    std::vector<ColumnMatrix::Part> parts;
    for (size_t i = 0; i < g.size(); ++i) {
      ws.push_back(quantized_matrix(g[i].first, g[i].second, cols, 60 + static_cast<uint32_t>(i)));
      own.push_back(ColumnMatrix::build(g[i].first, ws.back().data(), g[i].second, cols));
      parts.push_back({g[i].first, ws.back().data(), g[i].second});
    }
    const ColumnMatrix st = ColumnMatrix::build(parts, cols);
    const std::string name(dtype_info(g[0].first).name);
    ASSERT_EQ(st.type(), own[0].type()) << name;
    ASSERT_EQ(st.cols(), cols);
    // Bytes: each part's scales and quants at its first block of the stack.
    const size_t qb = (st.row_bytes() - 2 * static_cast<size_t>(st.rows() / 32)) /
                      static_cast<size_t>(st.rows() / 32);
    size_t total = 0;
    for (int64_t c = 0; c < cols; ++c) {
      int64_t b = 0;
      const uint8_t* srow = st.data() + static_cast<size_t>(c) * st.row_bytes();
      const size_t snb = static_cast<size_t>(st.rows() / 32);
      for (const ColumnMatrix& o : own) {
        const size_t onb = static_cast<size_t>(o.rows() / 32);
        const uint8_t* orow = o.data() + static_cast<size_t>(c) * o.row_bytes();
        ASSERT_EQ(0, std::memcmp(srow + 2 * b, orow, 2 * onb)) << name << " scales, col " << c;
        ASSERT_EQ(0, std::memcmp(srow + 2 * snb + b * qb, orow + 2 * onb, qb * onb))
            << name << " quants, col " << c;
        b += static_cast<int64_t>(onb);
      }
      total = static_cast<size_t>(b);
    }
    ASSERT_EQ(total * 32, static_cast<size_t>(st.rows())) << name;
    for (const Isa isa : available_isas()) {
      ASSERT_TRUE(set_active_isa(isa));
      for (const int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        std::vector<float> xs, ys(static_cast<size_t>(st.rows()), NAN);
        matvec_columns(st, x.data(), idx.data(), n, ys.data(), pool, xs);
        int64_t r0 = 0;
        for (const ColumnMatrix& o : own) {
          std::vector<float> y(static_cast<size_t>(o.rows()), NAN);
          matvec_columns(o, x.data(), idx.data(), n, y.data(), pool, xs);
          for (float v : y) ASSERT_FALSE(std::isnan(v));
          ASSERT_EQ(0, std::memcmp(y.data(), ys.data() + r0, y.size() * sizeof(float)))
              << name << " " << isa_name(isa) << " " << threads << " threads, rows from " << r0;
          r0 += o.rows();
        }
      }
    }
  }
  set_active_isa(before);
}

// Enough kept inputs for one and two parts (two from 320 kept; asserted
// through the counts below) and outputs for several claimed ranges: a
// stacked copy gives each part's outputs of its own copies, bit for bit, at
// 1, 2 and 3 threads (3: each part's outputs cut in two as well), and within
// the int8 bound (or float rounding) of a float64 reference. Runs up to 64
// KiB are cut by kept inputs at two threads and more (internal.h
// kColumnsInputSplitMaxRunBytes), longer ones by outputs: Q4_0 has both
// copies cut by inputs (2304 / 4608-byte runs), Q8_0 its own copies by inputs
// (34,816 B) and the stacked one by outputs (69,632 B). Every input-split
// call has enough rows for the pool to add its parts (kColumnsParallelAddRows).
TEST(Columns, ManyKeptInputsSameBitsAnySplit) {
  const Isa before = active_isa();
  for (const DType t : {DType::Q4_0, DType::Q8_0}) {
    const int64_t cols = t == DType::Q8_0 ? 384 : 512, r = t == DType::Q8_0 ? 32768 : 4096;
    std::vector<std::vector<uint8_t>> ws;
    std::vector<ColumnMatrix> own;
    std::vector<ColumnMatrix::Part> parts;
    for (uint32_t i = 0; i < 2; ++i) {
      ws.push_back(quantized_matrix(t, r, cols, 70 + i));
      own.push_back(ColumnMatrix::build(t, ws.back().data(), r, cols));
      parts.push_back({t, ws.back().data(), r});
    }
    const ColumnMatrix st = ColumnMatrix::build(parts, cols);
    ASSERT_LE(own[0].row_bytes(), kColumnsInputSplitMaxRunBytes);
    ASSERT_EQ(st.row_bytes() > kColumnsInputSplitMaxRunBytes, t == DType::Q8_0);
    ASSERT_GE(r, kColumnsParallelAddRows);
    const std::vector<float> wt = copy_as_w(st);
    std::vector<int64_t> counts;
    for (const double keep : {0.3, 0.6, 0.95}) {
      const std::vector<float> x = random_floats(cols, 90);
      std::vector<int32_t> idx;
      for (int32_t i = 0; i < cols; ++i)
        if ((i * 2654435761u) % 1000 < keep * 1000) idx.push_back(i);
      const int64_t n = static_cast<int64_t>(idx.size());
      counts.push_back(n);
      for (const Isa isa : available_isas()) {
        ASSERT_TRUE(set_active_isa(isa));
        std::vector<float> first;
        for (const int threads : {1, 2, 3}) {
          ThreadPool pool(threads);
          std::vector<float> xs, ys(static_cast<size_t>(st.rows()), NAN), ya = ys;
          matvec_columns(st, x.data(), idx.data(), n, ys.data(), pool, xs);
          const ColumnOut outs[] = {{&own[0], ya.data()}, {&own[1], ya.data() + r}};
          matvec_columns(outs, x.data(), idx.data(), n, pool, xs);
          ASSERT_EQ(0, std::memcmp(ys.data(), ya.data(), ys.size() * sizeof(float)))
              << isa_name(isa) << " " << threads << " threads, n=" << n;
          if (first.empty()) first = ys;
          ASSERT_EQ(0, std::memcmp(ys.data(), first.data(), ys.size() * sizeof(float)))
              << isa_name(isa) << " " << threads << " threads against 1, n=" << n;
        }
        ASSERT_NO_FATAL_FAILURE(expect_near_float64(st, wt, x, idx, first, isa, 97));
      }
    }
    ASSERT_LT(counts[0], 320);  // one part
    ASSERT_GE(counts[2], 320);  // two
  }
  set_active_isa(before);
}

}  // namespace
}  // namespace slm::kernels::test
