// Per-sequence state: the KV cache, position and last logits of one sequence.
// The batched forward pass that advances sessions is in forward.h. A Session
// borrows its Model, which must outlive it.
// Thread-safety: one thread drives a Session / Scratch at a time; the
// ThreadPool passed to each call spreads the work.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/error.h"
#include "model/forward.h"
#include "model/model.h"

namespace slm {
class ThreadPool;
}

namespace slm::model {

// A context longer than the model's training length, refused unless
// SessionOptions::allow_beyond_train_ctx: front ends name their own switch.
class ContextBeyondTrainingError : public Error {
 public:
  using Error::Error;
};

struct SessionOptions {
  int64_t n_ctx = 0;      // 0: the model's training context
  int64_t n_batch = 256;  // prompt tokens processed per chunk by feed()
  // A context longer than the model was trained for degrades output; allow it
  // only when the user asks.
  bool allow_beyond_train_ctx = false;
  // How the KV cache stores keys and values (ops::kv_type_supported: F32,
  // F16, Q8_0): F16 halves a slot's memory and the bytes long contexts read.
  DType kv_type = DType::F32;
};

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
  // Whether the first n cached positions can be kept (truncate(n)) or lent
  // (another session's copy_prefix(*this, n)): always, except that a
  // window-only layer keeps just its last ring() positions, so a cut far back
  // has lost the window that position n needs; n == 0 always works.
  bool can_keep(int64_t n) const;
  // Forgets positions >= n (n <= n_past, can_keep(n)), e.g. to keep a shared prefix.
  void truncate(int64_t n);
  void reset() { truncate(0); }
  // Copies the first n cached positions of other (same model, n <= both
  // contexts, other.can_keep(n)) so a shared prefix such as a system prompt
  // is not recomputed.
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
  // LoRA deltas for what feed() and decode() compute from now on (nullptr:
  // the base model). The adapter must outlive its use; the cached positions
  // computed under another adapter are the caller's to drop (truncate).
  void set_adapter(const LoraAdapter* adapter) { adapter_ = adapter; }
  // Bytes of K and V cache this session holds.
  size_t cache_bytes() const { return 2 * cache_bytes_; }
  // Writes the whole cache once (zeros; nothing reads rows before they are
  // stored), so its pages are in memory before the first step needs them.
  void prefault();
  DType kv_type() const { return kv_type_; }
  // The same for a session of n_ctx positions and n_batch rows per step,
  // before making one (slm info's memory estimate).
  static size_t cache_bytes(const ModelConfig& c, int64_t n_ctx, int64_t n_batch, DType kv_type = DType::F32);
  // Throws slm::Error when the model cannot keep its cache in kv_type.
  static void check_kv_type(const ModelConfig& c, DType kv_type);

  // Checks that tokens can be appended (ids in range, room in the context);
  // throws slm::Error otherwise.
  void check_tokens(std::span<const int32_t> tokens) const;

 private:
  friend struct Forward;
  uint8_t* k_layer(int64_t layer) { return k_cache_.get() + layer_offset_[static_cast<size_t>(layer)]; }
  uint8_t* v_layer(int64_t layer) { return v_cache_.get() + layer_offset_[static_cast<size_t>(layer)]; }
  // Ring size of a window-only layer (0: the layer keeps every position at
  // its own row). A ring layer keeps position p at row p % ring and again at
  // row p % ring + ring, so every window is one contiguous run of rows.
  int64_t ring(int64_t layer) const {
    return ring_ > 0 && model_.config().layers[static_cast<size_t>(layer)].sliding ? ring_ : 0;
  }
  // The ring size for a context of n_ctx and n_batch rows per step: the
  // window plus one step, when storing that twice beats the whole context.
  static int64_t ring_size(const ModelConfig& c, int64_t n_ctx, int64_t n_batch);
  // Rows of cache layer l keeps: [2 * ring] for a ring layer, else [n_ctx].
  static int64_t layer_rows(const ModelConfig& c, int64_t n_ctx, int64_t ring, int64_t l);
  // The first position a token at position n can read in a window-only layer.
  int64_t window_start(int64_t n) const;
  // Writes m rows of keys/values [m][kv_dim] for positions pos0.. of a layer,
  // converted to the cache's type.
  void store_kv(int64_t layer, int64_t pos0, int64_t m, const float* k, const float* v);
  // Puts one stored row (row_bytes_ each, already in the cache's type) at pos.
  void copy_row(int64_t layer, int64_t pos, const uint8_t* k, const uint8_t* v);

  const Model& model_;
  int64_t n_ctx_ = 0;
  int64_t n_batch_ = 0;
  int64_t kv_dim_ = 0;
  int64_t n_past_ = 0;
  // Rows of row_bytes_ (kv_dim values in kv_type_), layer after layer:
  // [n_ctx] rows for a full layer, [2 * ring] for a window-only one (Gemma's
  // sliding layers: its window plus one step's rows, so a 32k context does
  // not pay 32k rows there).
  std::unique_ptr<uint8_t[]> k_cache_, v_cache_;
  DType kv_type_ = DType::F32;
  size_t row_bytes_ = 0;
  size_t cache_bytes_ = 0;            // of each of K and V
  std::vector<size_t> layer_offset_;  // [n_layer] byte offset of each layer in the caches
  int64_t ring_ = 0;                  // n_swa + n_batch when any layer rings
  std::vector<float> logits_;             // after the last fed token [n_vocab]
  std::unique_ptr<Scratch> scratch_;      // for feed(); made on first use
  const LoraAdapter* adapter_ = nullptr;
};

}  // namespace slm::model
