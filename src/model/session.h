// Per-sequence state: the KV cache and the scratch activations of one
// sequence, allocated once at construction so the token loop allocates
// nothing. A Session borrows its Model (which must outlive it).
// Thread-safety: one thread drives a session at a time; the ThreadPool
// passed to each call spreads the work.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/model.h"

namespace slm {
class ThreadPool;
}

namespace slm::model {

struct SessionOptions {
  int64_t n_ctx = 0;        // 0: the model's training context
  int64_t n_batch = 256;    // prompt tokens processed per chunk
  // A context longer than the model was trained for degrades output; allow it
  // only when the user asks.
  bool allow_beyond_train_ctx = false;
};

class Session {
 public:
  // Throws slm::Error when the options are invalid (context too long...).
  Session(const Model& model, const SessionOptions& options);

  const Model& model() const { return model_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_past() const { return n_past_; }
  // Forgets positions >= n (n <= n_past), e.g. to reuse a shared prefix.
  void truncate(int64_t n);
  void reset() { truncate(0); }

  // Feeds tokens at positions n_past()... in chunks of n_batch.
  // all_logits == nullptr: only the logits after the last token are kept
  // (see last_logits()); otherwise *all_logits receives [n_tokens][n_vocab].
  // Throws slm::Error on an out-of-range token id or when the context is full
  // (nothing is consumed then).
  void feed(std::span<const int32_t> tokens, ThreadPool& pool, std::vector<float>* all_logits = nullptr);
  // One decoding step; returns the next-token logits [n_vocab].
  std::span<const float> decode(int32_t token, ThreadPool& pool);
  std::span<const float> last_logits() const { return {logits_.data(), static_cast<size_t>(n_vocab_)}; }

 private:
  void forward_chunk(std::span<const int32_t> tokens, ThreadPool& pool, float* logits_out, bool all_rows);
  void attention_block(int64_t layer, int64_t n, ThreadPool& pool);
  void ffn_dense(int64_t layer, int64_t n, ThreadPool& pool);
  void ffn_moe(int64_t layer, int64_t n, ThreadPool& pool);

  const Model& model_;
  int64_t n_ctx_ = 0;
  int64_t n_batch_ = 0;
  int64_t n_vocab_ = 0;
  int64_t n_past_ = 0;

  // KV cache, float32: [n_layer][n_ctx][kv_dim]
  std::vector<float> k_cache_, v_cache_;
  // Scratch activations for one chunk of up to n_batch tokens.
  std::vector<float> x_;        // residual stream [n_batch][n_embd]
  std::vector<float> xn_;       // normalised input [n_batch][n_embd]
  std::vector<float> q_;        // [n_batch][q_dim]
  std::vector<float> k_, v_;    // [n_batch][kv_dim]
  std::vector<float> attn_;     // [n_batch][q_dim]
  std::vector<float> proj_;     // [n_batch][n_embd]
  std::vector<float> gate_, up_;  // [n_batch][max(n_ff, n_ff_expert)]
  std::vector<float> scores_;   // attention scores [n_threads][n_ctx]
  std::vector<float> router_;   // [n_batch][n_expert]
  std::vector<float> expert_in_;   // tokens routed to one expert [n_batch][n_embd]
  std::vector<int32_t> expert_tokens_;  // [n_batch]
  std::vector<float> expert_weight_;    // [n_batch]
  std::vector<int32_t> chosen_;         // [n_batch][n_expert_used]
  std::vector<float> chosen_w_;         // [n_batch][n_expert_used]
  std::vector<int32_t> expert_order_;   // router sort buffer [n_expert]
  std::vector<float> logits_;   // last row [n_vocab]
  std::vector<float> out_norm_; // [n_batch][n_embd]
  std::vector<uint8_t> matmul_scratch_;
};

}  // namespace slm::model
