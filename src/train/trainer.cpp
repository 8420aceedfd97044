// trainer.h: the training forward with saved activations, then the backward,
// as named steps mirroring model/forward.cpp:
//   embed -> per layer: attention_block, ffn_block -> output_loss
//   output_loss' -> per layer in reverse: ffn_block', attention_block'
// Activations are row-major [n][width] for one sequence.
#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "ops/ops.h"
#include "train/attention.h"
#include "train/full_params.h"
#include "train/grad_ops.h"
#include "train/linear_grad.h"
#include "train/lora_params.h"
#include "train/moe_ffn.h"

namespace slm::train {

int64_t Example::n_targets() const {
  int64_t n = 0;
  for (size_t i = 1; i < target.size(); ++i) n += target[i] != 0;
  return n;
}

namespace {

constexpr int kRoles = 7;  // q k v o gate up down: the trainable roles
int role_index(backend::Role r) {
  return static_cast<int>(r);
}

// What one layer's backward needs, saved by its forward.
struct LayerActs {
  std::vector<float> x_in;  // residual stream entering the layer [n][n_embd]
  std::vector<float> xn1;   // attention norm output [n][n_embd]
  std::vector<float> q_raw,
      k_raw;                   // W x + b, before q/k norm and RoPE [n][q_dim], [n][kv_dim]
                               // (only for models with q/k norms; else q, k are computed in place)
  std::vector<float> q, k, v;  // attention inputs [n][q_dim], [n][kv_dim], [n][kv_dim]
  std::vector<float> attn;     // attention output [n][q_dim]
  std::vector<float> x_mid;    // residual after attention [n][n_embd]
  std::vector<float> xn2;      // feed-forward norm output [n][n_embd]
  std::vector<float> g, u;     // gate, up pre-activations [n][n_ff] (silu(g) * u is recomputed)
  std::vector<float> lora_u[kRoles];  // A x of each adapted matrix [n][rank]
};

}  // namespace

std::string Trainer::unsupported_reason(const model::Model& m) {
  const model::ModelConfig& c = m.config();
  const std::string_view fam = c.family->name;
  if (fam != "llama" && fam != "qwen2" && fam != "qwen3" && fam != "qwen3moe")
    return "the '" + std::string(fam) +
           "' family is not supported by finetune (llama, qwen2, qwen3, qwen3moe are)";
  if (c.ffn_act != backend::Activation::kSilu)
    return "only SwiGLU feed-forwards are supported by finetune";
  if (c.attn_softcap > 0 || c.final_softcap > 0 || c.embd_scale != 1.0f || c.n_swa > 0)
    return "soft-capping, embedding scaling and sliding windows are not supported by finetune";
  if (c.head_dim_v != c.head_dim)
    return "value heads of another width than key heads are not supported by finetune";
  for (const model::LayerWeights& lw : m.weights().layers)
    if (!lw.post_attn_norm.empty() || !lw.post_ffn_norm.empty())
      return "post-attention / post-feed-forward norms are not supported by finetune";
  return "";
}

struct Trainer::Impl {
  const model::Model& m;
  const model::ModelConfig& c;
  const backend::Backend& be;
  LoraParams* lora;
  FullParams* full = nullptr;  // full training: the weights and their gradients
  int64_t max_n;
  ThreadPool& pool;
  bool lora_on = true;

