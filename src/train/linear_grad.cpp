// linear_grad.h: transposed products over stored weights and the LoRA backward.
#include "train/linear_grad.h"

#include <algorithm>
#include <cstring>

#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "train/lora_params.h"

namespace slm::train {

namespace {

// Dequantizes columns [c0, c0 + nc) of row r (c0, nc multiples of the block size).
void dequantize_stripe(const backend::MatrixView& w, int64_t r, int64_t c0, int64_t nc,
                       float* dst) {
  const DTypeInfo& info = dtype_info(w.type);
  const uint8_t* row =
      w.data + static_cast<size_t>(r) * static_cast<size_t>(row_bytes(w.type, w.cols));
  const uint8_t* src = row + c0 / info.block_size * info.block_bytes;
  if (w.type == DType::F32) {
    std::memcpy(dst, src, static_cast<size_t>(nc) * sizeof(float));
    return;
  }
  kernels::traits(w.type).dequantize_row(src, dst, nc);
}

// out[t] += a[t] w for t < nt (kernels::axpy_rows_n), skipping the rows of a
// that are all zero (tokens outside the loss, rows near the output): the
// kernel runs on each maximal run of non-zero rows.
void axpy_nonzero_rows(kernels::AxpyRowsNFn f, float* out, int64_t ldo, const float* a, int64_t lda,
                       int64_t nt, int64_t nr, const float* w, int64_t ld, int64_t nc) {
  const auto zero = [&](int64_t t) {
    const float* g = a + t * lda;
    return std::all_of(g, g + nr, [](float v) { return v == 0.0f; });
  };
  for (int64_t t = 0; t < nt;) {
    if (zero(t)) {
      ++t;
      continue;
    }
    int64_t e = t + 1;
    while (e < nt && !zero(e)) ++e;
    f(out + t * ldo, ldo, a + t * lda, lda, e - t, nr, w, ld, nc);
    t = e;
  }
}

// dx (= or +=) dy W, W [rows][cols] of type t read by read(r, c0, nc, dst).
template <typename Read>
void input_grad_of(DType t, int64_t rows, int64_t cols, const Read& read, const float* dy,
                   int64_t n, float* dx, bool accumulate, ThreadPool& pool) {
  const int64_t bs = dtype_info(t).block_size;
  // Column stripes of whole blocks, 128 (the widest step of the SIMD
  // axpy_rows) to 256 values, about 8 per thread where cols allow. Each task
  // dequantizes its stripe once for all of its tokens; token blocks (which
  // dequantize the same stripe again) only when stripes alone would leave
  // threads idle. Each dx element sums over rows in the same order whatever
  // the split.
  const int64_t threads = std::max<int64_t>(1, pool.size());
  const int64_t want_stripe = (cols + 8 * threads - 1) / (8 * threads);
  const int64_t stripe =
      std::min(cols, std::max(bs, (std::clamp<int64_t>(want_stripe, 128, 256) + bs - 1) / bs * bs));
  const int64_t n_stripes = (cols + stripe - 1) / stripe;
  const int64_t want = 2 * threads;
  const int64_t n_tblocks =
      n_stripes >= want
          ? 1
          : std::clamp<int64_t>((want + n_stripes - 1) / n_stripes, 1, std::max<int64_t>(1, n / 8));
  const int64_t tblock = (n + n_tblocks - 1) / n_tblocks;
  // 32 rows a call: the per-call overhead and the all-zero check stay small
  // next to 32 x nc FMAs; the buffer (32 x 256 floats at most) stays in L1/L2.
  constexpr int64_t kRowBlock = 32;
  const kernels::AxpyRowsNFn axpy = kernels::axpy_rows_n();
  pool.parallel_for(n_stripes * n_tblocks, [&](int64_t task, int) {
    const int64_t c0 = (task % n_stripes) * stripe, nc = std::min(stripe, cols - c0);
    const int64_t t0 = (task / n_stripes) * tblock, t1 = std::min(n, t0 + tblock);
    if (t0 >= t1) return;
    std::vector<float> buf(static_cast<size_t>(kRowBlock * nc));
    if (!accumulate)
      for (int64_t t = t0; t < t1; ++t)
        std::fill(dx + t * cols + c0, dx + t * cols + c0 + nc, 0.0f);
    for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
      const int64_t nr = std::min(kRowBlock, rows - r0);
      for (int64_t i = 0; i < nr; ++i) read(r0 + i, c0, nc, &buf[static_cast<size_t>(i * nc)]);
      axpy_nonzero_rows(axpy, dx + t0 * cols + c0, cols, dy + t0 * rows + r0, rows, t1 - t0, nr,
                        buf.data(), nc, nc);
    }
  });
}

}  // namespace

