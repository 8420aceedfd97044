// Per-ISA versions of the float loops of ops.cpp (attention per head, SwiGLU;
// on NEON also RMSNorm, add, softmax, RoPE). Internal to slm_ops: ops.cpp
// picks a table from the kernel ISA (kernels::active_isa, the same run-time
// choice from base/cpu.h's features as the matrix kernels), so one binary runs
// on any x86-64 / aarch64 (style.md §6). Entries a table does not fill keep
// the scalar reference.
#pragma once

#include <cstdint>

namespace slm::ops {

// One query head against n_keys cached keys/values (row j of k and v at
// j * kv_stride): scores[j] = scale * q.k_j (then softcap * tanh(s /
// softcap) when softcap > 0), softmax, out = sum_j p_j v_j.
// scores: n_keys floats of scratch.
struct AttendArgs {
  const float* q;
  const float* k;
  const float* v;
  int64_t kv_stride, n_keys, head_dim;
  float scale;
  float softcap = 0.0f;
  float* scores;
  float* out;
};

// scores[j] = cap * tanh(scores[j] / cap) for j < n (Gemma 2's soft-capping).
void softcap_scores(float* scores, int64_t n, float cap);

// The scalar references (ops.cpp), the test oracle of every table.
void attend_scalar(const AttendArgs& a);
void swiglu_scalar(float* gate, const float* up, int64_t n);
void rms_norm_scalar(const float* x, const float* w, int64_t n, float eps, float* out);
void add_scalar(float* x, const float* b, int64_t n);
void softmax_scalar(float* x, int64_t n);
void rope_apply_scalar(float* x, int64_t n_rot, const float* cs, bool neox);

// Signatures as in ops.h.
struct OpsTable {
  void (*attend)(const AttendArgs& a) = attend_scalar;
  void (*swiglu)(float* gate, const float* up, int64_t n) = swiglu_scalar;
  void (*rms_norm)(const float* x, const float* w, int64_t n, float eps,
                   float* out) = rms_norm_scalar;
  void (*add)(float* x, const float* b, int64_t n) = add_scalar;
  void (*softmax)(float* x, int64_t n) = softmax_scalar;
  void (*rope_apply)(float* x, int64_t n_rot, const float* cs, bool neox) = rope_apply_scalar;
};

// Each per-ISA file overrides the entries it implements (x86: attend, swiglu).
void fill_ops_avx2(OpsTable& t);
void fill_ops_avx512(OpsTable& t);
void fill_ops_neon(OpsTable& t);

}  // namespace slm::ops
