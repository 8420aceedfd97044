// Scalar reference kernels of the float weight types and of LoRA's F16 factors. Activations stay
// F32 (vec_dot_type F32), so a dot product converts only the weight side.
#include <cstring>

#include "base/fp16.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

void copy_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}
void copy_to_f32(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}

void vec_dot_f32(int64_t n, float* s, const void* w, const void* a) {
  const auto* x = static_cast<const float*>(w);
  const auto* y = static_cast<const float*>(a);
  double sum = 0;  // the oracle accumulates in double; SIMD versions in float lanes
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * y[i];
  *s = static_cast<float>(sum);
}

template <float (*kToF32)(uint16_t)>
void dequantize_16(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = kToF32(x[i]);
}

template <uint16_t (*kFromF32)(float)>
void quantize_16(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) y[i] = kFromF32(src[i]);
}

template <float (*kToF32)(uint16_t)>
void vec_dot_16(int64_t n, float* s, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const float*>(a);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(kToF32(x[i])) * y[i];
  *s = static_cast<float>(sum);
}

// The oracle: each product rounded, then added, row after row.
void axpy_rows_scalar(float* out, const float* a, int64_t nr, const float* w, int64_t ld,
                      int64_t nc) {
  for (int64_t i = 0; i < nr; ++i) {
    const float ai = a[i];
    const float* wi = w + i * ld;
    for (int64_t c = 0; c < nc; ++c) out[c] += ai * wi[c];
  }
}

void axpy_rows_n_scalar(float* out, int64_t ldo, const float* a, int64_t lda, int64_t nt,
                        int64_t nr, const float* w, int64_t ld, int64_t nc) {
  for (int64_t t = 0; t < nt; ++t) axpy_rows_scalar(out + t * ldo, a + t * lda, nr, w, ld, nc);
}

// LoRA products (kernels.h): each sum in double, rounded once.
void lora_shrink(const uint16_t* a, int64_t n_in, int64_t r, const float* scale, int64_t k0,
                 int64_t k1, const float* x, int64_t m, float* t) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t k = k0; k < k1; ++k) {
      double sum = 0;
      for (int64_t c = 0; c < n_in; ++c)
        sum += static_cast<double>(fp16_to_f32(a[k * n_in + c])) * x[i * n_in + c];
      t[i * r + k] = static_cast<float>(sum * scale[k]);
    }
}

void lora_expand(const uint16_t* bt, int64_t n_out, int64_t r, const float* t, int64_t m,
                 int64_t j0, int64_t j1, float* y) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = j0; j < j1; ++j) {
      double sum = y[i * n_out + j];
      const uint16_t* block = bt + j / kLoraCols * r * kLoraCols + j % kLoraCols;
      for (int64_t k = 0; k < r; ++k)
        sum += static_cast<double>(t[i * r + k]) * fp16_to_f32(block[k * kLoraCols]);
      y[i * n_out + j] = static_cast<float>(sum);
    }
}

// 8-bit factors (kernels.h LoraQ8Kernels): each value float(q) * d rounded
// to float, as the SIMD kernels make it; sums in double.
void lora_shrink_q8(const int8_t* a, const float* ad, int64_t n_in, int64_t r, const float* scale,
                    int64_t k0, int64_t k1, const float* x, int64_t m, float* t) {
  const int64_t groups = lora_groups_a(n_in);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t k = k0; k < k1; ++k) {
      double sum = 0;
      for (int64_t c = 0; c < n_in; ++c) {
        const float v = static_cast<float>(a[k * n_in + c]) * ad[k * groups + c / kLoraGroupA];
        sum += static_cast<double>(v) * x[i * n_in + c];
      }
      t[i * r + k] = static_cast<float>(sum * scale[k]);
    }
}

void lora_expand_q8(const int8_t* bt, const float* bd, int64_t n_out, int64_t r, const float* t,
                    int64_t m, int64_t j0, int64_t j1, float* y) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = j0; j < j1; ++j) {
      double sum = y[i * n_out + j];
      const int64_t jb = j / kLoraCols;
      const int8_t* block = bt + jb * r * kLoraCols + j % kLoraCols;
      for (int64_t k = 0; k < r; ++k) {
        const float v = static_cast<float>(block[k * kLoraCols]) * bd[jb * r + k];
        sum += static_cast<double>(t[i * r + k]) * v;
      }
      y[i * n_out + j] = static_cast<float>(sum);
    }
}

}  // namespace

void fill_scalar_float(TypeTable& t) {
  t.axpy_rows = axpy_rows_scalar;
  t.axpy_rows_n = axpy_rows_n_scalar;
  t[DType::F32] = {DType::F32, copy_f32, copy_to_f32, vec_dot_f32};
  t[DType::F16] = {DType::F32, dequantize_16<fp16_to_f32>, quantize_16<f32_to_fp16>,
                   vec_dot_16<fp16_to_f32>};
  t[DType::BF16] = {DType::F32, dequantize_16<bf16_to_f32>, quantize_16<f32_to_bf16>,
                    vec_dot_16<bf16_to_f32>};
  t.lora = {lora_shrink, lora_expand};
  t.lora_q8 = {lora_shrink_q8, lora_expand_q8};
}

}  // namespace slm::kernels