  backend::Workspace ws;
  // Saved activations: one set per layer, or with recompute a single set
  // refilled from the layer's saved input during the backward (memory of one
  // layer instead of n_layer, for one more forward pass).
  bool recompute = false;
  std::vector<LayerActs> acts;
  std::vector<std::vector<float>> layer_in;  // recompute: each layer's input [n][n_embd]
  std::unique_ptr<MoeFfn> moe;       // the feed-forward of mixture-of-experts layers (null: dense)
  int64_t n = 0;                     // rows of the current example
  std::vector<float> x;              // residual stream [n][n_embd]
  std::vector<float> xf, xnf;        // final residual and its norm [n][n_embd]
  std::vector<float> cs;             // RoPE cos/sin per table and row [tables][n][n_rot]
  std::vector<float> proj;           // [n][n_embd]
  std::vector<float> lora_d;         // B (A x) [n][rows of the pair at hand]
  std::vector<float> lora_bt;        // B^T of the pair at hand [rank][rows]
  std::vector<float> lora_tmp;       // backward scratch
  std::vector<AttnScratch> attn_ws;  // per thread: attention blocks' scratch
  std::vector<float> dx, dxn, dtmp;  // [n][n_embd]
  std::vector<float> dq, dk, dv, dattn;  // [n][q_dim], [n][kv_dim] x 2, [n][q_dim]
  std::vector<float> dg, du, dh;         // [n][n_ff]
  std::vector<float> hbuf;               // silu(g) * u of the layer at hand [n][n_ff]
  std::vector<float> out_rows, logits;   // a chunk of output rows [chunk][n_embd], [chunk][n_vocab]
  std::vector<float> dout_rows;          // [chunk][n_embd]
  int64_t chunk = 1;
  std::vector<int32_t> toks;  // the current example's tokens (the embedding's backward)
  std::vector<float> wg_tmp;  // weight_grad's scratch
  std::vector<float> qk_dw;   // per-thread q/k norm weight gradients [threads][2][head_dim]

  Impl(const model::Model& model, LoraParams* l, int64_t max_tokens, ThreadPool& p, bool recomp)
      : m(model),
        c(model.config()),
        be(model.backend()),
        lora(l),
        max_n(max_tokens),
        pool(p),
        recompute(recomp) {
    const int64_t E = c.n_embd, qd = c.q_dim(), kd = c.kv_dim(), ff = c.n_ff, N = max_n;
    const auto sz = [](int64_t a) { return static_cast<size_t>(a); };
    acts.resize(recompute ? 1 : sz(c.n_layer));
    bool qk_norm = false;
    for (const model::LayerWeights& lw : m.weights().layers) qk_norm = qk_norm || lw.has_qk_norm();
    hbuf.resize(sz(N * ff));
    if (recompute) layer_in.assign(sz(c.n_layer), std::vector<float>(sz(N * E)));
    if (c.is_moe())
      moe = std::make_unique<MoeFfn>(m, lora, N, static_cast<int64_t>(acts.size()), pool);
    for (LayerActs& a : acts) {
      for (auto* v : {&a.x_in, &a.xn1, &a.x_mid, &a.xn2}) v->resize(sz(N * E));
      for (auto* v : {&a.q, &a.attn}) v->resize(sz(N * qd));
      for (auto* v : {&a.k, &a.v}) v->resize(sz(N * kd));
      for (auto* v : {&a.g, &a.u}) v->resize(sz(N * ff));
      if (qk_norm) {
        a.q_raw.resize(sz(N * qd));
        a.k_raw.resize(sz(N * kd));
      }
    }
    if (lora != nullptr)
      for (int64_t il = 0; il < c.n_layer; ++il) {
        const model::LayerWeights& lw = m.weights().layers[sz(il)];
        for (const backend::Linear* w :
             {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.ffn_gate, &lw.ffn_up, &lw.ffn_down})
          if (const LoraPairParams* pp = lora->find(w)) {
            std::vector<float>& u = act(il).lora_u[role_index(w->role)];
            u.resize(std::max(u.size(), sz(N * pp->rank)));
          }
      }
    for (auto* v : {&x, &xf, &xnf, &proj, &dx, &dxn, &dtmp}) v->resize(sz(N * E));
    for (auto* v : {&dq, &dattn}) v->resize(sz(N * qd));
    for (auto* v : {&dk, &dv}) v->resize(sz(N * kd));
    for (auto* v : {&dg, &du, &dh}) v->resize(sz(N * ff));
    cs.resize(sz(m.n_rope_tables() * N * c.n_rot));
    attn_ws.resize(sz(pool.size()));
    for (AttnScratch& w : attn_ws) w.reserve(N, c.head_dim);
    chunk = std::clamp<int64_t>((int64_t{1} << 23) / c.n_vocab, 1, 128);
    out_rows.resize(sz(chunk * E));
    dout_rows.resize(sz(chunk * E));
    logits.resize(sz(chunk * c.n_vocab));
  }

