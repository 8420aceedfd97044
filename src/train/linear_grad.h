// Gradients through matrix products for training.
//  - input_grad: dx = dy W through a frozen weight in its stored form (any
//    GGUF type): row blocks are dequantized on the fly, a column stripe per
//    task, so no dequantized copy of the model is ever made. Through a
//    Linear, the stripes come from the backend's prepared (packed) form, so
//    the file pages it released at load are not faulted back in (which
//    held a second copy of the model in memory while training).
//  - LoRA pair: y += s B (A x); its backward gives dA, dB (accumulated) and
//    the input gradient s A^T (B^T dy) (accumulated into dx).
// input_grad's inner step is kernels::axpy_rows_n (run-time ISA choice, the
// scalar version its test oracle); the LoRA products are scalar loops the
// compiler vectorises. Work is spread over the pool.
// Thread-safety: one caller per pool.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace slm {
class ThreadPool;
}

namespace slm::train {

struct LoraPairParams;

// dx[t][c] (= or +=) sum_r dy[t][r] * w[r][c] for t < n: dy [n][w.rows], dx [n][w.cols].
void input_grad(const backend::MatrixView& w, const float* dy, int64_t n, float* dx,
                bool accumulate, ThreadPool& pool);
// The same through a model's weight, read as the backend holds it (its
// prepared form when the source pages were released): what the trainer uses.
void input_grad(const backend::Backend& be, const backend::Linear& w, const float* dy, int64_t n,
                float* dx, bool accumulate, ThreadPool& pool);

// The weight's gradient of y = W x over a sequence (full training):
// dw[r][c] += sum_t dy[t][r] * x[t][c]; dy [n][rows], x [n][cols], dw
// [rows][cols]. tmp: scratch (dy transposed) grown as needed.
void weight_grad(const float* dy, const float* x, int64_t n, int64_t rows, int64_t cols, float* dw,
                 std::vector<float>& tmp, ThreadPool& pool);

// The LoRA term of expert e's pair (e = 0 for a single matrix): y [n][n_out]
// += scale * B (A x), x [n][n_in]; saves u = A x [n][r] for the backward.
// bt, d: scratch grown as needed (B^T [r][n_out], B u [n][n_out]).
void lora_forward(const backend::Backend& be, const LoraPairParams& p, int64_t e, float scale,
                  const float* x, int64_t n, float* y, float* u, std::vector<float>& bt,
                  std::vector<float>& d, backend::Workspace& ws, ThreadPool& pool);

// Backward of the LoRA term y += scale * B (A x) of expert e's pair (e = 0
// for a single matrix): x [n][n_in], u = A x [n][r] (saved by the forward),
// dy [n][n_out]. Accumulates that expert's grad_a, grad_b and
// dx += scale * A^T B^T dy. tmp, wg_tmp: scratch grown as needed.
void lora_backward(LoraPairParams& p, int64_t e, float scale, const float* x, const float* u,
                   const float* dy, int64_t n, float* dx, std::vector<float>& tmp,
                   std::vector<float>& wg_tmp, ThreadPool& pool);

}  // namespace slm::train
