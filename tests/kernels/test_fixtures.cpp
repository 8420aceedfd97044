// Real ggml-quantized data: small-llama-TYPE.gguf hold the weights of
// small-llama-F32.gguf quantized by llama.cpp. Dequantizing each tensor with
// our kernels must land close to the F32 tensor, which pins the block layouts
// to ggml's bit for bit (a swapped nibble or scale would be far off), and every
// ISA must dequantize the real bytes like the scalar table.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/fixtures.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"

namespace slm::kernels {
namespace {

// Largest allowed RMS(dequantized - f32) / RMS(f32) of a tensor. From the
// step size of each format on Gaussian weights (see test_reference.cpp's
// rmse_bound), with llama.cpp's importance-free quantizers.
double tensor_bound(DType t) {
  switch (t) {
    case DType::F32:
      return 0;
    case DType::F16:
      return 1e-3;
    case DType::BF16:
      return 8e-3;
    case DType::Q8_0:
      return 0.01;
    case DType::Q6_K:
      return 0.03;
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q5_K:
      return 0.07;
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q4_K:
    case DType::IQ4_NL:
      return 0.14;
    case DType::Q3_K:
      return 0.25;
    case DType::Q2_K:
      return 0.45;
    default:
      return 0;
  }
}

class Fixture : public ::testing::TestWithParam<std::string> {};

TEST_P(Fixture, DequantizedTensorsMatchF32) {
  const std::string rel = "models/small-llama-" + GetParam() + ".gguf";
  SLM_REQUIRE_FIXTURE(rel);
  SLM_REQUIRE_FIXTURE("models/small-llama-F32.gguf");
  const auto qf = gguf::File::open(test::fixture(rel));
  const auto ff = gguf::File::open(test::fixture("models/small-llama-F32.gguf"));
  int checked = 0;
  double worst = 0;
  for (const gguf::TensorInfo& ti : qf->tensors()) {
    const gguf::TensorInfo* ref = ff->find_tensor(ti.name);
    ASSERT_NE(ref, nullptr) << ti.name;
    ASSERT_EQ(ref->type, DType::F32);
    ASSERT_EQ(ti.n_elements(), ref->n_elements()) << ti.name;
    const int64_t n = ti.n_elements();
    std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n)),
        simd(static_cast<size_t>(n));
    std::memcpy(want.data(), ref->data, static_cast<size_t>(n) * 4);
    const TypeTraits& tt = traits(Isa::kScalar, ti.type);
    ASSERT_NE(tt.dequantize_row, nullptr) << ti.name << " " << dtype_name(ti.type);
    tt.dequantize_row(ti.data, got.data(), n);
    double err = 0, norm = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d =
          got[static_cast<size_t>(i)] - static_cast<double>(want[static_cast<size_t>(i)]);
      err += d * d;
      norm += static_cast<double>(want[static_cast<size_t>(i)]) * want[static_cast<size_t>(i)];
    }
    const double rel_rmse = norm > 0 ? std::sqrt(err / norm) : std::sqrt(err);
    if (ti.type != DType::F32) worst = std::max(worst, rel_rmse / tensor_bound(ti.type));
    EXPECT_LE(rel_rmse, tensor_bound(ti.type)) << ti.name << " " << dtype_name(ti.type);
    for (Isa isa : available_isas()) {
      traits(isa, ti.type).dequantize_row(ti.data, simd.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_NEAR(simd[static_cast<size_t>(i)], got[static_cast<size_t>(i)],
                    1e-6f * (std::fabs(got[static_cast<size_t>(i)]) + 1.0f))
            << isa_name(isa) << " " << ti.name;
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
  std::printf("%s: %d tensors, worst error %.2f of its bound\n", rel.c_str(), checked, worst);
}

// llama.cpp quantizes the legacy types without an importance matrix through
// its reference quantizers, whose rounding ours reproduce: same bytes.
class LegacyFixture : public Fixture {};

TEST_P(LegacyFixture, QuantizerMatchesLlamaCppBytes) {
  const std::string rel = "models/small-llama-" + GetParam() + ".gguf";
  SLM_REQUIRE_FIXTURE(rel);
  SLM_REQUIRE_FIXTURE("models/small-llama-F32.gguf");
  const auto qf = gguf::File::open(test::fixture(rel));
  const auto ff = gguf::File::open(test::fixture("models/small-llama-F32.gguf"));
  int compared = 0;
  for (const gguf::TensorInfo& ti : qf->tensors()) {
    if (ti.type != DType::Q4_0 && ti.type != DType::Q4_1 && ti.type != DType::Q5_0 &&
        ti.type != DType::Q5_1 && ti.type != DType::Q8_0)
      continue;
    const gguf::TensorInfo* ref = ff->find_tensor(ti.name);
    ASSERT_NE(ref, nullptr) << ti.name;
    std::vector<float> src(static_cast<size_t>(ref->n_elements()));
    std::memcpy(src.data(), ref->data, src.size() * 4);
    std::vector<uint8_t> ours(static_cast<size_t>(ti.n_bytes));
    traits(Isa::kScalar, ti.type).quantize_row(src.data(), ours.data(), ref->n_elements());
    EXPECT_EQ(0, std::memcmp(ours.data(), ti.data, ours.size()))
        << ti.name << " " << dtype_name(ti.type);
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

INSTANTIATE_TEST_SUITE_P(SmallLlama, Fixture,
                         ::testing::Values("F16", "BF16", "Q8_0", "Q6_K", "Q5_0", "Q5_1", "Q5_K",
                                           "Q4_0", "Q4_1", "Q4_K", "Q4_K_M", "IQ4_NL", "Q3_K",
                                           "Q2_K"));

INSTANTIATE_TEST_SUITE_P(SmallLlama, LegacyFixture,
                         ::testing::Values("Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1"));

}  // namespace
}  // namespace slm::kernels