  // The weights the forward reads: the base's, or full training's masters.
  const model::ModelWeights& W() const { return full != nullptr ? full->weights() : m.weights(); }
  float* grad_of(const void* w) const { return full != nullptr ? full->grad_of(w) : nullptr; }
  LayerActs& act(int64_t l) { return acts[recompute ? 0 : static_cast<size_t>(l)]; }

  const LoraPairParams* pair_of(const backend::Linear& w) const {
    return lora != nullptr && lora_on ? lora->find(&w) : nullptr;
  }

  // y [n][rows] = W x (+ scale * B (A x), A x saved in u).
  void linear_fwd(const backend::Linear& w, const float* xin, float* y, std::vector<float>& u) {
    be.linear(w, xin, n, y, ws);
    const LoraPairParams* p = pair_of(w);
    if (p == nullptr) return;
    lora_forward(be, *p, 0, lora->scale(), xin, n, y, u.data(), lora_bt, lora_d, ws, pool);
  }

  // dxin (= or +=) W^T dy, plus the LoRA term's input gradient; the pair's
  // gradients accumulate.
  void linear_bwd(const backend::Linear& w, const float* xin, const std::vector<float>& u,
                  const float* dy, float* dxin, bool accumulate) {
    // Full training's masters are plain F32 views; a frozen base is read in
    // its repacked form (the file's pages stay released).
    if (full != nullptr)
      input_grad(w.view, dy, n, dxin, accumulate, pool);
    else
      input_grad(be, w, dy, n, dxin, accumulate, pool);
    if (float* g = grad_of(&w)) weight_grad(dy, xin, n, w.rows(), w.cols(), g, wg_tmp, pool);
    LoraPairParams* p = lora != nullptr && lora_on ? lora->find(&w) : nullptr;
    if (p != nullptr)
      lora_backward(*p, 0, lora->scale(), xin, u.data(), dy, n, dxin, lora_tmp, wg_tmp, pool);
  }

  void rows_rms_norm(const float* in, const std::vector<float>& w, float* out) {
    const int64_t E = c.n_embd;
    pool.parallel_for(
        n, [&](int64_t r, int) { rms_norm_fwd(in + r * E, w.data(), E, c.norm_eps, out + r * E); });
  }
  // dst += rms_norm'(x) dy, row by row.
  void rows_rms_norm_bwd_add(const float* xin, const std::vector<float>& w, const float* dy,
                             float* dst) {
    const int64_t E = c.n_embd;
    pool.parallel_for(n, [&](int64_t r, int) {
      float* t = &dtmp[static_cast<size_t>(r * E)];
      rms_norm_bwd(xin + r * E, w.data(), E, c.norm_eps, dy + r * E, t);
      for (int64_t i = 0; i < E; ++i) dst[r * E + i] += t[i];
    });
    if (float* g = grad_of(&w))
      for (int64_t r = 0; r < n; ++r) rms_norm_bwd_w(xin + r * E, E, c.norm_eps, dy + r * E, g);
  }

  const float* rope_row(int table, int64_t r) const {
    return &cs[static_cast<size_t>((table * max_n + r) * c.n_rot)];
  }

  backend::Workspace& workspace() {
    ws.pool = &pool;
    return ws;
  }

  void embed(std::span<const int32_t> tokens) {
    n = static_cast<int64_t>(tokens.size());
    for (const int32_t id : tokens)
      if (id < 0 || id >= c.n_vocab)
        throw Error("token id " + std::to_string(id) + " is out of the vocabulary");
    toks.assign(tokens.begin(), tokens.end());
    be.embed(W().token_embd, tokens, x.data());
    for (int k = 0; k < m.n_rope_tables(); ++k) {
      const float* inv_freq = m.rope_inv_freq(k, m.rope_long(max_n)).data();
      for (int64_t r = 0; r < n; ++r) {
        float* row = const_cast<float*>(rope_row(k, r));
        ops::rope_angles(c.n_rot, r, inv_freq, row);
        if (c.rope_attn_factor != 1.0f)
          for (int64_t i = 0; i < c.n_rot; ++i) row[i] *= c.rope_attn_factor;
      }
    }
  }

  AttnShape attn_shape() const {
    return {n, c.n_head, c.n_head_kv, c.head_dim,
            c.attn_scale > 0 ? c.attn_scale : 1.0f / std::sqrt(static_cast<float>(c.head_dim))};
  }

