// Column copies of weight matrices for input-sparse decoding (kernels.h
// ColumnMatrix, matvec_columns) and the scalar axpy_cols oracles.
#include <algorithm>
#include <cstring>

#include "base/check.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

// Each product rounded, then added, kept row after kept row.
void axpy_cols_q8_0(float* y, int64_t nb, const uint8_t* base, size_t row_bytes, const int32_t* idx,
                    const float* a, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    const auto* b =
        reinterpret_cast<const BlockQ8_0*>(base + static_cast<size_t>(idx[k]) * row_bytes);
    for (int64_t j = 0; j < nb; ++j) {
      const float s = a[k] * fp16_to_f32(b[j].d);
      for (int i = 0; i < kQK32; ++i) y[j * kQK32 + i] += s * static_cast<float>(b[j].qs[i]);
    }
  }
}

void axpy_cols_q4_0(float* y, int64_t nb, const uint8_t* base, size_t row_bytes, const int32_t* idx,
                    const float* a, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    const auto* b =
        reinterpret_cast<const BlockQ4_0*>(base + static_cast<size_t>(idx[k]) * row_bytes);
    for (int64_t j = 0; j < nb; ++j) {
      const float s = a[k] * fp16_to_f32(b[j].d);
      float* yj = y + j * kQK32;
      for (int i = 0; i < kQK32 / 2; ++i) {
        yj[i] += s * static_cast<float>((b[j].qs[i] & 0x0F) - 8);
        yj[i + kQK32 / 2] += s * static_cast<float>((b[j].qs[i] >> 4) - 8);
      }
    }
  }
}

// Output blocks per task: enough to amortise a task, few enough to balance.
constexpr int64_t kBlocksPerTask = 8;
// Kept inputs per pass over a task's outputs: their a values and indices
// stay in registers' reach and y in L1.
constexpr int64_t kRowsPerPass = 256;

}  // namespace

void fill_scalar_columns(TypeTable& t) {
  t.axpy_cols[static_cast<int>(DType::Q8_0)] = axpy_cols_q8_0;
  t.axpy_cols[static_cast<int>(DType::Q4_0)] = axpy_cols_q4_0;
}

bool ColumnMatrix::supports(DType wtype, int64_t rows) {
  return (wtype == DType::Q8_0 || wtype == DType::Q4_0) && rows > 0 && rows % kQK32 == 0;
}

ColumnMatrix ColumnMatrix::build(DType wtype, const void* w, int64_t rows, int64_t cols) {
  SLM_DCHECK(supports(wtype, rows));
  ColumnMatrix m;
  m.type_ = wtype;
  m.rows_ = rows;
  m.cols_ = cols;
  m.row_bytes_ = static_cast<size_t>(slm::row_bytes(wtype, rows));
  m.bytes_.resize(m.row_bytes_ * static_cast<size_t>(cols));
  const TypeTraits& tt = traits(Isa::kScalar, wtype);
  const size_t src_row = static_cast<size_t>(slm::row_bytes(wtype, cols));
  const size_t block_bytes = m.row_bytes_ / static_cast<size_t>(rows / kQK32);
  // 32 source rows at a time: dequantized [32][cols], then each column's 32
  // values become one block of the copy's row for that column.
  std::vector<float> tile(static_cast<size_t>(kQK32 * cols));
  float col[kQK32];
  for (int64_t r0 = 0; r0 < rows; r0 += kQK32) {
    for (int64_t r = 0; r < kQK32; ++r)
      tt.dequantize_row(static_cast<const uint8_t*>(w) + static_cast<size_t>(r0 + r) * src_row,
                        tile.data() + r * cols, cols);
    for (int64_t c = 0; c < cols; ++c) {
      for (int64_t r = 0; r < kQK32; ++r) col[r] = tile[static_cast<size_t>(r * cols + c)];
      tt.quantize_row(col,
                      m.bytes_.data() + static_cast<size_t>(c) * m.row_bytes_ +
                          static_cast<size_t>(r0 / kQK32) * block_bytes,
                      kQK32);
    }
  }
  return m;
}

void matvec_columns(const ColumnMatrix& w, const float* x, const int32_t* idx, int64_t n, float* y,
                    ThreadPool& pool, std::vector<float>& xs) {
  const int64_t nb = w.rows() / kQK32;
  if (xs.size() < static_cast<size_t>(n)) xs.resize(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) xs[static_cast<size_t>(k)] = x[idx[k]];
  const AxpyColsFn f = axpy_cols(w.type());
  const size_t block_bytes = w.row_bytes() / static_cast<size_t>(nb);
  const int64_t n_tasks = (nb + kBlocksPerTask - 1) / kBlocksPerTask;
  pool.parallel_for(n_tasks, [&](int64_t t, int) {
    const int64_t b0 = t * kBlocksPerTask, b1 = std::min(nb, b0 + kBlocksPerTask);
    float* yt = y + b0 * kQK32;
    std::fill(yt, yt + (b1 - b0) * kQK32, 0.0f);
    for (int64_t k0 = 0; k0 < n; k0 += kRowsPerPass)
      f(yt, b1 - b0, w.data() + static_cast<size_t>(b0) * block_bytes, w.row_bytes(), idx + k0,
        xs.data() + k0, std::min(kRowsPerPass, n - k0));
  });
}

}  // namespace slm::kernels
