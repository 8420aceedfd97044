// Helpers shared by the kernel tests: random inputs, typed buffers, and
// float64 references built from the scalar table.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "base/dtype.h"
#include "base/fp16.h"
#include "kernels/blocks.h"
#include "kernels/kernels.h"

namespace slm::kernels::test {

// Every type with kernels, weight types first.
inline const std::vector<DType>& weight_types() {
  static const std::vector<DType> types = {
      DType::F32,  DType::F16,    DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
      DType::Q8_0, DType::IQ4_NL, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  return types;
}

inline int64_t block_size(DType t) {
  return dtype_info(t).block_size;
}

inline std::vector<float> random_floats(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

inline std::vector<uint8_t> quantize(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> out(static_cast<size_t>(row_bytes(t, static_cast<int64_t>(x.size()))));
  traits(Isa::kScalar, t).quantize_row(x.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}

inline std::vector<float> dequantize(DType t, const void* data, int64_t n, Isa isa = Isa::kScalar) {
  std::vector<float> out(static_cast<size_t>(n));
  traits(isa, t).dequantize_row(data, out.data(), n);
  return out;
}

// Overwrites the half-precision scale fields of random-byte blocks with finite
// values of magnitude in [lo, hi] so random bytes form valid, bounded blocks
// (every quant bit pattern, including ones our quantizers never emit).
inline void sanitize_scales(DType t, std::vector<uint8_t>& bytes, std::mt19937& rng,
                            float lo = 1e-3f, float hi = 1.0f) {
  std::uniform_real_distribution<float> mag(lo, hi);
  std::bernoulli_distribution neg(0.5);
  auto h = [&](bool allow_negative) {
    const float v = mag(rng);
    return f32_to_fp16(allow_negative && neg(rng) ? -v : v);
  };
  const int64_t bb = dtype_info(t).block_bytes;
  const int64_t n_blocks = static_cast<int64_t>(bytes.size()) / bb;
  for (int64_t i = 0; i < n_blocks; ++i) {
    uint8_t* b = bytes.data() + i * bb;
    auto put = [&](size_t offset, uint16_t v) { std::memcpy(b + offset, &v, 2); };
    switch (t) {
      case DType::F16:
        put(0, h(true));
        break;
      case DType::BF16: {
        const float v = (neg(rng) ? -1.0f : 1.0f) * mag(rng);
        put(0, f32_to_bf16(v));
        break;
      }
      case DType::F32: {
        const float v = (neg(rng) ? -1.0f : 1.0f) * mag(rng);
        std::memcpy(b, &v, 4);
        break;
      }
      case DType::Q4_0:
      case DType::Q5_0:
      case DType::Q8_0:
      case DType::IQ4_NL:
        put(0, h(true));
        break;
      case DType::Q4_1:
      case DType::Q5_1:
        put(0, h(false));
        put(2, h(true));
        break;
      case DType::Q2_K:
        put(offsetof(BlockQ2_K, d), h(true));
        put(offsetof(BlockQ2_K, dmin), h(true));
        break;
      case DType::Q3_K:
        put(offsetof(BlockQ3_K, d), h(true));
        break;
      case DType::Q4_K:
      case DType::Q5_K:
        put(0, h(true));
        put(2, h(true));
        break;
      case DType::Q6_K:
        put(offsetof(BlockQ6_K, d), h(true));
        break;
      default:
        break;
    }
  }
}

inline std::vector<uint8_t> random_blocks(DType t, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(static_cast<size_t>(row_bytes(t, n)));
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  sanitize_scales(t, bytes, rng);
  return bytes;
}

// Activation row in t's vec_dot_type, made by the scalar quantizer.
inline std::vector<uint8_t> activation(DType t, const std::vector<float>& x) {
  const DType at = traits(Isa::kScalar, t).vec_dot_type;
  if (at == DType::F32) {
    std::vector<uint8_t> out(x.size() * 4);
    std::memcpy(out.data(), x.data(), out.size());
    return out;
  }
  return quantize(at, x);
}

// Float64 dot of two float rows and sum of |products| (the scale of rounding).
struct Dot {
  double value = 0;
  double magnitude = 0;
};
inline Dot dot64(const std::vector<float>& a, const std::vector<float>& b) {
  Dot d;
  for (size_t i = 0; i < a.size(); ++i) {
    d.value += static_cast<double>(a[i]) * b[i];
    d.magnitude += std::fabs(static_cast<double>(a[i]) * b[i]);
  }
  return d;
}

}  // namespace slm::kernels::test
