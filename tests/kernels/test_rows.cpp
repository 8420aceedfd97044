// kernels::matvec_rows over a RowMatrix (output-sparse decoding, CATS's up):
// on every ISA and weight type, the listed outputs equal the plain matmul's
// for those rows bit for bit (the same vec_dot), unlisted outputs are left
// alone, 1 and 2 threads agree, and the result agrees with the scalar
// table's (the oracle) within the activation-quantization bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "base/thread_pool.h"
#include "kernel_test_util.h"

namespace slm::kernels {
namespace {

using test::random_floats;

// Kept-row lists of a matrix of `rows` rows: none, all, every other, one
// (the last), and a random half (CATS's typical share), ascending.
std::vector<std::vector<int32_t>> row_lists(int64_t rows, uint32_t seed) {
  std::vector<std::vector<int32_t>> lists(5);
  std::mt19937 rng(seed);
  for (int32_t r = 0; r < rows; ++r) {
    lists[1].push_back(r);
    if (r % 2 == 1) lists[2].push_back(r);
    if (rng() % 2 == 0) lists[4].push_back(r);
  }
  lists[3].push_back(static_cast<int32_t>(rows - 1));
  return lists;
}

class Rows : public ::testing::TestWithParam<DType> {};

TEST_P(Rows, ListedRowsEqualMatmulAndTheScalarOracle) {
  const DType t = GetParam();
  const int64_t bs = std::max<int64_t>(test::block_size(t), 32);
  ThreadPool one(1), two(2);
  std::vector<uint8_t> scratch;
  const Isa before = active_isa();
  constexpr float kUntouched = -7.25f;
  for (const auto& [rows, cols] :
       {std::pair<int64_t, int64_t>{1, bs}, {67, bs * 3}, {130, bs * 8}}) {
    const auto wf = random_floats(rows * cols, 21, 0.05f);
    const auto w = test::quantize(t, wf);
    const auto x = random_floats(cols, 22);
    ASSERT_TRUE(set_active_isa(Isa::kScalar));
    const RowMatrix m = RowMatrix::copy(t, w.data(), rows, cols);
    ASSERT_EQ(m.size_bytes(), w.size());
    ASSERT_EQ(0, std::memcmp(m.data(), w.data(), w.size()));
    std::vector<float> oracle(static_cast<size_t>(rows));
    const auto all = row_lists(rows, 1)[1];
    matvec_rows(m, x.data(), all.data(), rows, oracle.data(), one, scratch);
    // The oracle's error budget per row (as test_matmul's): half a step of
    // the block's amax / 127 per activation (plus the fp16 rounding of its
    // scale) times |w|, and float summation; twice that between two ISAs.
    const auto wd = test::dequantize(t, w.data(), rows * cols);
    const bool quantized_act = traits(t).vec_dot_type != DType::F32;
    const int64_t act_block = traits(t).vec_dot_type == DType::Q8_K ? 256 : 32;
    std::vector<double> bound(static_cast<size_t>(rows), 1e-20);
    const float* xp = x.data();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c0 = 0; c0 < cols; c0 += act_block) {
        float amax = 0;
        for (int64_t c = c0; c < c0 + act_block; ++c) amax = std::max(amax, std::fabs(xp[c]));
        for (int64_t c = c0; c < c0 + act_block; ++c) {
          const double wv = wd[static_cast<size_t>(r * cols + c)];
          bound[static_cast<size_t>(r)] +=
              2 * (std::fabs(wv) * (quantized_act ? amax * (0.5 / 127 + 1.0 / 2048) : 0.0) +
                   std::fabs(wv * xp[c]) * 1e-5);
        }
      }
    for (Isa isa : available_isas()) {
      ASSERT_TRUE(set_active_isa(isa));
      std::vector<float> dense(static_cast<size_t>(rows));
      matmul(t, w.data(), rows, cols, x.data(), 1, dense.data(), one, scratch);
      for (const std::vector<int32_t>& idx : row_lists(rows, 2)) {
        const auto n = static_cast<int64_t>(idx.size());
        std::vector<float> y1(static_cast<size_t>(rows), kUntouched), y2 = y1;
        matvec_rows(m, x.data(), idx.data(), n, y1.data(), one, scratch);
        matvec_rows(m, x.data(), idx.data(), n, y2.data(), two, scratch);
        ASSERT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * 4))
            << isa_name(isa) << " " << dtype_name(t) << " kept " << n;
        std::vector<bool> listed(static_cast<size_t>(rows));
        for (const int32_t r : idx) listed[static_cast<size_t>(r)] = true;
        for (int64_t r = 0; r < rows; ++r) {
          const size_t i = static_cast<size_t>(r);
          if (!listed[i]) {
            ASSERT_EQ(y1[i], kUntouched) << isa_name(isa) << " " << dtype_name(t) << " r=" << r;
            continue;
          }
          ASSERT_EQ(0, std::memcmp(&y1[i], &dense[i], 4))
              << isa_name(isa) << " " << dtype_name(t) << " r=" << r << ": " << y1[i]
              << " != " << dense[i];
          ASSERT_NEAR(y1[i], oracle[i], bound[i])
              << isa_name(isa) << " " << dtype_name(t) << " r=" << r;
        }
      }
    }
  }
  set_active_isa(before);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, Rows, ::testing::ValuesIn(test::weight_types()),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace slm::kernels
