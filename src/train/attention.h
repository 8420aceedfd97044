// Causal grouped-query attention of one sequence for training, in float,
// as blocks of matrix products through kernels::axpy_rows_n (run-time ISA
// choice): a block of query rows takes its scores against every earlier key
// at once, S = Q K^T, then O = P V; the backward, dP = dO V^T,
// dS = P (dP - rowdot) scale, dQ = dS K, dK += dS^T Q, dV += P^T dO. The
// templates attention_fwd / attention_bwd (grad_ops.h) are the reference it
// is tested against; they compute one key at a time on scalar loops.
// Shapes as AttnShape: q, out, dq [n][n_head * hd]; k, v, dk, dv
// [n][n_head_kv * hd]. Never throws, no allocation after the scratch is sized.
#pragma once

#include <cstdint>
#include <vector>

#include "train/grad_ops.h"

namespace slm::train {

// One thread's scratch, sized by reserve() for up to n rows of width hd.
struct AttnScratch {
  std::vector<float> kt, vt;   // a kv head's K^T, V^T [hd][n]
  std::vector<float> p, dp;    // a block's probabilities and dP, then dS [block][n]
  std::vector<float> pt, dst;  // P^T, dS^T of a block [n][block]
  void reserve(int64_t n, int64_t hd);
};

// The forward of query head h: its columns of out.
void attention_fwd_blocks(const AttnShape& s, const float* q, const float* k, const float* v,
                          float* out, int64_t h, AttnScratch& w);

// The backward for kv head kh and its query heads: writes their columns of
// dq, dk, dv (calls for different kv heads may run in parallel).
void attention_bwd_blocks(const AttnShape& s, const float* q, const float* k, const float* v,
                          const float* out, const float* dout, float* dq, float* dk, float* dv,
                          int64_t kh, AttnScratch& w);

}  // namespace slm::train