void input_grad(const backend::MatrixView& w, const float* dy, int64_t n, float* dx,
                bool accumulate, ThreadPool& pool) {
  const auto read = [&w](int64_t r, int64_t c0, int64_t nc, float* dst) {
    dequantize_stripe(w, r, c0, nc, dst);
  };
  input_grad_of(w.type, w.rows, w.cols, read, dy, n, dx, accumulate, pool);
}

void input_grad(const backend::Backend& be, const backend::Linear& w, const float* dy, int64_t n,
                float* dx, bool accumulate, ThreadPool& pool) {
  const auto read = [&be, &w](int64_t r, int64_t c0, int64_t nc, float* dst) {
    be.dequantize_stripe(w, r, c0, nc, dst);
  };
  input_grad_of(w.view.type, w.rows(), w.cols(), read, dy, n, dx, accumulate, pool);
}

void weight_grad(const float* dy, const float* x, int64_t n, int64_t rows, int64_t cols, float* dw,
                 std::vector<float>& tmp, ThreadPool& pool) {
  // dy transposed [rows][n], so that each output row is one rank-n update
  // dw[r] += dyT[r] . x through axpy_rows (x stays in cache across rows).
  if (tmp.size() < static_cast<size_t>(rows * n)) tmp.resize(static_cast<size_t>(rows * n));
  float* dyt = tmp.data();
  constexpr int64_t kRowsPerTask = 16;
  const int64_t n_row_tasks = (rows + kRowsPerTask - 1) / kRowsPerTask;
  pool.parallel_for(n_row_tasks, [&](int64_t task, int) {
    const int64_t r0 = task * kRowsPerTask, r1 = std::min(rows, r0 + kRowsPerTask);
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t t = 0; t < n; ++t) dyt[r * n + t] = dy[t * rows + r];
  });
  // Column chunks too when there are few rows (LoRA's A has rank rows), so
  // that every thread gets work; each dw element still sums over t in order.
  const int64_t threads = std::max<int64_t>(1, pool.size());
  const int64_t n_col_tasks =
      n_row_tasks >= 4 * threads
          ? 1
          : std::clamp<int64_t>((4 * threads + n_row_tasks - 1) / n_row_tasks, 1,
                                std::max<int64_t>(1, cols / 64));
  const int64_t chunk = (cols + n_col_tasks - 1) / n_col_tasks;
  const kernels::AxpyRowsNFn axpy = kernels::axpy_rows_n();
  pool.parallel_for(n_row_tasks * n_col_tasks, [&](int64_t task, int) {
    const int64_t rt = task / n_col_tasks, c0 = (task % n_col_tasks) * chunk;
    const int64_t nc = std::min(chunk, cols - c0);
    if (nc <= 0) return;
    const int64_t r0 = rt * kRowsPerTask, r1 = std::min(rows, r0 + kRowsPerTask);
    axpy_nonzero_rows(axpy, dw + r0 * cols + c0, cols, dyt + r0 * n, n, r1 - r0, n, x + c0, cols,
                      nc);
  });
}