  // x += Wo attention(rope(qnorm(Wq xn + bq)), rope(knorm(Wk xn + bk)), Wv xn + bv), xn =
  // rms_norm(x)
  void attention_block(int64_t l) {
    const model::LayerWeights& lw = W().layers[static_cast<size_t>(l)];
    LayerActs& a = act(l);
    const int64_t E = c.n_embd, qd = c.q_dim(), kd = c.kv_dim(), hd = c.head_dim;
    std::memcpy(a.x_in.data(), x.data(), static_cast<size_t>(n * E) * sizeof(float));
    rows_rms_norm(a.x_in.data(), lw.attn_norm, a.xn1.data());
    // Without q/k norms the backward needs no pre-RoPE copy: q, k in place.
    float* q_raw = a.q_raw.empty() ? a.q.data() : a.q_raw.data();
    float* k_raw = a.k_raw.empty() ? a.k.data() : a.k_raw.data();
    linear_fwd(lw.wq, a.xn1.data(), q_raw, a.lora_u[0]);
    linear_fwd(lw.wk, a.xn1.data(), k_raw, a.lora_u[1]);
    linear_fwd(lw.wv, a.xn1.data(), a.v.data(), a.lora_u[2]);
    const bool neox = c.rope_order == model::RopeOrder::kNeox;
    const int table = c.layers[static_cast<size_t>(l)].rope_table;
    pool.parallel_for(n, [&](int64_t r, int) {
      float* qr = q_raw + r * qd;
      float* kr = k_raw + r * kd;
      if (!lw.bq.empty())
        for (int64_t i = 0; i < qd; ++i) qr[i] += lw.bq[static_cast<size_t>(i)];
      if (!lw.bk.empty())
        for (int64_t i = 0; i < kd; ++i) kr[i] += lw.bk[static_cast<size_t>(i)];
      if (!lw.bv.empty())
        for (int64_t i = 0; i < kd; ++i)
          a.v[static_cast<size_t>(r * kd + i)] += lw.bv[static_cast<size_t>(i)];
      float* q = &a.q[static_cast<size_t>(r * qd)];
      float* k = &a.k[static_cast<size_t>(r * kd)];
      if (q != qr) std::memcpy(q, qr, static_cast<size_t>(qd) * sizeof(float));
      if (k != kr) std::memcpy(k, kr, static_cast<size_t>(kd) * sizeof(float));
      for (int64_t h = 0; h < c.n_head; ++h) {
        if (!lw.q_norm.empty())
          rms_norm_fwd(q + h * hd, lw.q_norm.data(), hd, c.norm_eps, q + h * hd);
        rope(q + h * hd, c.n_rot, rope_row(table, r), neox, false);
      }
      for (int64_t h = 0; h < c.n_head_kv; ++h) {
        if (!lw.k_norm.empty())
          rms_norm_fwd(k + h * hd, lw.k_norm.data(), hd, c.norm_eps, k + h * hd);
        rope(k + h * hd, c.n_rot, rope_row(table, r), neox, false);
      }
    });
    const AttnShape s = attn_shape();
    pool.parallel_for(c.n_head, [&](int64_t h, int t) {
      attention_fwd_blocks(s, a.q.data(), a.k.data(), a.v.data(), a.attn.data(), h,
                           attn_ws[static_cast<size_t>(t)]);
    });
    linear_fwd(lw.wo, a.attn.data(), proj.data(), a.lora_u[3]);
    for (int64_t i = 0; i < n * E; ++i)
      a.x_mid[static_cast<size_t>(i)] =
          a.x_in[static_cast<size_t>(i)] + proj[static_cast<size_t>(i)];
  }

