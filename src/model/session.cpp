#include "model/session.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

namespace slm::model {
namespace {

// y[n][w.rows()] = x[n][w.row_len()] . w^T
void matmul(const Weight& w, const float* x, int64_t n, float* y, ThreadPool& pool,
            std::vector<uint8_t>& scratch) {
  kernels::matmul(w.type, w.data, w.rows(), w.row_len(), x, n, y, pool, scratch);
}

void matmul_expert(const Weight& w, int64_t e, const float* x, int64_t n, float* y,
                   ThreadPool& pool, std::vector<uint8_t>& scratch) {
  kernels::matmul(w.type, w.expert(e), w.ne[1], w.ne[0], x, n, y, pool, scratch);
}

}  // namespace

Session::Session(const Model& model, const SessionOptions& o) : model_(model) {
  const ModelConfig& c = model.config();
  n_ctx_ = o.n_ctx > 0 ? o.n_ctx : c.n_ctx_train;
  if (n_ctx_ > c.n_ctx_train && !o.allow_beyond_train_ctx)
    throw Error("context of " + std::to_string(n_ctx_) + " tokens exceeds the " +
                std::to_string(c.n_ctx_train) +
                " the model was trained for (allow it explicitly to go beyond)");
  if (n_ctx_ > (int64_t{1} << 24)) throw Error("context of " + std::to_string(n_ctx_) + " tokens is too large");
  n_batch_ = std::clamp<int64_t>(o.n_batch, 1, 4096);
  n_batch_ = std::min(n_batch_, n_ctx_);
  n_vocab_ = c.n_vocab;
  const int64_t B = n_batch_;
  const size_t cache = static_cast<size_t>(c.n_layer * n_ctx_ * c.kv_dim());
  k_cache_.assign(cache, 0.0f);
  v_cache_.assign(cache, 0.0f);
  x_.resize(B * c.n_embd);
  xn_.resize(B * c.n_embd);
  q_.resize(B * c.q_dim());
  k_.resize(B * c.kv_dim());
  v_.resize(B * c.kv_dim());
  attn_.resize(B * c.q_dim());
  proj_.resize(B * c.n_embd);
  const int64_t ff = std::max(c.n_ff, c.n_ff_expert);
  gate_.resize(B * ff);
  up_.resize(B * ff);
  if (c.is_moe()) {
    router_.resize(B * c.n_expert);
    expert_in_.resize(B * c.n_embd);
    expert_tokens_.resize(B);
    expert_weight_.resize(B);
    chosen_.resize(B * c.n_expert_used);
    chosen_w_.resize(B * c.n_expert_used);
    expert_order_.resize(c.n_expert);
  }
  logits_.resize(n_vocab_);
  out_norm_.resize(B * c.n_embd);
}

void Session::truncate(int64_t n) {
  if (n < 0 || n > n_past_) throw Error("cannot truncate a session of " + std::to_string(n_past_) +
                                        " tokens to " + std::to_string(n));
  n_past_ = n;
}

void Session::feed(std::span<const int32_t> tokens, ThreadPool& pool, std::vector<float>* all_logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) throw Error("no tokens to process");
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= n_vocab_)
      throw Error("token id " + std::to_string(tokens[i]) + " is outside the vocabulary (0.." +
                  std::to_string(n_vocab_ - 1) + ")");
  if (n > n_ctx_ - n_past_)
    throw Error(std::to_string(n) + " tokens do not fit the context: " + std::to_string(n_past_) +
                " of " + std::to_string(n_ctx_) + " positions are used");
  const size_t need_scores = static_cast<size_t>(pool.size()) * n_ctx_;
  if (scores_.size() < need_scores) scores_.resize(need_scores);
  if (all_logits) all_logits->resize(static_cast<size_t>(n * n_vocab_));
  for (int64_t i = 0; i < n; i += n_batch_) {
    const int64_t m = std::min(n_batch_, n - i);
    float* out = all_logits ? all_logits->data() + i * n_vocab_ : nullptr;
    forward_chunk(tokens.subspan(i, m), pool, out, all_logits != nullptr);
  }
}

