// Column copies for input-sparse decoding (kernels.h ColumnMatrix,
// axpy_cols, matvec_columns): the copy holds W's values up to one
// quantization step, every ISA's axpy_cols agrees with the scalar oracle, and
// matvec_columns over a subset of inputs equals a float64 reference over the
// copy, whatever the thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "base/thread_pool.h"
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

// W [rows][cols] of random weights quantized row by row to t.
std::vector<uint8_t> quantized_matrix(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  const std::vector<float> src = random_floats(rows * cols, seed);
  std::vector<uint8_t> w;
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<uint8_t> q =
        quantize(t, std::vector<float>(src.begin() + r * cols, src.begin() + (r + 1) * cols));
    w.insert(w.end(), q.begin(), q.end());
  }
  return w;
}

// The source types with a copy, and the copy's type for each.
constexpr std::pair<DType, DType> kCopies[] = {
    {DType::Q8_0, DType::Q8_0}, {DType::Q4_0, DType::Q4_0}, {DType::Q4_K, DType::Q5_0},
    {DType::Q5_0, DType::Q5_0}, {DType::Q5_K, DType::Q5_0}, {DType::Q6_K, DType::Q8_0}};

TEST(Columns, CopyHoldsTheWeightsUpToOneStep) {
  for (const auto& [t, ct] : kCopies) {
    const int64_t rows = 96, cols = 256;  // K-quant rows hold whole super-blocks
    const std::vector<uint8_t> w = quantized_matrix(t, rows, cols, 3);
    EXPECT_EQ(ColumnMatrix::copy_type(t), ct);
    ASSERT_TRUE(ColumnMatrix::supports(t, rows));
    EXPECT_FALSE(ColumnMatrix::supports(t, rows + 1));
    const ColumnMatrix m = ColumnMatrix::build(t, w.data(), rows, cols);
    EXPECT_EQ(m.type(), ct);
    EXPECT_EQ(m.size_bytes(),
              static_cast<size_t>(row_bytes(ct, rows) * cols));  // as many bytes as W in ct
    const std::vector<float> got = copy_as_w(m);
    const std::vector<float> want = dequantize(t, w.data(), rows * cols);
    // One step of the copy's block: max |column block| / 127 (Q8_0), / 16 (Q5_0)
    // or / 8 (Q4_0).
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t r0 = 0; r0 < rows; r0 += 32) {
        float amax = 0;
        for (int64_t r = r0; r < r0 + 32; ++r)
          amax = std::max(amax, std::fabs(want[static_cast<size_t>(r * cols + c)]));
        const float step = amax / (ct == DType::Q8_0 ? 127.0f : ct == DType::Q5_0 ? 16.0f : 8.0f);
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

TEST(Columns, EveryIsaAgreesWithTheOracle) {
  for (const DType t : {DType::Q8_0, DType::Q5_0, DType::Q4_0}) {
    const int64_t rows = 160;  // 5 output blocks
    const std::vector<uint8_t> w = quantized_matrix(t, rows, 64, 9);
    const ColumnMatrix m = ColumnMatrix::build(t, w.data(), rows, 64);
    const std::vector<float> a = random_floats(64, 5);
    for (const int64_t n : {0, 1, 3, 4, 7, 33}) {
      std::vector<int32_t> idx;
      for (int64_t k = 0; k < n; ++k) idx.push_back(static_cast<int32_t>((k * 7 + 2) % 64));
      // All 5 blocks, then blocks [1, 4) alone (y at output 32).
      for (const auto& [b0, nb] : {std::pair<int64_t, int64_t>{0, 5}, {1, 3}}) {
        std::vector<float> want(static_cast<size_t>(rows), 0.5f);
        axpy_cols(Isa::kScalar, t)(want.data() + 32 * b0, m.view(), b0, nb, idx.data(), a.data(),
                                   n);
        for (const Isa isa : available_isas()) {
          std::vector<float> got(static_cast<size_t>(rows), 0.5f);
          const AxpyColsFn f = axpy_cols(isa, t);
          ASSERT_NE(f, nullptr);
          f(got.data() + 32 * b0, m.view(), b0, nb, idx.data(), a.data(), n);
          for (int64_t r = 0; r < rows; ++r)
            ASSERT_NEAR(got[static_cast<size_t>(r)], want[static_cast<size_t>(r)],
                        1e-5 * (1 + std::fabs(want[static_cast<size_t>(r)])))
                << isa_name(isa) << " n=" << n << " r=" << r << " b0=" << b0;
        }
      }
    }
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
      for (int64_t r = 0; r < rows; ++r) {
        double ref = 0;
        for (const int32_t i : idx)
          ref += static_cast<double>(x[static_cast<size_t>(i)]) *
                 wt[static_cast<size_t>(r * cols + i)];
        ASSERT_NEAR(y1[static_cast<size_t>(r)], ref, 1e-4 * (1 + std::fabs(ref)))
            << isa_name(isa) << " " << r;
      }
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

}  // namespace
}  // namespace slm::kernels::test
