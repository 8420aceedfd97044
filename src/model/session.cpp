#include "model/session.h"

#include <algorithm>
#include <cstring>
#include <span>

#include "base/error.h"
#include "ops/ops.h"

namespace slm::model {

Session::Session(const Model& model, const SessionOptions& o) : model_(model) {
  const ModelConfig& c = model.config();
  n_ctx_ = o.n_ctx > 0 ? o.n_ctx : c.n_ctx_train;
  if (n_ctx_ > c.n_ctx_train && !o.allow_beyond_train_ctx)
    throw ContextBeyondTrainingError("context of " + std::to_string(n_ctx_) + " tokens exceeds the " +
                                     std::to_string(c.n_ctx_train) + " the model was trained for");
  if (n_ctx_ > (int64_t{1} << 24)) throw Error("context of " + std::to_string(n_ctx_) + " tokens is too large");
  n_batch_ = std::min(std::clamp<int64_t>(o.n_batch, 1, 8192), n_ctx_);
  kv_dim_ = c.kv_dim();
  check_kv_type(c, o.kv_type);
  kv_type_ = o.kv_type;
  row_bytes_ = ops::kv_row_bytes(kv_type_, kv_dim_);
  ring_ = ring_size(c, n_ctx_, n_batch_);
  layer_offset_.resize(static_cast<size_t>(c.n_layer));
  size_t cache = 0;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    layer_offset_[static_cast<size_t>(l)] = cache;
    cache += static_cast<size_t>(layer_rows(c, n_ctx_, ring_, l)) * row_bytes_;
  }
  cache_bytes_ = cache;
  // Left uninitialised on purpose: attention reads only positions already
  // written, and untouched pages of a long context never become resident.
  k_cache_.reset(new uint8_t[cache]);
  v_cache_.reset(new uint8_t[cache]);
  logits_.assign(c.n_vocab, 0.0f);
}

Session::~Session() = default;

// A sliding layer never reads further back than its window: a ring of the
// window plus one step's rows holds everything it can need (stored twice,
// so it only pays when that is smaller than the whole context).
int64_t Session::ring_size(const ModelConfig& c, int64_t n_ctx, int64_t n_batch) {
  const int64_t ring = c.n_swa > 0 ? c.n_swa + n_batch : 0;
  return ring > 0 && 2 * ring < n_ctx ? ring : 0;
}

int64_t Session::layer_rows(const ModelConfig& c, int64_t n_ctx, int64_t ring, int64_t l) {
  return ring > 0 && c.layers[static_cast<size_t>(l)].sliding ? 2 * ring : n_ctx;
}

size_t Session::cache_bytes(const ModelConfig& c, int64_t n_ctx, int64_t n_batch, DType kv_type) {
  const int64_t ring = ring_size(c, n_ctx, std::min(n_batch, n_ctx));
  size_t rows = 0;
  for (int64_t l = 0; l < c.n_layer; ++l) rows += static_cast<size_t>(layer_rows(c, n_ctx, ring, l));
  return 2 * rows * ops::kv_row_bytes(kv_type, c.kv_dim());
}

void Session::check_kv_type(const ModelConfig& c, DType kv_type) {
  if (!ops::kv_type_supported(kv_type))
    throw Error("KV cache type " + std::string(dtype_name(kv_type)) + " is not supported (f32, f16 or q8_0)");
  if (kv_type == DType::Q8_0 && c.head_dim % 32 != 0)
    throw Error("a q8_0 KV cache needs a head size that is a multiple of 32; this model's is " +
                std::to_string(c.head_dim) + " (use f16)");
}

int64_t Session::window_start(int64_t n) const {
  return std::max<int64_t>(0, n - model_.config().n_swa + 1);
}

bool Session::can_keep(int64_t n) const {
  if (n <= 0 || ring_ == 0) return true;
  // Position n attends back to window_start(n); the ring still holds the
  // last ring_ positions written.
  return window_start(n) >= n_past_ - ring_;
}

void Session::truncate(int64_t n) {
  if (n < 0 || n > n_past_ || !can_keep(n))
    throw Error("cannot truncate a session of " + std::to_string(n_past_) + " tokens to " + std::to_string(n));
  n_past_ = n;
}

void Session::prefault() {
  std::memset(k_cache_.get(), 0, cache_bytes_);
  std::memset(v_cache_.get(), 0, cache_bytes_);
}

