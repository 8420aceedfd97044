// Per-ISA versions of the hot float loops of ops.cpp (attention per head,
// SwiGLU). Internal to slm_ops: ops.cpp picks a table once from the kernel
// ISA (kernels::active_isa, the same run-time choice as the matrix kernels),
// so one binary runs on any x86-64 / aarch64 (style.md §6).
#pragma once

#include <cstdint>

namespace slm::ops {

// One query head against n_keys cached keys/values (row j of k and v at
// j * kv_stride): scores[j] = scale * q.k_j, softmax, out = sum_j p_j v_j.
// scores: n_keys floats of scratch.
struct AttendArgs {
  const float* q;
  const float* k;
  const float* v;
  int64_t kv_stride, n_keys, head_dim;
  float scale;
  float* scores;
  float* out;
};

struct OpsTable {
  void (*attend)(const AttendArgs& a) = nullptr;
  void (*swiglu)(float* gate, const float* up, int64_t n) = nullptr;
};

void attend_scalar(const AttendArgs& a);
void swiglu_scalar(float* gate, const float* up, int64_t n);
void fill_ops_avx2(OpsTable& t);
void fill_ops_avx512(OpsTable& t);

}  // namespace slm::ops
