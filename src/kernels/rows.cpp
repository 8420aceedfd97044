// RowMatrix and matvec_rows (kernels.h): output-sparse decoding over a
// weight's rows in the file's own row-major layout.
//
// Why not the packed layout: PackedMatrix interleaves kPackRows rows by
// 4-byte words, so every 64-byte line of a group's block holds a word of all
// 16 rows, and one kept row of a group reads the whole group. CATS keeps
// about half of up's rows, nearly every group has one, and nothing would be
// skipped. Plain rows are contiguous (Q4_0 at 2048 columns: 1152 bytes), so
// a cut row is a run of lines not read.
#include <algorithm>
#include <cstring>

#include "base/check.h"
#include "base/thread_pool.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

// Chunks of the kept list per thread (an atomic counter each: cheap), at
// least kMinChunkRows rows each (a row is ~1 KiB: a few per task).
constexpr int64_t kChunksPerThread = 4;
constexpr int64_t kMinChunkRows = 8;
// Kept rows prefetched ahead of the one being multiplied (every line of
// each): a kept row starts where the last one did not end, so the hardware
// prefetchers lose the stream at every row. bench_columns (TinyLlama's
// gate/up, Q4_0, gate then half of up's rows, 1 thread): 2 ahead took
// 0.65-0.79 of the time with none, 4 ahead 0.78-0.86.
constexpr int64_t kAhead = 2;

}  // namespace

bool RowMatrix::supports(DType wtype) {
  return traits(wtype).vec_dot != nullptr;
}

RowMatrix RowMatrix::copy(DType wtype, const void* w, int64_t rows, int64_t cols) {
  SLM_DCHECK(supports(wtype) && row_fits(wtype, cols));
  RowMatrix m;
  m.type_ = wtype;
  m.rows_ = rows;
  m.cols_ = cols;
  m.row_bytes_ = static_cast<size_t>(slm::row_bytes(wtype, cols));
  m.size_ = m.row_bytes_ * static_cast<size_t>(rows);
  m.bytes_ = allocate_packed(m.size_);
  std::memcpy(m.bytes_.get(), w, m.size_);
  return m;
}

void matvec_rows(const RowMatrix& w, const float* x, const int32_t* idx, int64_t n, float* y,
                 ThreadPool& pool, std::vector<uint8_t>& scratch) {
  if (n <= 0) return;
  const int64_t cols = w.cols();
  const TypeTraits& wt = traits(w.type());
  SLM_DCHECK(wt.vec_dot != nullptr);
  // x once into the weight type's vec_dot_type (Q8_0 / Q8_K; F32 in place),
  // as matmul does for one token: every y[idx[k]] is the vec_dot matmul runs.
  const auto* act = reinterpret_cast<const uint8_t*>(x);
  if (wt.vec_dot_type != DType::F32) {
    const auto act_row = static_cast<size_t>(slm::row_bytes(wt.vec_dot_type, cols));
    if (scratch.size() < act_row) scratch.resize(act_row);
    traits(wt.vec_dot_type).quantize_row(x, scratch.data(), cols);
    act = scratch.data();
  }
  const auto vec_dot = wt.vec_dot;
  const uint8_t* base = w.data();
  const size_t row = w.row_bytes();
  const int64_t wanted = std::max<int64_t>(1, pool.size() * kChunksPerThread);
  const int64_t chunk = std::max(kMinChunkRows, (n + wanted - 1) / wanted);
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  // Rows one after another, ascending: each a single forward stream (matmul.cpp
  // found interleaved row streams ~2x slower from DRAM on Zen 4).
  pool.parallel_for(n_chunks, [&](int64_t c, int) {
    const int64_t k0 = c * chunk, k1 = std::min(n, c * chunk + chunk);
    auto fetch = [&](int64_t k) {
      const uint8_t* p = base + static_cast<size_t>(idx[k]) * row;
      for (size_t b = 0; b < row; b += 64) __builtin_prefetch(p + b);
    };
    for (int64_t k = k0; k < std::min(k1, k0 + kAhead); ++k) fetch(k);
    for (int64_t k = k0; k < k1; ++k) {
      SLM_DCHECK(idx[k] >= 0 && idx[k] < w.rows());
      if (k + kAhead < k1) fetch(k + kAhead);
      vec_dot(cols, y + idx[k], base + static_cast<size_t>(idx[k]) * row, act);
    }
  });
}

}  // namespace slm::kernels
