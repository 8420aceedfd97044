// Per-sequence state (Session: the KV cache and position of one sequence) and
// the batched forward pass that advances many sequences in one step, so the
// server's continuous batching reads each weight once per step for all users.
// A Session borrows its Model, which must outlive it.
// Thread-safety: one thread drives a Session / Scratch at a time; the
// ThreadPool passed to each call spreads the work.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/model.h"

namespace slm {
class ThreadPool;
}

namespace slm::model {

struct SessionOptions {
  int64_t n_ctx = 0;      // 0: the model's training context
  int64_t n_batch = 256;  // prompt tokens processed per chunk by feed()
  // A context longer than the model was trained for degrades output; allow it
  // only when the user asks.
  bool allow_beyond_train_ctx = false;
};

class Scratch;

class Session {
 public:
  // Throws slm::Error when the options are invalid (context too long...).
  Session(const Model& model, const SessionOptions& options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const Model& model() const { return model_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_past() const { return n_past_; }
  // Forgets positions >= n (n <= n_past), e.g. to keep a shared prefix.
  void truncate(int64_t n);
  void reset() { truncate(0); }
  // Copies the first n cached positions of other (same model, n <= both
  // contexts) so a shared prefix such as a system prompt is not recomputed.
  void copy_prefix(const Session& other, int64_t n);

  // Feeds tokens at positions n_past()... in chunks of n_batch.
  // all_logits == nullptr: only the logits after the last token are kept
  // (last_logits()); otherwise *all_logits receives [n_tokens][n_vocab].
  // Throws slm::Error on an out-of-range token id or when the context is full
  // (nothing is consumed then).
  void feed(std::span<const int32_t> tokens, ThreadPool& pool, std::vector<float>* all_logits = nullptr);
  // One decoding step; returns the next-token logits [n_vocab].
  std::span<const float> decode(int32_t token, ThreadPool& pool);
  std::span<const float> last_logits() const { return {logits_.data(), logits_.size()}; }

  // Checks that tokens can be appended (ids in range, room in the context);
  // throws slm::Error otherwise.
  void check_tokens(std::span<const int32_t> tokens) const;

 private:
  friend void forward(const Model&, std::span<const struct SeqChunk>, Scratch&, ThreadPool&);
  float* k_layer(int64_t layer) { return k_cache_.get() + layer * n_ctx_ * kv_dim_; }
  float* v_layer(int64_t layer) { return v_cache_.get() + layer * n_ctx_ * kv_dim_; }

  const Model& model_;
  int64_t n_ctx_ = 0;
  int64_t n_batch_ = 0;
  int64_t kv_dim_ = 0;
  int64_t n_past_ = 0;
  std::unique_ptr<float[]> k_cache_, v_cache_;  // float32 [n_layer][n_ctx][kv_dim]
  std::vector<float> logits_;             // after the last fed token [n_vocab]
  std::unique_ptr<Scratch> scratch_;      // for feed(); made on first use
};

// One sequence's part of a batched step: its tokens go to positions
// session->n_past()... . logits: nullptr for none, else the last row
// ([n_vocab]) or, with all_rows, every row ([tokens.size()][n_vocab]).
// The session's last_logits() is updated whenever logits are computed.
struct SeqChunk {
  Session* session = nullptr;
  std::span<const int32_t> tokens;
  float* logits = nullptr;
  bool all_rows = false;
};

// Activation buffers for up to max_rows token rows in one step.
class Scratch {
 public:
  Scratch(const ModelConfig& config, int64_t max_rows);
  int64_t max_rows() const { return max_rows_; }

 private:
  friend void forward(const Model&, std::span<const SeqChunk>, Scratch&, ThreadPool&);
  int64_t max_rows_;
  std::vector<float> x_;            // residual stream [rows][n_embd]
  std::vector<float> xn_;           // normalised input [rows][n_embd]
  std::vector<float> q_;            // [rows][q_dim]
  std::vector<float> k_, v_;        // [rows][kv_dim]
  std::vector<float> attn_;         // [rows][q_dim]
  std::vector<float> proj_;         // [rows][n_embd]
  std::vector<float> gate_, up_;    // [rows][max(n_ff, n_ff_expert)]
  std::vector<float> rope_;         // rotary cos/sin of each row's position [rows][n_rot]
  std::vector<float> scores_;       // attention scores [n_threads][largest n_ctx seen]
  std::vector<float> router_;       // [rows][n_expert]
  std::vector<float> expert_in_;    // tokens routed to one expert [rows][n_embd]
  std::vector<int32_t> expert_rows_;   // [rows]
  std::vector<float> expert_weight_;   // [rows]
  std::vector<int32_t> chosen_;        // [rows][n_expert_used]
  std::vector<float> chosen_w_;        // [rows][n_expert_used]
  std::vector<int32_t> expert_order_;  // router sort buffer [n_expert]
  std::vector<float> out_rows_;        // final-norm rows needing logits [rows][n_embd]
  std::vector<float> logits_;          // logits of those rows [rows][n_vocab], grown on demand
  std::vector<uint8_t> matmul_;        // kernels::matmul scratch
};

// Advances every chunk's session by its tokens in one pass: the weight
// matrices are applied to all rows together, attention runs per sequence.
// Sessions must be distinct and belong to model; the total row count must fit
// scratch.max_rows(). Callers validate tokens first (Session::check_tokens).
void forward(const Model& model, std::span<const SeqChunk> chunks, Scratch& scratch, ThreadPool& pool);

}  // namespace slm::model
