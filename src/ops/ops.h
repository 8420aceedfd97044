// Float operations of the transformer forward pass that are not matrix
// products: normalisation, rotary embeddings, activation, softmax, attention.
// They know nothing of models: every size is a parameter. No allocation.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "base/dtype.h"

namespace slm {
class ThreadPool;
}

namespace slm::ops {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], i < n. out may alias x.
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out);

// x[i] += b[i]
void add(float* x, const float* b, int64_t n);

// gate[i] = silu(gate[i]) * up[i]
void swiglu(float* gate, const float* up, int64_t n);

// gate[i] = gelu(gate[i]) * up[i], GELU in its tanh form
// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) (Gemma's GeGLU).
void geglu(float* gate, const float* up, int64_t n);

// x[i] = cap * tanh(x[i] / cap)
void softcap(float* x, int64_t n, float cap);

// In-place softmax over x[0..n).
void softmax(float* x, int64_t n);

// Activation pruning (TEAL) of x [n]: x[i] = +0 where |x[i]| < thr (a NaN
// stays). Returns how many entries were set so.
int64_t zero_below(float* x, int64_t n, float thr);
// The indices of x [n]'s entries that are not 0 (NaNs count), ascending,
// into kept [n] (the columns a pruned product reads). Returns their count.
int64_t list_nonzero(const float* x, int64_t n, int32_t* kept);

// Greedy sampling's pick: the first index of x [n]'s largest value (a NaN
// never wins; -0 and +0 tie, so the lower index of the two is kept), or -1
// when no entry is above -inf (n == 0, or every entry -inf or NaN).
int64_t argmax(const float* x, int64_t n);

// Rotary embedding of one head vector x[0..n_rot) at position pos, in two
// steps so a position's angles (double cos and sin, the costly part) are
// computed once for every head of every layer. inv_freq[i] (i < n_rot/2) is
// the angle per position of pair i; rope_angles fills cs[0..n_rot) with the
// cos of pair i at i and its sin at n_rot/2 + i. neox: pairs (i, i + n_rot/2);
// otherwise adjacent pairs (2i, 2i+1).
void rope_angles(int64_t n_rot, int64_t pos, const float* inv_freq, float* cs);
void rope_apply(float* x, int64_t n_rot, const float* cs, bool neox);

// How the KV cache stores its rows: float32, float16, or Q8_0 blocks (32
// values, one f16 scale; head_dim must be a multiple of 32). A row of
// kv_dim = n_head_kv * head_dim values takes kv_row_bytes(type, kv_dim) bytes.
bool kv_type_supported(DType type);
size_t kv_row_bytes(DType type, int64_t kv_dim);
// Writes n values of src as one stretch of a row in type (for Q8_0, n and the
// start a multiple of 32), rounding as llama.cpp's cache types do.
void kv_store(DType type, const float* src, int64_t n, uint8_t* dst);

// Causal grouped-query attention for a chunk of n_tokens new tokens whose
// keys/values are already in the cache.
//   q:   [n_tokens][n_head * head_dim]
//   k,v: cache rows [n_ctx][n_head_kv * head_dim] in kv_type (rows of
//        kv_row_bytes bytes), positions 0..pos0+n_tokens-1 valid
//   out: [n_tokens][n_head * head_dim]
// scratch: n_threads * (pos0 + n_tokens) floats for the scores.
// window > 0: the token at position p sees only positions > p - window
// (sliding-window attention); scale: multiplies q.k (0: 1 / sqrt(head_dim));
// softcap > 0: scores -> softcap * tanh(scores / softcap) before the softmax.
struct AttentionShape {
  int64_t n_tokens, pos0, n_head, n_head_kv, head_dim;
  int64_t window = 0;
  float scale = 0.0f;
  float softcap = 0.0f;
  // ring > 0: position p's row is p % ring, and rows [ring, 2 ring) repeat
  // rows [0, ring), so a window (<= ring positions) is contiguous.
  int64_t ring = 0;
  DType kv_type = DType::F32;
};
void attention(const AttentionShape& s, const float* q, const uint8_t* k_cache,
               const uint8_t* v_cache, float* out, float* scratch, ThreadPool& pool);
// One sequence's attention in a batched step (attention_many): its shape and
// buffers as attention() takes them.
struct AttentionCall {
  AttentionShape shape;
  const float* q;
  const uint8_t* k_cache;
  const uint8_t* v_cache;
  float* out;
};
// Every call's attention as one job over the pool, its tasks the (call, token,
// head) triples: sequences of different lengths share one wake-up and the
// threads balance over all of them, instead of one job per sequence. Results
// equal separate attention() calls bit for bit. starts: task offsets, resized
// to calls.size() + 1 (the caller keeps it, so a warm step allocates nothing);
// scratch: pool.size() * stride floats, stride >= every call's pos0 + n_tokens.
// Grouped-query calls run a task per (token, KV head) instead where the stride
// holds score rows for attention_group_rows heads (a decode step reads each
// cached row once for the group's heads, not once per head); same bits.
//
// Prefill: given prefill scratch (pool.size() * prefill_stride floats), a call
// of at least kPrefillMinTokens tokens whose prefix fits it (no ring, no
// window that cuts it) runs as tasks of (KV head, block of tokens) instead:
// a task converts its KV head's keys and values to float once for every
// query head of the group and token of the block, and walks them in tiles
// that stay in L1 while every (token, head) row of the block uses them
// (simd.h attend_rows). The results are those of the per-(token, head)
// tasks, bit for bit.
void attention_many(std::span<const AttentionCall> calls, std::vector<int64_t>& starts,
                    float* scratch, int64_t stride, ThreadPool& pool, float* prefill = nullptr,
                    int64_t prefill_stride = 0);
// Score rows a (token, KV head) task of attention_many keeps: the group's heads,
// at most kAttendGroupMax at a time.
inline constexpr int64_t kAttendGroupMax = 16;
inline int64_t attention_group_rows(int64_t n_head, int64_t n_head_kv) {
  return n_head_kv > 0 ? std::min<int64_t>(n_head / n_head_kv, kAttendGroupMax) : 1;
}
// Calls of fewer new tokens keep the per-(token, head) tasks.
inline constexpr int64_t kPrefillMinTokens = 8;
// Floats of prefill scratch per thread that let attention_many block every
// call of up to max_span positions (pos0 + n_tokens) with heads of head_dim;
// longer prefixes than kPrefillMaxSpan take the per-token tasks, so the
// scratch stays bounded (about 2 * 4096 * head_dim floats plus 64 Ki floats
// of scores: 2.3 MiB per thread at 64).
inline constexpr int64_t kPrefillMaxSpan = 4096;
int64_t attention_prefill_floats(int64_t max_span, int64_t head_dim);
// The float32 cache (s.kv_type must be F32).
inline void attention(const AttentionShape& s, const float* q, const float* k_cache,
                      const float* v_cache, float* out, float* scratch, ThreadPool& pool) {
  attention(s, q, reinterpret_cast<const uint8_t*>(k_cache),
            reinterpret_cast<const uint8_t*>(v_cache), out, scratch, pool);
}

}  // namespace slm::ops
