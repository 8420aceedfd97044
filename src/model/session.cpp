#include "model/session.h"

#include <algorithm>
#include <cstring>
#include <span>

#include "base/error.h"

namespace slm::model {

Session::Session(const Model& model, const SessionOptions& o) : model_(model) {
  const ModelConfig& c = model.config();
  n_ctx_ = o.n_ctx > 0 ? o.n_ctx : c.n_ctx_train;
  if (n_ctx_ > c.n_ctx_train && !o.allow_beyond_train_ctx)
    throw ContextBeyondTrainingError("context of " + std::to_string(n_ctx_) + " tokens exceeds the " +
                                     std::to_string(c.n_ctx_train) + " the model was trained for");
  if (n_ctx_ > (int64_t{1} << 24)) throw Error("context of " + std::to_string(n_ctx_) + " tokens is too large");
  n_batch_ = std::min(std::clamp<int64_t>(o.n_batch, 1, 4096), n_ctx_);
  kv_dim_ = c.kv_dim();
  const size_t cache = static_cast<size_t>(c.n_layer * n_ctx_ * kv_dim_);
  // Left uninitialised on purpose: attention reads only positions already
  // written, and untouched pages of a long context never become resident.
  k_cache_.reset(new float[cache]);
  v_cache_.reset(new float[cache]);
  logits_.assign(c.n_vocab, 0.0f);
}

Session::~Session() = default;

void Session::truncate(int64_t n) {
  if (n < 0 || n > n_past_)
    throw Error("cannot truncate a session of " + std::to_string(n_past_) + " tokens to " + std::to_string(n));
  n_past_ = n;
}

void Session::copy_prefix(const Session& other, int64_t n) {
  if (&other.model_ != &model_ || n < 0 || n > other.n_past_ || n > n_ctx_)
    throw Error("cannot share a prefix of " + std::to_string(n) + " tokens between these sessions");
  const int64_t n_layer = model_.config().n_layer;
  for (int64_t l = 0; l < n_layer; ++l) {
    std::memcpy(k_layer(l), other.k_cache_.get() + l * other.n_ctx_ * kv_dim_, n * kv_dim_ * sizeof(float));
    std::memcpy(v_layer(l), other.v_cache_.get() + l * other.n_ctx_ * kv_dim_, n * kv_dim_ * sizeof(float));
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
