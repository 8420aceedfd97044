// The compute backend seam: every op the forward pass runs (linear, embed,
// norm, rope, attention, activation, add) goes through one small interface,
// chosen once when a model loads. The CPU backend (cpu_backend.cpp) owns the
// weight packing and the kernel tables; a GPU backend would implement the same
// entry points over its own prepared weights.
//
// Shapes follow ggml: a weight [cols, rows] has `rows` rows of `cols`
// elements; activations are row-major [n_rows][width].
// Ownership: a Linear owns its prepared form; the view points into the model
// file. Thread-safety: a Backend is stateless and shared; a Workspace belongs
// to one caller (a batch or a session) at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "base/dtype.h"
#include "ops/ops.h"

namespace slm {
class ThreadPool;
}

namespace slm::backend {

// A weight matrix in the file: `rows` rows of `cols` elements of `type`.
struct MatrixView {
  DType type = DType::F32;
  const uint8_t* data = nullptr;
  int64_t rows = 0, cols = 0;
  size_t size_bytes() const {
    return static_cast<size_t>(rows) * static_cast<size_t>(row_bytes(type, cols));
  }
};

// What a matrix is for: LoRA targets, pruning masks and statistics name it.
enum class Role : uint8_t { kQ, kK, kV, kO, kGate, kUp, kDown, kRouter, kOutput };
std::string_view role_name(
    Role role);  // "q", "k", "v", "o", "gate", "up", "down", "router", "output"

// A backend's load-time copy of a matrix in its preferred layout.
class Prepared {
 public:
  virtual ~Prepared() = default;
  virtual size_t size_bytes() const = 0;
};

// One weight matrix of the forward pass: its view, its role, and the form the
// backend prepared (null: the backend reads the view as it is).
struct Linear {
  MatrixView view;
  Role role = Role::kQ;
  std::unique_ptr<const Prepared> prepared;
  // Column-major copy for input-sparse decoding (Backend::prepare_columns),
  // made only for the matrices activation pruning reaches; null otherwise.
  std::unique_ptr<const Prepared> columns;

  bool present() const { return view.data != nullptr; }
  int64_t rows() const { return view.rows; }
  int64_t cols() const { return view.cols; }
};

// One output of a linear call: y[t * w.rows() + r] = sum_c w[r][c] * x[t * cols + c].
struct LinearOut {
  const Linear* w;
  float* y;
};

// A LoRA pair's factors as Backend::lora reads them (model/lora.h makes
// them): F16, half the bytes of F32, with each row of A and of B^T
// normalised by a power of two so that F16's range never clips a value and
// its rounding is the only change; scale[k] puts rank k's two powers back.
// The adapter's own scales are folded into B^T before rounding.
// With LoraType::kQ8 the factors are 8-bit instead (a8/bt8 and their group
// scales, kernels.h LoraQ8Kernels; a and bt null): about half the bytes.
enum class LoraType { kF16, kQ8 };
struct LoraFactors {
  const uint16_t* a = nullptr;   // [n_in, r]: r rows of n_in (F16)
  const uint16_t* bt = nullptr;  // B transposed in column blocks (kernels::lora_bt_size), F16
  const float* scale = nullptr;  // [r]: multiplies (A x)[k]
  int64_t r = 0, n_in = 0, n_out = 0;
  const int8_t* a8 = nullptr;        // kQ8: [n_in, r] int8
  const float* a8_scale = nullptr;   // kQ8: [r][kernels::lora_groups_a(n_in)]
  const int8_t* bt8 = nullptr;       // kQ8: B^T's column blocks, int8
  const float* bt8_scale = nullptr;  // kQ8: [ceil(n_out / kLoraCols)][r]

  LoraType type() const { return a8 != nullptr ? LoraType::kQ8 : LoraType::kF16; }
  // The values the delta applies, as float (merging and tests read them).
  float a_value(int64_t k, int64_t c) const;
  float b_value(int64_t j, int64_t k) const;  // B[j][k]
};

// One sequence's LoRA delta on one matrix: y [m][n_out] += B (A x),
// x [m][n_in], through t [m][r] (scratch the caller owns).
struct LoraSegment {
  const LoraFactors* f;
  const float* x;
  float* t;
  float* y;
  int64_t m;
};

// A piece of Backend::lora's work: outputs [first, first + count) of the
// segments lora_order[begin, end), which share one matrix.
struct LoraTask {
  size_t begin, end;
  int64_t first, count;
};

// Per-caller buffers the ops reuse across calls, grown on first use so the
// token loop allocates nothing once warm.
struct Workspace {
  ThreadPool* pool = nullptr;      // set by the caller for each call
  std::vector<LoraTask> lora;      // Backend::lora's task list
  std::vector<size_t> lora_order;  // its segments grouped by matrix
  std::vector<uint8_t> matmul;     // quantized activations
  std::vector<float> scores;       // attention scores [n_threads][longest context]
  // attention_many's prefill scratch [n_threads][ops::attention_prefill_floats]
  // (empty: every call takes the per-token tasks).
  std::vector<float> attn_prefill;
  std::vector<int64_t> attn_starts;      // attention_many's task offsets [calls + 1]
  std::vector<ops::AttentionCall> attn;  // one step's attention calls, one per sequence
  std::vector<float> kept;               // linear_columns' compacted inputs
  std::vector<float> stacked;            // linear_columns' outputs of a stacked copy
};

// Causal grouped-query attention over a sequence's cache: the shape (window,
// scale, soft-cap, ring) is the float ops' own (ops/ops.h), which every
// backend takes as it is.
using AttentionShape = ops::AttentionShape;
using AttentionCall = ops::AttentionCall;

// The gate's activation of a gated feed-forward.
enum class Activation { kSilu, kGeluTanh };  // SwiGLU, GeGLU (tanh GELU)

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // Prepares w for this backend (repacking where it pays). release_source:
  // the view is a memory-mapped file whose pages may be dropped afterwards.
  // pool (may be null): threads the work may be shared among (same result).
  virtual void prepare(Linear& w, bool release_source, ThreadPool* pool) const = 0;

