// Per-ISA versions of the float loops of ops.cpp (attention per head, SwiGLU;
// on NEON also RMSNorm, add, softmax, RoPE). Internal to slm_ops: ops.cpp
// picks a table from the kernel ISA (kernels::active_isa, the same run-time
// choice from base/cpu.h's features as the matrix kernels), so one binary runs
// on any x86-64 / aarch64 (style.md §6). Entries a table does not fill keep
// the scalar reference.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "base/dtype.h"
#include "base/static_count.h"
#include "ops/ops.h"

namespace slm::ops {

// One query head against n_keys cached keys/values (row j of k and v at
// byte j * row_bytes, head_dim values in kv_type from there): scores[j] =
// scale * q.k_j (then softcap * tanh(s / softcap) when softcap > 0),
// softmax, out = sum_j p_j v_j. scores: n_keys floats of scratch.
struct AttendArgs {
  const float* q;
  const uint8_t* k;
  const uint8_t* v;
  DType kv_type = DType::F32;
  int64_t row_bytes, n_keys, head_dim;
  float scale;
  float softcap = 0.0f;
  float* scores;
  float* out;
};

// A prefill task's query rows against one KV head's float keys and values
// (ops.cpp's attend_prefill_task): row r is token t = r / n_heads of the
// block and head h = r % n_heads of the group; token t sees the keys
// [0, first_keys + t). Each row's out is attend's for it alone, bit for bit.
struct AttendRowsArgs {
  const float* q;  // row (t, h) at q + t * q_stride + h * head_dim; out likewise
  float* out;
  int64_t q_stride;
  const uint8_t* k;  // float key / value rows at byte j * row_bytes
  const uint8_t* v;
  int64_t row_bytes, head_dim, n_tokens, n_heads, first_keys;
  float scale, softcap;
  float* scores;  // [n_tokens * n_heads][score_stride], score_stride >= first_keys + n_tokens - 1
  int64_t score_stride;
  float* acc;  // [n_tokens * n_heads][head_dim]: the value sums between key tiles
  float* inv;  // [n_tokens * n_heads]: 1 / each row's softmax sum
  // Null, or room for the keys transposed in blocks of the vector width
  // ([ceil(keys / 16) * 16][head_dim] floats), for ISAs that score that way.
  float* kt = nullptr;
};

// scores[j] = cap * tanh(scores[j] / cap) for j < n (Gemma 2's soft-capping).
void softcap_scores(float* scores, int64_t n, float cap);

// The scalar references (ops.cpp), the test oracle of every table.
void attend_scalar(const AttendArgs& a);
// n <= kAttendGroupMax (ops.h) heads that share keys, values, kv_type, row_bytes,
// n_keys and head_dim (a[0]'s): each head's result is the table's attend for
// it alone, bit for bit.
void attend_group_scalar(const AttendArgs* a, int n);
// out[0..n) = values 0..n of a cache row in type, as the attend loops read
// them (F16 exactly, Q8_0 as scale * q rounded once).
void kv_to_f32_scalar(DType type, const uint8_t* row, int64_t n, float* out);
// Halves i < n of dst = f32_to_fp16(src[i]) (unaligned): an F16 cache row (kv_store).
void to_f16_scalar(const float* src, int64_t n, uint8_t* dst);
void swiglu_scalar(float* gate, const float* up, int64_t n);
void rms_norm_scalar(const float* x, const float* w, int64_t n, float eps, float* out);
void add_scalar(float* x, const float* b, int64_t n);
void softmax_scalar(float* x, int64_t n);
int64_t zero_below_scalar(float* x, int64_t n, float thr);
int64_t list_nonzero_scalar(const float* x, int64_t n, int32_t* kept);
int64_t argmax_scalar(const float* x, int64_t n);
void rope_apply_scalar(float* x, int64_t n_rot, const float* cs, bool neox);

// Rotates the pairs i in [begin, half) of x (half = n_rot / 2) by the
// angles in cs ([cos x half, sin x half]): pair i is (x[i], x[i + half]) for
// neox, else (x[2i], x[2i + 1]). rope_apply_scalar is the whole range; SIMD
// versions finish their tail with it.
inline void rope_rotate_pairs(float* x, int64_t half, const float* cs, bool neox, int64_t begin) {
  for (int64_t i = begin; i < half; ++i) {
    const float c = cs[i], s = cs[half + i];
    const int64_t a = neox ? i : 2 * i;
    const int64_t b = neox ? i + half : 2 * i + 1;
    const float x0 = x[a], x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
  }
}

// Signatures as in ops.h.
struct OpsTable {
  void (*attend)(const AttendArgs& a) = attend_scalar;
  void (*attend_group)(const AttendArgs* a, int n) = attend_group_scalar;
  void (*kv_to_f32)(DType type, const uint8_t* row, int64_t n, float* out) = kv_to_f32_scalar;
  void (*to_f16)(const float* src, int64_t n, uint8_t* dst) = to_f16_scalar;
  // Null, or false for a head_dim it does not take: attend per row instead.
  bool (*attend_rows)(const AttendRowsArgs& a) = nullptr;
  void (*swiglu)(float* gate, const float* up, int64_t n) = swiglu_scalar;
  void (*rms_norm)(const float* x, const float* w, int64_t n, float eps,
                   float* out) = rms_norm_scalar;
  void (*add)(float* x, const float* b, int64_t n) = add_scalar;
  void (*softmax)(float* x, int64_t n) = softmax_scalar;
  void (*rope_apply)(float* x, int64_t n_rot, const float* cs, bool neox) = rope_apply_scalar;
  int64_t (*zero_below)(float* x, int64_t n, float thr) = zero_below_scalar;
  int64_t (*list_nonzero)(const float* x, int64_t n, int32_t* kept) = list_nonzero_scalar;
  int64_t (*argmax)(const float* x, int64_t n) = argmax_scalar;
};

// Each per-ISA file overrides the entries it implements (x86: attend, swiglu, pruning).
void fill_ops_avx2(OpsTable& t);
void fill_ops_avx512(OpsTable& t);
void fill_ops_neon(OpsTable& t);

// The element-wise part of simd_body.inc's vector interface, for any GCC
// vector type R of floats (x86: __v8sf / __v16sf, the types of __m256 /
// __m512 without their may_alias attribute; NEON: float32x4_t). The
// operators are what the intrinsics _mm256_add_ps, vaddq_f32, ... are defined
// as, so each ISA's V derives from this and writes only what needs its own
// instructions (fmadd, reductions, exp). Everything is inline.
template <class R>
struct VecOps {
  using Reg = R;
  static constexpr int kWidth = sizeof(R) / sizeof(float);
  static Reg zero() { return Reg{}; }
  static Reg set1(float f) { return splat(f, std::make_index_sequence<kWidth>{}); }
  static Reg load(const float* p) {
    Reg v;
    __builtin_memcpy(&v, p, sizeof v);  // unaligned
    return v;
  }
  static void store(float* p, Reg v) { __builtin_memcpy(p, &v, sizeof v); }
  static Reg add(Reg a, Reg b) { return a + b; }
  static Reg mul(Reg a, Reg b) { return a * b; }
  static Reg div(Reg a, Reg b) { return a / b; }
  static Reg max(Reg a, Reg b) { return a > b ? a : b; }  // lane-wise, b where unordered

 private:
  template <std::size_t... I>
  static Reg splat(float f, std::index_sequence<I...>) {
    return Reg{((void)I, f)...};
  }
};

}  // namespace slm::ops