  // x = x_mid + W_down (silu(W_gate xn) * W_up xn), xn = rms_norm(x_mid)
  void ffn_block(int64_t l) {
    const model::LayerWeights& lw = W().layers[static_cast<size_t>(l)];
    LayerActs& a = act(l);
    const int64_t E = c.n_embd, ff = c.n_ff;
    rows_rms_norm(a.x_mid.data(), lw.ffn_norm, a.xn2.data());
    if (moe) {
      moe->forward(lw, recompute ? 0 : l, a.xn2.data(), n, proj.data(), ws, lora_on);
    } else {
      linear_fwd(lw.ffn_gate, a.xn2.data(), a.g.data(), a.lora_u[4]);
      linear_fwd(lw.ffn_up, a.xn2.data(), a.u.data(), a.lora_u[5]);
      swiglu_fwd(a.g.data(), a.u.data(), n * ff, hbuf.data());
      linear_fwd(lw.ffn_down, hbuf.data(), proj.data(), a.lora_u[6]);
    }
    for (int64_t i = 0; i < n * E; ++i)
      x[static_cast<size_t>(i)] = a.x_mid[static_cast<size_t>(i)] + proj[static_cast<size_t>(i)];
  }

  void forward(std::span<const int32_t> tokens) {
    workspace();
    embed(tokens);
    for (int64_t l = 0; l < c.n_layer; ++l) {
      if (recompute)
        std::memcpy(layer_in[static_cast<size_t>(l)].data(), x.data(),
                    static_cast<size_t>(n * c.n_embd) * sizeof(float));
      attention_block(l);
      ffn_block(l);
    }
    std::memcpy(xf.data(), x.data(), static_cast<size_t>(n * c.n_embd) * sizeof(float));
    rows_rms_norm(xf.data(), W().output_norm, xnf.data());
  }

  // The loss over the example's targets; with backward, dx = d(grad_scale * loss)/d xf.
  LossSum output_loss(const Example& ex, bool backward, float grad_scale) {
    const int64_t E = c.n_embd, V = c.n_vocab;
    LossSum out;
    if (backward) std::fill(dxn.begin(), dxn.begin() + n * E, 0.0f);
    std::vector<int64_t> rows;  // rows whose next token is a target
    for (int64_t i = 0; i + 1 < n; ++i)
      if (ex.target[static_cast<size_t>(i + 1)] != 0) rows.push_back(i);
    const backend::Linear& w_out = W().output;
    for (size_t r0 = 0; r0 < rows.size(); r0 += static_cast<size_t>(chunk)) {
      const int64_t mrows = std::min<int64_t>(chunk, static_cast<int64_t>(rows.size() - r0));
      for (int64_t j = 0; j < mrows; ++j)
        std::memcpy(&out_rows[static_cast<size_t>(j * E)],
                    &xnf[static_cast<size_t>(rows[r0 + j] * E)],
                    static_cast<size_t>(E) * sizeof(float));
      be.linear(w_out, out_rows.data(), mrows, logits.data(), ws);
      std::vector<double> losses(static_cast<size_t>(mrows));
      pool.parallel_for(mrows, [&](int64_t j, int) {
        float* z = &logits[static_cast<size_t>(j * V)];
        losses[static_cast<size_t>(j)] =
            cross_entropy(z, V, ex.tokens[static_cast<size_t>(rows[r0 + j] + 1)], grad_scale,
                          backward ? z : nullptr);
      });
      for (const double l : losses) out.loss += l;
      out.n_targets += mrows;
      if (!backward) continue;
      if (full != nullptr)
        input_grad(w_out.view, logits.data(), mrows, dout_rows.data(), false, pool);
      else
        input_grad(be, w_out, logits.data(), mrows, dout_rows.data(), false, pool);
      if (float* g = grad_of(&w_out))
        weight_grad(logits.data(), out_rows.data(), mrows, V, E, g, wg_tmp, pool);
      for (int64_t j = 0; j < mrows; ++j)
        std::memcpy(&dxn[static_cast<size_t>(rows[r0 + j] * E)],
                    &dout_rows[static_cast<size_t>(j * E)], static_cast<size_t>(E) * sizeof(float));
    }
    if (backward) {
      std::fill(dx.begin(), dx.begin() + n * E, 0.0f);
      rows_rms_norm_bwd_add(xf.data(), W().output_norm, dxn.data(), dx.data());
    }
    return out;
  }

