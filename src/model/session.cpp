#include "model/session.h"

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <numeric>
#include <span>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

namespace slm::model {
namespace {

// y[n][w.rows()] = x[n][w.row_len()] . w^T for a 2-d weight, or with slice e
// of a 3-d expert tensor, through the model's repacked copy when it has one
// (Model::packed).
void matmul(const Model& model, const Weight& w, int64_t e, const float* x, int64_t n, float* y,
            ThreadPool& pool, std::vector<uint8_t>& scratch) {
  if (const kernels::PackedMatrix* p = model.packed(w.expert(e)))
    return kernels::matmul(*p, x, n, y, pool, scratch);
  kernels::matmul(w.type, w.expert(e), w.rows(), w.row_len(), x, n, y, pool, scratch);
}

void matmul(const Model& model, const Weight& w, const float* x, int64_t n, float* y, ThreadPool& pool,
            std::vector<uint8_t>& scratch) {
  matmul(model, w, 0, x, n, y, pool, scratch);
}

struct SameInput {
  const Weight* w;
  int64_t expert;  // slice of a 3-d tensor; 0 for a matrix
  float* y;
};

// Matrices that take the same input (Q, K and V; gate and up) in one fused
// pass over the pool when all of them are repacked: one wake-up and one
// finishing tail per group instead of per matrix, which is most of a small
// matrix's time when decoding.
void matmul_same_input(const Model& model, std::initializer_list<SameInput> ws, const float* x, int64_t n,
                       ThreadPool& pool, std::vector<uint8_t>& scratch) {
  kernels::PackedOut outs[4];
  size_t k = 0;
  for (const SameInput& in : ws) {
    const kernels::PackedMatrix* p = model.packed(in.w->expert(in.expert));
    if (p == nullptr || k == std::size(outs)) {
      k = 0;
      break;
    }
    outs[k++] = {p, in.y};
  }
  if (k > 0) return kernels::matmul(std::span<const kernels::PackedOut>(outs, k), x, n, pool, scratch);
  for (const SameInput& in : ws) matmul(model, *in.w, in.expert, x, n, in.y, pool, scratch);
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

Scratch::Scratch(const ModelConfig& c, int64_t max_rows) : max_rows_(max_rows) {
  const int64_t B = max_rows;
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
    expert_rows_.resize(B);
    expert_weight_.resize(B);
    chosen_.resize(B * c.n_expert_used);
    chosen_w_.resize(B * c.n_expert_used);
    expert_order_.resize(c.n_expert);
  }
  out_rows_.resize(B * c.n_embd);
  rope_.resize(B * c.n_rot);
}

void forward(const Model& model, std::span<const SeqChunk> chunks, Scratch& s, ThreadPool& pool) {
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();
  const int64_t E = c.n_embd, qd = c.q_dim(), kd = c.kv_dim();
  int64_t n = 0;
  int64_t max_ctx = 0;
  for (const SeqChunk& ch : chunks) {
    n += static_cast<int64_t>(ch.tokens.size());
    max_ctx = std::max(max_ctx, ch.session->n_ctx());
  }
  if (n == 0) return;
  if (n > s.max_rows_) throw Error("internal: batch of " + std::to_string(n) + " rows exceeds the scratch");
  // Scores for a whole context per thread (32768 positions: 128 KiB each),
  // sized on a sequence's first step so the token loop never allocates.
  const size_t need_scores = static_cast<size_t>(pool.size() * max_ctx);
  if (s.scores_.size() < need_scores) s.scores_.resize(need_scores);

  const kernels::TypeTraits& emb = kernels::traits(w.token_embd.type);
  {
    int64_t r = 0;
    for (const SeqChunk& ch : chunks)
      for (const int32_t id : ch.tokens) {
        emb.dequantize_row(w.token_embd.data + id * w.token_embd.row_size(), &s.x_[r * E], E);
        ++r;
      }
  }

  const bool neox = c.rope_order == RopeOrder::kNeox;
  {
    int64_t r = 0;
    for (const SeqChunk& ch : chunks)
      for (size_t i = 0; i < ch.tokens.size(); ++i, ++r)
        ops::rope_angles(c.n_rot, ch.session->n_past_ + static_cast<int64_t>(i), model.rope_inv_freq().data(),
                         &s.rope_[r * c.n_rot]);
  }
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights& lw = w.layers[l];
    const LayerVectors& lv = model.layer_vectors(l);

    // --- attention ---
    for (int64_t r = 0; r < n; ++r) ops::rms_norm(&s.x_[r * E], lv.attn_norm.data(), E, c.norm_eps, &s.xn_[r * E]);
    matmul_same_input(model, {{&lw.wq, 0, s.q_.data()}, {&lw.wk, 0, s.k_.data()}, {&lw.wv, 0, s.v_.data()}},
                      s.xn_.data(), n, pool, s.matmul_);
    int64_t r0 = 0;
    for (const SeqChunk& ch : chunks) {
      Session& seq = *ch.session;
      const int64_t m = static_cast<int64_t>(ch.tokens.size());
      for (int64_t i = 0; i < m; ++i) {
        const int64_t r = r0 + i;
        float* q = &s.q_[r * qd];
        float* k = &s.k_[r * kd];
        if (!lv.bq.empty()) ops::add(q, lv.bq.data(), qd);
        if (!lv.bk.empty()) ops::add(k, lv.bk.data(), kd);
        if (!lv.bv.empty()) ops::add(&s.v_[r * kd], lv.bv.data(), kd);
        const float* cs = &s.rope_[r * c.n_rot];
        for (int64_t h = 0; h < c.n_head; ++h) {
          float* qh = q + h * c.head_dim;
          if (!lv.q_norm.empty()) ops::rms_norm(qh, lv.q_norm.data(), c.head_dim, c.norm_eps, qh);
          ops::rope_apply(qh, c.n_rot, cs, neox);
        }
        for (int64_t h = 0; h < c.n_head_kv; ++h) {
          float* kh = k + h * c.head_dim;
          if (!lv.k_norm.empty()) ops::rms_norm(kh, lv.k_norm.data(), c.head_dim, c.norm_eps, kh);
          ops::rope_apply(kh, c.n_rot, cs, neox);
        }
      }
      // Append this chunk's keys and values to its cache: [n_ctx][kv_dim] per layer.
      float* kc = seq.k_layer(l);
      float* vc = seq.v_layer(l);
      std::memcpy(kc + seq.n_past_ * kd, &s.k_[r0 * kd], m * kd * sizeof(float));
      std::memcpy(vc + seq.n_past_ * kd, &s.v_[r0 * kd], m * kd * sizeof(float));
      const ops::AttentionShape shape{m, seq.n_past_, c.n_head, c.n_head_kv, c.head_dim};
      ops::attention(shape, &s.q_[r0 * qd], kc, vc, &s.attn_[r0 * qd], s.scores_.data(), pool);
      r0 += m;
    }
    matmul(model, lw.wo, s.attn_.data(), n, s.proj_.data(), pool, s.matmul_);
    for (int64_t i = 0; i < n * E; ++i) s.x_[i] += s.proj_[i];

    // --- feed-forward ---
    for (int64_t r = 0; r < n; ++r) ops::rms_norm(&s.x_[r * E], lv.ffn_norm.data(), E, c.norm_eps, &s.xn_[r * E]);
    if (!c.is_moe()) {
      matmul_same_input(model, {{&lw.ffn_gate, 0, s.gate_.data()}, {&lw.ffn_up, 0, s.up_.data()}}, s.xn_.data(),
                        n, pool, s.matmul_);
      ops::swiglu(s.gate_.data(), s.up_.data(), n * c.n_ff);
      matmul(model, lw.ffn_down, s.gate_.data(), n, s.proj_.data(), pool, s.matmul_);
    } else {
      const int64_t NE = c.n_expert, K = c.n_expert_used, ff = c.n_ff_expert;
      // Router: softmax over all experts, keep the top K (ties to the lower
      // index), optionally renormalise their weights to sum to one.
      matmul(model, lw.gate_inp, s.xn_.data(), n, s.router_.data(), pool, s.matmul_);
      std::vector<int32_t>& order = s.expert_order_;
      for (int64_t r = 0; r < n; ++r) {
        float* p = &s.router_[r * NE];
        ops::softmax(p, NE);
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + K, order.end(),
                          [p](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
        double sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += p[order[k]];
        for (int64_t k = 0; k < K; ++k) {
          s.chosen_[r * K + k] = order[k];
          s.chosen_w_[r * K + k] = c.expert_weights_norm ? static_cast<float>(p[order[k]] / sum) : p[order[k]];
        }
      }
      std::fill(s.proj_.begin(), s.proj_.begin() + n * E, 0.0f);
      // Each expert runs once over the rows routed to it, so its weights are
      // read once per step rather than once per token.
      for (int64_t e = 0; e < NE; ++e) {
        int64_t m = 0;
        for (int64_t r = 0; r < n; ++r)
          for (int64_t k = 0; k < K; ++k)
            if (s.chosen_[r * K + k] == e) {
              s.expert_rows_[m] = static_cast<int32_t>(r);
              s.expert_weight_[m] = s.chosen_w_[r * K + k];
              std::memcpy(&s.expert_in_[m * E], &s.xn_[r * E], E * sizeof(float));
              ++m;
            }
        if (m == 0) continue;
        matmul_same_input(model, {{&lw.gate_exps, e, s.gate_.data()}, {&lw.up_exps, e, s.up_.data()}},
                          s.expert_in_.data(), m, pool, s.matmul_);
        ops::swiglu(s.gate_.data(), s.up_.data(), m * ff);
        // expert_in_ is free again: reuse it for the expert's output [m][n_embd].
        matmul(model, lw.down_exps, e, s.gate_.data(), m, s.expert_in_.data(), pool, s.matmul_);
        for (int64_t i = 0; i < m; ++i) {
          float* dst = &s.proj_[s.expert_rows_[i] * E];
          const float* src = &s.expert_in_[i * E];
          for (int64_t d = 0; d < E; ++d) dst[d] += s.expert_weight_[i] * src[d];
        }
      }
    }
    for (int64_t i = 0; i < n * E; ++i) s.x_[i] += s.proj_[i];
  }

  // Only rows whose logits are wanted go through the output matrix.
  int64_t n_out = 0;
  int64_t r0 = 0;
  for (const SeqChunk& ch : chunks) {
    const int64_t m = static_cast<int64_t>(ch.tokens.size());
    if (ch.logits != nullptr) {
      for (int64_t r = ch.all_rows ? r0 : r0 + m - 1; r < r0 + m; ++r, ++n_out)
        ops::rms_norm(&s.x_[r * E], model.output_norm().data(), E, c.norm_eps, &s.out_rows_[n_out * E]);
    }
    ch.session->n_past_ += m;
    r0 += m;
  }
  if (n_out == 0) return;
  const int64_t V = c.n_vocab;
  // A single row (one sequence decoding) is written straight into its
  // session's logits, saving an n_vocab copy per token; more rows go through
  // the scratch.
  float* out = nullptr;
  if (n_out == 1)
    for (const SeqChunk& ch : chunks)
      if (ch.logits != nullptr) out = ch.session->logits_.data();
  if (out == nullptr) {
    if (s.logits_.size() < static_cast<size_t>(n_out * V)) s.logits_.resize(static_cast<size_t>(n_out * V));
    out = s.logits_.data();
  }
  matmul(model, w.output, s.out_rows_.data(), n_out, out, pool, s.matmul_);
  int64_t o = 0;
  for (const SeqChunk& ch : chunks) {
    if (ch.logits == nullptr) continue;
    const int64_t rows = ch.all_rows ? static_cast<int64_t>(ch.tokens.size()) : 1;
    const float* src = out + o * V;
    float* last = ch.session->logits_.data();
    if (ch.logits != last) std::memcpy(ch.logits, src, rows * V * sizeof(float));
    if (last != src + (rows - 1) * V) std::memcpy(last, src + (rows - 1) * V, V * sizeof(float));
    o += rows;
  }
}

}  // namespace slm::model