void lora_forward(const backend::Backend& be, const LoraPairParams& p, int64_t e, float scale,
                  const float* x, int64_t n, float* y, float* u, std::vector<float>& bt,
                  std::vector<float>& d, backend::Workspace& ws, ThreadPool& pool) {
  be.linear(p.a_linear(e), x, n, u, ws);
  // B u as a rank-r update of blocks of output rows through B^T [r][n_out]
  // (as n_out dot products of r = 16 values, calls would cost more than math).
  const int64_t r = p.rank, no = p.n_out;
  if (bt.size() < static_cast<size_t>(r * no)) bt.resize(static_cast<size_t>(r * no));
  if (d.size() < static_cast<size_t>(n * no)) d.resize(static_cast<size_t>(n * no));
  const float* b = p.b_of(e);
  for (int64_t o = 0; o < no; ++o)
    for (int64_t k = 0; k < r; ++k) bt[static_cast<size_t>(k * no + o)] = b[o * r + k];
  const kernels::AxpyRowsNFn axpy = kernels::axpy_rows_n();
  constexpr int64_t kTok = 12;
  pool.parallel_for((n + kTok - 1) / kTok, [&](int64_t blk, int) {
    const int64_t t0 = blk * kTok, nt = std::min(kTok, n - t0);
    float* dt = &d[static_cast<size_t>(t0 * no)];
    std::fill(dt, dt + nt * no, 0.0f);
    axpy(dt, no, u + t0 * r, r, nt, r, bt.data(), no, no);
    float* yt = y + t0 * no;
    for (int64_t i = 0; i < nt * no; ++i) yt[i] += scale * dt[i];
  });
}

void lora_backward(LoraPairParams& p, int64_t e, float scale, const float* x, const float* u,
                   const float* dy, int64_t n, float* dx, std::vector<float>& tmp,
                   std::vector<float>& wg_tmp, ThreadPool& pool) {
  const int64_t r = p.rank, ni = p.n_in, no = p.n_out;
  // grad_b[o][k] += scale * sum_t dy[t][o] u[t][k]: weight_grad over the
  // scaled u (rank-n row updates through axpy_rows rather than scalar loops).
  if (tmp.size() < static_cast<size_t>(2 * n * r)) tmp.resize(static_cast<size_t>(2 * n * r));
  float* g = tmp.data();
  float* us = g + n * r;
  for (int64_t i = 0; i < n * r; ++i) us[i] = scale * u[i];
  weight_grad(dy, us, n, no, r, p.grad_b_of(e), wg_tmp, pool);
  // g[t][k] = scale * sum_o dy[t][o] b[o][k]: row t of dy times B [no][r].
  // Blocks of kTok rows, so that each kernel call shares its loads of B / A.
  const kernels::AxpyRowsNFn axpy = kernels::axpy_rows_n();
  constexpr int64_t kTok = 12;
  const int64_t n_blocks = (n + kTok - 1) / kTok;
  pool.parallel_for(n_blocks, [&](int64_t b, int) {
    const int64_t t0 = b * kTok, nt = std::min(kTok, n - t0);
    float* gt = g + t0 * r;
    std::fill(gt, gt + nt * r, 0.0f);
    axpy(gt, r, dy + t0 * no, no, nt, no, p.b_of(e), r, r);
    for (int64_t k = 0; k < nt * r; ++k) gt[k] *= scale;
  });
  // grad_a[k][i] += sum_t g[t][k] x[t][i]
  weight_grad(g, x, n, r, ni, p.grad_a_of(e), wg_tmp, pool);
  // dx[t][i] += sum_k g[t][k] a[k][i]
  pool.parallel_for(n_blocks, [&](int64_t b, int) {
    const int64_t t0 = b * kTok, nt = std::min(kTok, n - t0);
    axpy(dx + t0 * ni, ni, g + t0 * r, r, nt, r, p.a_of(e), ni, ni);
  });
}

}  // namespace slm::train
