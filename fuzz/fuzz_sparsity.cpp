// libFuzzer target: the sparsity file reader (model/sparsity.h) on arbitrary
// bytes. Any input must either parse to finite non-negative thresholds (the
// optional head threshold included) or throw slm::Error; never crash or read
// out of bounds.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "base/error.h"
#include "model/sparsity.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const slm::model::Sparsity s =
        slm::model::Sparsity::parse(std::span<const uint8_t>(data, size), "fuzz.gguf");
    for (const auto& layer : s.thresholds)
      for (const float t : layer)
        if (!std::isfinite(t) || t < 0) std::abort();
    if (!std::isfinite(s.head_threshold) || s.head_threshold < 0) std::abort();
  } catch (const slm::Error&) {
  }
  return 0;
}