void Session::store_kv(int64_t l, int64_t pos0, int64_t m, const float* k, const float* v) {
  uint8_t* kc = k_layer(l);
  uint8_t* vc = v_layer(l);
  const int64_t r = ring(l);
  for (int64_t i = 0; i < m; ++i) {
    const int64_t at = r == 0 ? pos0 + i : (pos0 + i) % r;
    const size_t off = static_cast<size_t>(at) * row_bytes_;
    ops::kv_store(kv_type_, k + i * kv_dim_, kv_dim_, kc + off);
    ops::kv_store(kv_type_, v + i * kv_dim_, kv_dim_, vc + off);
    if (r > 0) {  // the ring's second copy of the row
      std::memcpy(kc + off + static_cast<size_t>(r) * row_bytes_, kc + off, row_bytes_);
      std::memcpy(vc + off + static_cast<size_t>(r) * row_bytes_, vc + off, row_bytes_);
    }
  }
}

void Session::copy_row(int64_t l, int64_t pos, const uint8_t* k, const uint8_t* v) {
  const int64_t r = ring(l);
  const int64_t at = r == 0 ? pos : pos % r;
  for (int copy = 0; copy < (r > 0 ? 2 : 1); ++copy) {
    const size_t off = static_cast<size_t>(at + copy * r) * row_bytes_;
    std::memcpy(k_layer(l) + off, k, row_bytes_);
    std::memcpy(v_layer(l) + off, v, row_bytes_);
  }
}

void Session::copy_prefix(const Session& other, int64_t n) {
  if (&other.model_ != &model_ || n < 0 || n > other.n_past_ || n > n_ctx_ || !other.can_keep(n) ||
      other.kv_type_ != kv_type_)
    throw Error("cannot share a prefix of " + std::to_string(n) + " tokens between these sessions");
  const int64_t n_layer = model_.config().n_layer;
  for (int64_t l = 0; l < n_layer; ++l) {
    // Positions a later token can still read: all of them, or a window.
    const int64_t from = ring(l) > 0 || other.ring(l) > 0 ? window_start(n) : 0;
    const uint8_t* ok = other.k_cache_.get() + other.layer_offset_[static_cast<size_t>(l)];
    const uint8_t* ov = other.v_cache_.get() + other.layer_offset_[static_cast<size_t>(l)];
    const int64_t orr = other.ring(l);
    if (orr == 0 && ring(l) == 0) {  // one block of rows
      const size_t off = static_cast<size_t>(from) * row_bytes_, len = static_cast<size_t>(n - from) * row_bytes_;
      std::memcpy(k_layer(l) + off, ok + off, len);
      std::memcpy(v_layer(l) + off, ov + off, len);
      continue;
    }
    for (int64_t p = from; p < n; ++p) {
      const size_t src = static_cast<size_t>(orr == 0 ? p : p % orr) * row_bytes_;
      copy_row(l, p, ok + src, ov + src);
    }
  }
  n_past_ = n;
}

void Session::check_tokens(std::span<const int32_t> tokens) const {
  const int64_t n_vocab = model_.config().n_vocab;
  if (tokens.empty()) throw Error("no tokens to process");
  for (const int32_t id : tokens)
    if (id < 0 || id >= n_vocab)
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                  std::to_string(n_vocab - 1) + ")");
  if (static_cast<int64_t>(tokens.size()) > n_ctx_ - n_past_)
    throw Error(std::to_string(tokens.size()) + " tokens do not fit the context: " + std::to_string(n_past_) +
                " of " + std::to_string(n_ctx_) + " positions are used");
}

void Session::feed(std::span<const int32_t> tokens, ThreadPool& pool, std::vector<float>* all_logits) {
  check_tokens(tokens);
  if (!scratch_) scratch_ = std::make_unique<Scratch>(model_.config(), n_batch_);
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t n_vocab = model_.config().n_vocab;
  if (all_logits) all_logits->resize(static_cast<size_t>(n * n_vocab));
  for (int64_t i = 0; i < n; i += n_batch_) {
    const int64_t m = std::min(n_batch_, n - i);
    SeqChunk chunk{this, tokens.subspan(i, m), nullptr, all_logits != nullptr};
    chunk.adapter = adapter_;
    // Without all_logits only the final chunk's last row is needed.
    if (all_logits)
      chunk.logits = all_logits->data() + i * n_vocab;
    else if (i + m == n)
      chunk.logits = logits_.data();
    forward(model_, std::span<const SeqChunk>(&chunk, 1), *scratch_, pool);
  }
}

std::span<const float> Session::decode(int32_t token, ThreadPool& pool) {
  feed(std::span<const int32_t>(&token, 1), pool, nullptr);
  return last_logits();
}

}  // namespace slm::model