  // dx: gradient at the layer's output -> at its FFN input (x_mid).
  void ffn_block_bwd(int64_t l) {
    const model::LayerWeights& lw = W().layers[static_cast<size_t>(l)];
    LayerActs& a = act(l);
    const int64_t ff = c.n_ff;
    if (moe) {
      moe->backward(lw, recompute ? 0 : l, a.xn2.data(), dx.data(), n, dxn.data(), lora_on);
      rows_rms_norm_bwd_add(a.x_mid.data(), lw.ffn_norm, dxn.data(), dx.data());
      return;
    }
    swiglu_fwd(a.g.data(), a.u.data(), n * ff, hbuf.data());  // the same bits as the forward's
    linear_bwd(lw.ffn_down, hbuf.data(), a.lora_u[6], dx.data(), dh.data(), false);
    pool.parallel_for(n, [&](int64_t r, int) {
      const size_t o = static_cast<size_t>(r * ff);
      swiglu_bwd(&a.g[o], &a.u[o], &dh[o], ff, &dg[o], &du[o]);
    });
    linear_bwd(lw.ffn_gate, a.xn2.data(), a.lora_u[4], dg.data(), dxn.data(), false);
    linear_bwd(lw.ffn_up, a.xn2.data(), a.lora_u[5], du.data(), dxn.data(), true);
    rows_rms_norm_bwd_add(a.x_mid.data(), lw.ffn_norm, dxn.data(), dx.data());
  }

  // dx: gradient at x_mid -> at the layer's input.
  void attention_block_bwd(int64_t l) {
    const model::LayerWeights& lw = W().layers[static_cast<size_t>(l)];
    LayerActs& a = act(l);
    const int64_t qd = c.q_dim(), kd = c.kv_dim(), hd = c.head_dim;
    linear_bwd(lw.wo, a.attn.data(), a.lora_u[3], dx.data(), dattn.data(), false);
    const AttnShape s = attn_shape();
    pool.parallel_for(c.n_head_kv, [&](int64_t g, int t) {
      attention_bwd_blocks(s, a.q.data(), a.k.data(), a.v.data(), a.attn.data(), dattn.data(),
                           dq.data(), dk.data(), dv.data(), g, attn_ws[static_cast<size_t>(t)]);
    });
    const bool neox = c.rope_order == model::RopeOrder::kNeox;
    const int table = c.layers[static_cast<size_t>(l)].rope_table;
    float* gqn = grad_of(&lw.q_norm);
    float* gkn = grad_of(&lw.k_norm);
    if (gqn != nullptr || gkn != nullptr)
      qk_dw.assign(static_cast<size_t>(pool.size() * 2 * hd), 0.0f);
    pool.parallel_for(n, [&](int64_t r, int t) {
      float* q = &dq[static_cast<size_t>(r * qd)];
      float* k = &dk[static_cast<size_t>(r * kd)];
      for (int64_t h = 0; h < c.n_head; ++h) {
        rope(q + h * hd, c.n_rot, rope_row(table, r), neox, true);
        if (lw.q_norm.empty()) continue;  // q_raw is kept only for models with q/k norms
        const float* raw = &a.q_raw[static_cast<size_t>(r * qd + h * hd)];
        if (gqn != nullptr)
          rms_norm_bwd_w(raw, hd, c.norm_eps, q + h * hd, &qk_dw[static_cast<size_t>(t * 2 * hd)]);
        rms_norm_bwd(raw, lw.q_norm.data(), hd, c.norm_eps, q + h * hd, q + h * hd);
      }
      for (int64_t h = 0; h < c.n_head_kv; ++h) {
        rope(k + h * hd, c.n_rot, rope_row(table, r), neox, true);
        if (lw.k_norm.empty()) continue;
        const float* raw = &a.k_raw[static_cast<size_t>(r * kd + h * hd)];
        if (gkn != nullptr)
          rms_norm_bwd_w(raw, hd, c.norm_eps, k + h * hd,
                         &qk_dw[static_cast<size_t>((t * 2 + 1) * hd)]);
        rms_norm_bwd(raw, lw.k_norm.data(), hd, c.norm_eps, k + h * hd, k + h * hd);
      }
    });
    // Full training: the per-thread q/k norm sums, and the biases (their
    // gradient is the row sum of the pre-norm gradient).
    for (int64_t t = 0; t < pool.size() && (gqn != nullptr || gkn != nullptr); ++t)
      for (int64_t i = 0; i < hd; ++i) {
        if (gqn != nullptr) gqn[i] += qk_dw[static_cast<size_t>(t * 2 * hd + i)];
        if (gkn != nullptr) gkn[i] += qk_dw[static_cast<size_t>((t * 2 + 1) * hd + i)];
      }
    for (auto [bias, d, width] :
         {std::tuple{&lw.bq, &dq, qd}, std::tuple{&lw.bk, &dk, kd}, std::tuple{&lw.bv, &dv, kd}})
      if (float* g = grad_of(bias))
        for (int64_t r = 0; r < n; ++r)
          for (int64_t i = 0; i < width; ++i) g[i] += (*d)[static_cast<size_t>(r * width + i)];
    linear_bwd(lw.wq, a.xn1.data(), a.lora_u[0], dq.data(), dxn.data(), false);
    linear_bwd(lw.wk, a.xn1.data(), a.lora_u[1], dk.data(), dxn.data(), true);
    linear_bwd(lw.wv, a.xn1.data(), a.lora_u[2], dv.data(), dxn.data(), true);
    rows_rms_norm_bwd_add(a.x_in.data(), lw.attn_norm, dxn.data(), dx.data());
  }