std::span<const float> Session::decode(int32_t token, ThreadPool& pool) {
  feed(std::span<const int32_t>(&token, 1), pool, nullptr);
  return last_logits();
}

void Session::forward_chunk(std::span<const int32_t> tokens, ThreadPool& pool, float* logits_out,
                            bool all_rows) {
  const ModelConfig& c = model_.config();
  const ModelWeights& w = model_.weights();
  const int64_t n = static_cast<int64_t>(tokens.size());
  const kernels::TypeTraits& emb = kernels::traits(w.token_embd.type);
  for (int64_t t = 0; t < n; ++t)
    emb.dequantize_row(w.token_embd.data + tokens[t] * w.token_embd.row_size(), &x_[t * c.n_embd], c.n_embd);

  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerVectors& lv = model_.layer_vectors(l);
    for (int64_t t = 0; t < n; ++t)
      ops::rms_norm(&x_[t * c.n_embd], lv.attn_norm.data(), c.n_embd, c.norm_eps, &xn_[t * c.n_embd]);
    attention_block(l, n, pool);
    for (int64_t i = 0; i < n * c.n_embd; ++i) x_[i] += proj_[i];

    for (int64_t t = 0; t < n; ++t)
      ops::rms_norm(&x_[t * c.n_embd], lv.ffn_norm.data(), c.n_embd, c.norm_eps, &xn_[t * c.n_embd]);
    if (c.is_moe())
      ffn_moe(l, n, pool);
    else
      ffn_dense(l, n, pool);
    for (int64_t i = 0; i < n * c.n_embd; ++i) x_[i] += proj_[i];
  }
  n_past_ += n;

  // Only the rows whose logits are wanted go through the output matrix.
  const int64_t first = all_rows ? 0 : n - 1;
  const int64_t rows = n - first;
  for (int64_t t = first; t < n; ++t)
    ops::rms_norm(&x_[t * c.n_embd], model_.output_norm().data(), c.n_embd, c.norm_eps,
                  &out_norm_[(t - first) * c.n_embd]);
  float* dst = logits_out ? logits_out : logits_.data();
  matmul(w.output, out_norm_.data(), rows, dst, pool, matmul_scratch_);
  if (logits_out) std::memcpy(logits_.data(), dst + (rows - 1) * n_vocab_, n_vocab_ * sizeof(float));
}

void Session::attention_block(int64_t l, int64_t n, ThreadPool& pool) {
  const ModelConfig& c = model_.config();
  const LayerWeights& lw = model_.weights().layers[l];
  const LayerVectors& lv = model_.layer_vectors(l);
  matmul(lw.wq, xn_.data(), n, q_.data(), pool, matmul_scratch_);
  matmul(lw.wk, xn_.data(), n, k_.data(), pool, matmul_scratch_);
  matmul(lw.wv, xn_.data(), n, v_.data(), pool, matmul_scratch_);
  const int64_t qd = c.q_dim(), kd = c.kv_dim();
  const bool neox = c.rope_order == RopeOrder::kNeox;
  const float* inv_freq = model_.rope_inv_freq().data();
  for (int64_t t = 0; t < n; ++t) {
    float* q = &q_[t * qd];
    float* k = &k_[t * kd];
    if (!lv.bq.empty()) ops::add(q, lv.bq.data(), qd);
    if (!lv.bk.empty()) ops::add(k, lv.bk.data(), kd);
    if (!lv.bv.empty()) ops::add(&v_[t * kd], lv.bv.data(), kd);
    const int64_t pos = n_past_ + t;
    for (int64_t h = 0; h < c.n_head; ++h) {
      float* qh = q + h * c.head_dim;
      if (!lv.q_norm.empty()) ops::rms_norm(qh, lv.q_norm.data(), c.head_dim, c.norm_eps, qh);
      ops::rope(qh, c.n_rot, pos, inv_freq, neox);
    }
    for (int64_t h = 0; h < c.n_head_kv; ++h) {
      float* kh = k + h * c.head_dim;
      if (!lv.k_norm.empty()) ops::rms_norm(kh, lv.k_norm.data(), c.head_dim, c.norm_eps, kh);
      ops::rope(kh, c.n_rot, pos, inv_freq, neox);
    }
  }
  // Append this chunk's keys and values to the cache: [n_ctx][kv_dim] per layer.
  float* kc = &k_cache_[static_cast<size_t>(l * n_ctx_ * kd)];
  float* vc = &v_cache_[static_cast<size_t>(l * n_ctx_ * kd)];
  std::memcpy(kc + n_past_ * kd, k_.data(), n * kd * sizeof(float));
  std::memcpy(vc + n_past_ * kd, v_.data(), n * kd * sizeof(float));
  const ops::AttentionShape shape{n, n_past_, c.n_head, c.n_head_kv, c.head_dim};
  ops::attention(shape, q_.data(), kc, vc, attn_.data(), scores_.data(), pool);
  matmul(lw.wo, attn_.data(), n, proj_.data(), pool, matmul_scratch_);
}

