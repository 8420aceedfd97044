// PackedMatrix: the packed tiles of every ISA give the scalar packed tile's
// bits, at 1 and 2 threads, for ragged row counts and token tails; and they
// agree with the plain (unpacked) scalar matmul up to float rounding.
#include <gtest/gtest.h>

#include <cmath>

#include "base/thread_pool.h"
#include "kernel_test_util.h"

namespace slm::kernels {
namespace {

using test::random_floats;

class Packed : public ::testing::TestWithParam<DType> {};

TEST_P(Packed, EveryIsaMatchesScalarTileAndPlainMatmul) {
  const DType t = GetParam();
  ASSERT_TRUE(PackedMatrix::has_layout(t));
  ThreadPool one(1), two(2);
  std::vector<uint8_t> scratch;
  const Isa before = active_isa();
  struct Shape {
    int64_t rows, cols, tokens;
  };
  const int64_t bs = test::block_size(t);  // 32, or 256 for the K-quants
  for (Shape s : {Shape{1, bs, 1}, Shape{16, 2 * bs, 1}, Shape{17, 3 * bs, 3}, Shape{48, 7 * bs, 8},
                  Shape{100, 8 * bs, 19}, Shape{33, 4 * bs, 9}}) {
    const auto wf = random_floats(s.rows * s.cols, 21, 0.05f);
    const auto w = test::quantize(t, wf);
    const auto x = random_floats(s.tokens * s.cols, 22);
    const PackedMatrix p = PackedMatrix::pack(t, w.data(), s.rows, s.cols);
    ASSERT_FALSE(p.empty());
    const size_t n = static_cast<size_t>(s.rows * s.tokens);

    ASSERT_TRUE(set_active_isa(Isa::kScalar));
    std::vector<float> ref(n), plain(n);
    matmul(p, x.data(), s.tokens, ref.data(), one, scratch);
    matmul(t, w.data(), s.rows, s.cols, x.data(), s.tokens, plain.data(), one, scratch);
    for (size_t i = 0; i < n; ++i)
      ASSERT_NEAR(ref[i], plain[i], 1e-5 * (std::fabs(plain[i]) + 1)) << dtype_name(t) << " " << i;

    for (Isa isa : available_isas()) {
      ASSERT_TRUE(set_active_isa(isa));
      for (ThreadPool* pool : {&one, &two}) {
        std::vector<float> y(n, -1.0f);
        matmul(p, x.data(), s.tokens, y.data(), *pool, scratch);
        ASSERT_EQ(0, std::memcmp(y.data(), ref.data(), n * 4))
            << isa_name(isa) << " " << dtype_name(t) << " rows=" << s.rows << " tokens=" << s.tokens
            << " threads=" << pool->size();
      }
    }
  }
  set_active_isa(before);
}

INSTANTIATE_TEST_SUITE_P(PackedTypes, Packed,
                         ::testing::Values(DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K,
                                           DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(PackedMatrix, LayoutsAndSizes) {
  EXPECT_FALSE(PackedMatrix::has_layout(DType::F32));
  EXPECT_TRUE(PackedMatrix::pack(DType::F32, nullptr, 4, 32).empty());
  const auto w = test::quantize(DType::Q4_0, random_floats(20 * 64, 3));
  const PackedMatrix p = PackedMatrix::pack(DType::Q4_0, w.data(), 20, 64);
  EXPECT_EQ(p.rows(), 20);
  EXPECT_EQ(p.cols(), 64);
  EXPECT_EQ(p.size_bytes(), 2u * 2u * 16u * 18u);  // 2 groups of 16 rows x 2 blocks
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p.data()) % 64, 0u);
}

}  // namespace
}  // namespace slm::kernels