  void backward() {
    for (int64_t l = c.n_layer - 1; l >= 0; --l) {
      if (recompute) {  // the same bits as the first forward: same inputs, same ops
        std::memcpy(x.data(), layer_in[static_cast<size_t>(l)].data(),
                    static_cast<size_t>(n * c.n_embd) * sizeof(float));
        attention_block(l);
        ffn_block(l);
      }
      ffn_block_bwd(l);
      attention_block_bwd(l);
    }
    // The embedding: each row's gradient scatters onto its token's row.
    if (float* g = grad_of(&W().token_embd)) {
      const int64_t E = c.n_embd;
      for (int64_t r = 0; r < n; ++r) {
        float* row = g + static_cast<int64_t>(toks[static_cast<size_t>(r)]) * E;
        for (int64_t i = 0; i < E; ++i) row[i] += dx[static_cast<size_t>(r * E + i)];
      }
    }
  }
};

Trainer::Trainer(const model::Model& model, LoraParams* lora, int64_t max_tokens, ThreadPool& pool,
                 bool recompute) {
  if (const std::string why = unsupported_reason(model); !why.empty())
    throw Error(model.file().name() + ": " + why);
  if (max_tokens < 1) throw Error("internal: a trainer needs room for at least one token");
  impl_ = std::make_unique<Impl>(model, lora, max_tokens, pool, recompute);
}

Trainer::Trainer(const model::Model& model, FullParams& full, int64_t max_tokens, ThreadPool& pool,
                 bool recompute)
    : Trainer(model, static_cast<LoraParams*>(nullptr), max_tokens, pool, recompute) {
  impl_->full = &full;
  if (impl_->moe) impl_->moe->set_full(&full);
}

Trainer::~Trainer() = default;

LossSum Trainer::run(const Example& ex, bool backward, float grad_scale) {
  const int64_t n = static_cast<int64_t>(ex.tokens.size());
  if (n > impl_->max_n)
    throw Error("internal: an example of " + std::to_string(n) + " tokens exceeds the trainer's " +
                std::to_string(impl_->max_n));
  if (ex.target.size() != ex.tokens.size())
    throw Error("internal: an example's target mask does not match its tokens");
  if (n == 0) return {};
  impl_->lora_on = lora_on_;
  impl_->forward(ex.tokens);
  const bool grads = backward && ((impl_->lora != nullptr && lora_on_) || impl_->full != nullptr);
  const LossSum loss = impl_->output_loss(ex, grads, grad_scale);
  if (grads) impl_->backward();
  return loss;
}

void Trainer::logits(std::span<const int32_t> tokens, std::vector<float>& out) {
  Impl& im = *impl_;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n > im.max_n) throw Error("internal: too many tokens for the trainer");
  im.lora_on = lora_on_;
  im.forward(tokens);
  out.resize(static_cast<size_t>(n * im.c.n_vocab));
  im.be.linear(im.W().output, im.xnf.data(), n, out.data(), im.ws);
}

}  // namespace slm::train