  // Input-sparse decoding (activation pruning): makes w.columns, a copy laid
  // out so that a product reads only the weights of non-zero inputs. Returns
  // false (w unchanged) where the backend has no such layout for w.
  virtual bool prepare_columns(Linear& w) const = 0;
  // The same for matrices that read one input (Q, K and V; gate and up, in
  // the order linear_columns will see them): one stacked copy where the
  // backend can make one (a kept input's weights for every matrix in one
  // run), each matrix's own copy otherwise. Returns whether every matrix
  // has a copy; matrices that had one keep it.
  virtual bool prepare_columns(std::span<Linear* const> group) const = 0;
  // y [w.rows()] = w x for one row x [w.cols()] that is zero outside idx
  // (ascending), for every output of outs (all of the same cols, each with
  // w.columns set) in one pass where the backend can fuse them. Agrees with
  // linear() up to rounding and the copy's quantization (kernels.h
  // ColumnMatrix); fused or not, results are the same bit for bit.
  virtual void linear_columns(std::span<const LinearOut> outs, const float* x,
                              std::span<const int32_t> idx, Workspace& ws) const = 0;
  void linear_columns(const Linear& w, const float* x, std::span<const int32_t> idx, float* y,
                      Workspace& ws) const {
    const LinearOut out{&w, y};
    linear_columns(std::span<const LinearOut>(&out, 1), x, idx, ws);
  }

  // Every matrix product of the forward pass: the matrices of outs (all of
  // the same cols) applied to the same x [n][cols], in one pass where the
  // backend can fuse them. Results equal separate calls bit for bit.
  virtual void linear(std::span<const LinearOut> outs, const float* x, int64_t n,
                      Workspace& ws) const = 0;
  void linear(const Linear& w, const float* x, int64_t n, float* y, Workspace& ws) const {
    const LinearOut out{&w, y};
    linear(std::span<const LinearOut>(&out, 1), x, n, ws);
  }

  // Every segment's low-rank delta, added into its y: all "shrink" products
  // (t = A x) in one pass over the pool, then all "expand" products
  // (y += B t) in another (Punica's SGMV), so a step's adapters cost two
  // wake-ups per call however many sequences use them; segments on the same
  // adapter read each of its rows once for all their rows.
  virtual void lora(std::span<const LoraSegment> segs, Workspace& ws) const = 0;

  // Columns [c0, c0 + nc) of row r of w as float, from whichever form the
  // backend holds (the view's pages may have been released after preparing):
  // training's transposed products read weights through it. c0 and nc are
  // multiples of the type's block size; r < w.rows().
  virtual void dequantize_stripe(const Linear& w, int64_t r, int64_t c0, int64_t nc,
                                 float* dst) const = 0;

  // out[i][0..cols) = row ids[i] of table, as float.
  virtual void embed(const MatrixView& table, std::span<const int32_t> ids, float* out) const = 0;
  // out[r] = rms_norm(x[r]) * w for n_rows rows of width n; out may alias x.
  virtual void rms_norm(const float* x, const float* w, int64_t n_rows, int64_t n, float eps,
                        float* out) const = 0;
  // x[i] += b[i]
  virtual void add(float* x, const float* b, int64_t n) const = 0;
  // gate[i] = act(gate[i]) * up[i]
  virtual void gated(Activation act, float* gate, const float* up, int64_t n) const = 0;
  // x[i] = cap * tanh(x[i] / cap) (final-logit soft-capping)
  virtual void softcap(float* x, int64_t n, float cap) const = 0;
  virtual void softmax(float* x, int64_t n) const = 0;
  // Activation pruning: x[i] = +0 where |x[i]| < thr (a NaN stays); returns
  // how many were set so. Then the non-zero entries' indices, ascending, into
  // kept [n], for linear_columns; returns their count.
  virtual int64_t zero_below(float* x, int64_t n, float thr) const = 0;
  virtual int64_t list_nonzero(const float* x, int64_t n, int32_t* kept) const = 0;
  // Rotary embedding: cos/sin of one position for every pair, then applied to
  // one head (ops::rope_angles / rope_apply).
  virtual void rope_angles(int64_t n_rot, int64_t pos, const float* inv_freq, float* cs) const = 0;
  virtual void rope_apply(float* x, int64_t n_rot, const float* cs, bool neox) const = 0;
  //   q: [n_tokens][n_head * head_dim]; k, v: cache [n_ctx][n_head_kv * head_dim] in s.kv_type
  virtual void attention(const AttentionShape& s, const float* q, const uint8_t* k_cache,
                         const uint8_t* v_cache, float* out, Workspace& ws) const = 0;
  // Every sequence's attention of one step (ws.attn) as one parallel job
  // (ops::attention_many); ws.scores holds n_threads * stride floats, stride
  // at least every call's pos0 + n_tokens; ws.attn_prefill, when sized, lets
  // long calls run as prefill blocks (same results, fewer conversions).
  virtual void attention_many(std::span<const AttentionCall> calls, int64_t stride,
                              Workspace& ws) const = 0;
};

// The CPU backend: kernels chosen from the CPU's features (kernels::active_isa).
const Backend& cpu();

}  // namespace slm::backend