void Session::ffn_dense(int64_t l, int64_t n, ThreadPool& pool) {
  const ModelConfig& c = model_.config();
  const LayerWeights& lw = model_.weights().layers[l];
  matmul(lw.ffn_gate, xn_.data(), n, gate_.data(), pool, matmul_scratch_);
  matmul(lw.ffn_up, xn_.data(), n, up_.data(), pool, matmul_scratch_);
  ops::swiglu(gate_.data(), up_.data(), n * c.n_ff);
  matmul(lw.ffn_down, gate_.data(), n, proj_.data(), pool, matmul_scratch_);
}

void Session::ffn_moe(int64_t l, int64_t n, ThreadPool& pool) {
  const ModelConfig& c = model_.config();
  const LayerWeights& lw = model_.weights().layers[l];
  const int64_t E = c.n_expert, K = c.n_expert_used, ff = c.n_ff_expert;
  // Router: softmax over all experts, keep the top K (ties to the lower index),
  // optionally renormalise their weights to sum to one.
  matmul(lw.gate_inp, xn_.data(), n, router_.data(), pool, matmul_scratch_);
  std::vector<int32_t>& order = expert_order_;
  for (int64_t t = 0; t < n; ++t) {
    float* p = &router_[t * E];
    ops::softmax(p, E);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(),
                      [p](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    double sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += p[order[k]];
    for (int64_t k = 0; k < K; ++k) {
      chosen_[t * K + k] = order[k];
      chosen_w_[t * K + k] = c.expert_weights_norm ? static_cast<float>(p[order[k]] / sum) : p[order[k]];
    }
  }
  std::fill(proj_.begin(), proj_.begin() + n * c.n_embd, 0.0f);
  // Each expert runs once over the tokens routed to it, so its weights are
  // read once per chunk rather than once per token.
  for (int64_t e = 0; e < E; ++e) {
    int64_t m = 0;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t k = 0; k < K; ++k)
        if (chosen_[t * K + k] == e) {
          expert_tokens_[m] = static_cast<int32_t>(t);
          expert_weight_[m] = chosen_w_[t * K + k];
          std::memcpy(&expert_in_[m * c.n_embd], &xn_[t * c.n_embd], c.n_embd * sizeof(float));
          ++m;
        }
    if (m == 0) continue;
    matmul_expert(lw.gate_exps, e, expert_in_.data(), m, gate_.data(), pool, matmul_scratch_);
    matmul_expert(lw.up_exps, e, expert_in_.data(), m, up_.data(), pool, matmul_scratch_);
    ops::swiglu(gate_.data(), up_.data(), m * ff);
    // expert_in_ is free again: reuse it for the expert's output [m][n_embd].
    matmul_expert(lw.down_exps, e, gate_.data(), m, expert_in_.data(), pool, matmul_scratch_);
    for (int64_t i = 0; i < m; ++i) {
      float* dst = &proj_[expert_tokens_[i] * c.n_embd];
      const float* src = &expert_in_[i * c.n_embd];
      for (int64_t d = 0; d < c.n_embd; ++d) dst[d] += expert_weight_[i] * src[d];
    }
  }
}

}  // namespace slm::model
