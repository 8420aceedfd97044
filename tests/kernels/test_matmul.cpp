// kernels::matmul: identical bits at 1 and 2 threads, agreement with a float64
// reference within the activation-quantization bound, on every ISA.
#include <gtest/gtest.h>

#include <cmath>

#include "base/thread_pool.h"
#include "kernel_test_util.h"

namespace slm::kernels {
namespace {

using test::random_floats;

struct Shape {
  int64_t rows, cols, tokens;
};

class Matmul : public ::testing::TestWithParam<DType> {};

TEST_P(Matmul, ThreadsAgreeAndMatchFloat64) {
  const DType t = GetParam();
  const int64_t bs = std::max<int64_t>(test::block_size(t), 32);
  ThreadPool one(1), two(2);
  std::vector<uint8_t> scratch;
  const Isa before = active_isa();
  for (Isa isa : available_isas()) {
    ASSERT_TRUE(set_active_isa(isa));
    for (Shape s : {Shape{1, bs, 1}, Shape{5, bs * 3, 2}, Shape{67, bs * 2, 1},
                    Shape{64, bs * 4, 17}, Shape{130, bs, 5}}) {
      const auto wf = random_floats(s.rows * s.cols, 11, 0.05f);
      const auto w = test::quantize(t, wf);
      const auto x = random_floats(s.tokens * s.cols, 12);
      std::vector<float> y1(static_cast<size_t>(s.rows * s.tokens)), y2(y1.size(), -1.0f);
      matmul(t, w.data(), s.rows, s.cols, x.data(), s.tokens, y1.data(), one, scratch);
      matmul(t, w.data(), s.rows, s.cols, x.data(), s.tokens, y2.data(), two, scratch);
      ASSERT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * 4))
          << isa_name(isa) << " " << dtype_name(t);

      // Reference: dequantized weights times the float activations, in
      // float64. Error budget: activation rounding (half a step of
      // amax/127 per element, plus the fp16 rounding of Q8_0's scale) times
      // |w|, plus float summation.
      const auto wd = test::dequantize(t, w.data(), s.rows * s.cols);
      const bool quantized_act = traits(t).vec_dot_type != DType::F32;
      const int64_t act_block = traits(t).vec_dot_type == DType::Q8_K ? 256 : 32;
      for (int64_t tok = 0; tok < s.tokens; ++tok) {
        const float* xr = x.data() + tok * s.cols;
        for (int64_t r = 0; r < s.rows; ++r) {
          double ref = 0, bound = 0;
          for (int64_t c0 = 0; c0 < s.cols; c0 += act_block) {
            float amax = 0;
            for (int64_t c = c0; c < c0 + act_block; ++c) amax = std::max(amax, std::fabs(xr[c]));
            for (int64_t c = c0; c < c0 + act_block; ++c) {
              const double wv = wd[static_cast<size_t>(r * s.cols + c)];
              ref += wv * xr[c];
              bound += std::fabs(wv) * (quantized_act ? amax * (0.5 / 127 + 1.0 / 2048) : 0.0) +
                       std::fabs(wv * xr[c]) * 1e-5;
            }
          }
          ASSERT_NEAR(y1[static_cast<size_t>(tok * s.rows + r)], ref, bound + 1e-20)
              << isa_name(isa) << " " << dtype_name(t) << " r=" << r << " tok=" << tok;
        }
      }
    }
  }
  set_active_isa(before);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, Matmul, ::testing::ValuesIn(test::weight_types()),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(MatmulEdge, EmptyShapes) {
  ThreadPool pool(2);
  std::vector<uint8_t> scratch;
  std::vector<float> y(4, 7.0f);
  matmul(DType::Q4_0, nullptr, 0, 32, nullptr, 1, y.data(), pool, scratch);
  EXPECT_EQ(y[0], 7.0f);
  matmul(DType::F32, nullptr, 4, 0, nullptr, 1, y.data(), pool, scratch);
  EXPECT_EQ(y[3], 0.0f);
}

}  // namespace
}  // namespace slm::kernels
