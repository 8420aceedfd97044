// moe_ffn.h: the mixture-of-experts feed-forward for training.
#include "train/moe_ffn.h"

#include <algorithm>
#include <cstring>

#include "base/thread_pool.h"
#include "model/model.h"
#include "train/full_params.h"
#include "train/grad_ops.h"
#include "train/linear_grad.h"
#include "train/lora_params.h"
#include "train/moe_ops.h"

namespace slm::train {

namespace {
size_t sz(int64_t v) {
  return static_cast<size_t>(v);
}
}  // namespace

MoeFfn::MoeFfn(const model::Model& model, LoraParams* lora, int64_t max_n, int64_t n_slots,
               ThreadPool& pool)
    : m_(model), be_(model.backend()), lora_(lora), pool_(pool) {
  const model::ModelConfig& c = model.config();
  E_ = c.n_embd;
  NE_ = c.n_expert;
  K_ = c.n_expert_used;
  ff_ = c.n_ff_expert;
  renormalize_ = c.expert_weights_norm;
  const int64_t N = max_n, NK = max_n * K_;
  saved_.resize(sz(n_slots));
  for (Saved& s : saved_) {
    s.probs.resize(sz(N * NE_));
    s.chosen.resize(sz(NK));
    s.w.resize(sz(NK));
    s.off.resize(sz(NE_ + 1));
    s.row.resize(sz(NK));
    s.slot.resize(sz(NK));
    s.g.resize(sz(NK * ff_));
    s.u.resize(sz(NK * ff_));
    s.y.resize(sz(NK * E_));
    if (lora_ != nullptr)
      for (const LoraPairParams& p : lora_->pairs())
        if (p.n_expert > 0) {
          const int which = p.w->role == backend::Role::kGate ? 0
                            : p.w->role == backend::Role::kUp ? 1
                                                              : 2;
          s.lu[which].resize(std::max(s.lu[which].size(), sz(NK * p.rank)));
        }
  }
  for (auto* v : {&xin_, &dy_, &dxe_}) v->resize(sz(N * E_));
  for (auto* v : {&h_, &dh_, &dg_, &du_}) v->resize(sz(N * ff_));
  dw_.resize(sz(NK));
  dlogits_.resize(sz(N * NE_));
  dp_.resize(sz(N * NE_));
  order_.resize(sz(N * NE_));
}

MoeFfn::Stacks MoeFfn::stacks(const model::LayerWeights& lw, bool lora_on) const {
  Stacks st;
  if (lora_ == nullptr || !lora_on) return st;
  st.p[0] = lora_->find_stack(lw.gate_exps);
  st.p[1] = lora_->find_stack(lw.up_exps);
  st.p[2] = lora_->find_stack(lw.down_exps);
  return st;
}

void MoeFfn::forward(const model::LayerWeights& lw, int64_t slot, const float* xn, int64_t n,
                     float* proj, backend::Workspace& ws, bool lora_on) {
  Saved& s = saved_[sz(slot)];
  const Stacks st = stacks(lw, lora_on);
  const float scale = lora_ != nullptr ? lora_->scale() : 0.0f;
  // Expert e's LoRA term on one of its products (j: gate, up, down) over
  // the entries o..o + mrows.
  const auto lora_term = [&](int j, int64_t e, int64_t o, const float* in, int64_t mrows,
                             float* out) {
    const LoraPairParams* p = st.p[j];
    if (p == nullptr) return;
    lora_forward(be_, *p, e, scale, in, mrows, out, &s.lu[j][sz(o * p->rank)], lora_bt_, lora_d_,
                 ws, pool_);
  };
  be_.linear(lw.gate_inp, xn, n, s.probs.data(), ws);  // router logits [n][n_expert]
  pool_.parallel_for(n, [&](int64_t r, int) {
    float* p = &s.probs[sz(r * NE_)];
    be_.softmax(p, NE_);
    moe_route_fwd(p, NE_, K_, renormalize_, &order_[sz(r * NE_)], &s.chosen[sz(r * K_)],
                  &s.w[sz(r * K_)]);
  });
  // Group the routed entries by expert, rows in order (model/forward.cpp's order).
  std::fill(s.off.begin(), s.off.end(), 0);
  for (int64_t i = 0; i < n * K_; ++i) ++s.off[sz(s.chosen[sz(i)] + 1)];
  for (int64_t e = 0; e < NE_; ++e) s.off[sz(e + 1)] += s.off[sz(e)];
  std::vector<int32_t>& fill = order_;  // free again: reused as per-expert cursors
  std::copy(s.off.begin(), s.off.end() - 1, fill.begin());
  for (int64_t r = 0; r < n; ++r)
    for (int64_t k = 0; k < K_; ++k) {
      const int32_t e = s.chosen[sz(r * K_ + k)];
      const int32_t at = fill[sz(e)]++;
      s.row[sz(at)] = static_cast<int32_t>(r);
      s.slot[sz(at)] = static_cast<int32_t>(k);
    }
  std::fill(proj, proj + n * E_, 0.0f);
  for (int64_t e = 0; e < NE_; ++e) {
    const int64_t o = s.off[sz(e)], mrows = s.off[sz(e + 1)] - o;
    if (mrows == 0) continue;
    for (int64_t i = 0; i < mrows; ++i)
      std::memcpy(&xin_[sz(i * E_)], xn + s.row[sz(o + i)] * E_, sz(E_) * sizeof(float));
    float* g = &s.g[sz(o * ff_)];
    float* u = &s.u[sz(o * ff_)];
    float* y = &s.y[sz(o * E_)];
    be_.linear(lw.gate_exps[sz(e)], xin_.data(), mrows, g, ws);
    lora_term(0, e, o, xin_.data(), mrows, g);
    be_.linear(lw.up_exps[sz(e)], xin_.data(), mrows, u, ws);
    lora_term(1, e, o, xin_.data(), mrows, u);
    swiglu_fwd(g, u, mrows * ff_, h_.data());
    be_.linear(lw.down_exps[sz(e)], h_.data(), mrows, y, ws);
    lora_term(2, e, o, h_.data(), mrows, y);
    for (int64_t i = 0; i < mrows; ++i) {
      const int64_t r = s.row[sz(o + i)];
      const float wt = s.w[sz(r * K_ + s.slot[sz(o + i)])];
      float* dst = proj + r * E_;
      const float* src = y + i * E_;
      for (int64_t d = 0; d < E_; ++d) dst[d] += wt * src[d];
    }
  }
}

void MoeFfn::backward(const model::LayerWeights& lw, int64_t slot, const float* xn,
                      const float* dproj, int64_t n, float* dxn, bool lora_on) {
  Saved& s = saved_[sz(slot)];
  const Stacks st = stacks(lw, lora_on);
  const float scale = lora_ != nullptr ? lora_->scale() : 0.0f;
  // Expert e's LoRA backward on product j (its input in, output gradient dy).
  const auto lora_term = [&](int j, int64_t e, int64_t o, const float* in, const float* dy,
                             int64_t mrows, float* din) {
    LoraPairParams* p = st.p[j];
    if (p == nullptr) return;
    lora_backward(*p, e, scale, in, &s.lu[j][sz(o * p->rank)], dy, mrows, din, lora_tmp_, wg_tmp_,
                  pool_);
  };
  // dx (= or +=) dy W: full training's masters are plain F32 views; a frozen
  // base is read in its prepared form (as the trainer's linear_bwd does).
  const auto in_grad = [&](const backend::Linear& w, const float* dy, int64_t rows, float* dx,
                           bool accumulate) {
    if (full_ != nullptr)
      input_grad(w.view, dy, rows, dx, accumulate, pool_);
    else
      input_grad(be_, w, dy, rows, dx, accumulate, pool_);
  };
  // dW += dy^T x over `rows` rows, when w is being trained.
  const auto w_grad = [&](const backend::Linear& w, const float* dy, const float* x, int64_t rows) {
    if (full_ == nullptr) return;
    if (float* g = full_->grad_of(&w))
      weight_grad(dy, x, rows, w.rows(), w.cols(), g, wg_tmp_, pool_);
  };
  std::fill(dxn, dxn + n * E_, 0.0f);
  for (int64_t e = 0; e < NE_; ++e) {
    const int64_t o = s.off[sz(e)], mrows = s.off[sz(e + 1)] - o;
    if (mrows == 0) continue;
    const float* y = &s.y[sz(o * E_)];
    // proj[r] += w y_i: dw = dproj[r] . y_i, dy_i = w dproj[r].
    pool_.parallel_for(mrows, [&](int64_t i, int) {
      const int64_t r = s.row[sz(o + i)], wi = r * K_ + s.slot[sz(o + i)];
      const float* dp = dproj + r * E_;
      const float wt = s.w[sz(wi)];
      double dot = 0;
      for (int64_t d = 0; d < E_; ++d) {
        dot += static_cast<double>(dp[d]) * y[i * E_ + d];
        dy_[sz(i * E_ + d)] = wt * dp[d];
      }
      dw_[sz(wi)] = static_cast<float>(dot);
    });
    in_grad(lw.down_exps[sz(e)], dy_.data(), mrows, dh_.data(), false);
    const bool lora_any = st.p[0] != nullptr || st.p[1] != nullptr || st.p[2] != nullptr;
    if (lora_any || full_ != nullptr)
      for (int64_t i = 0; i < mrows; ++i)  // the expert's input rows again
        std::memcpy(&xin_[sz(i * E_)], xn + s.row[sz(o + i)] * E_, sz(E_) * sizeof(float));
    if (st.p[2] != nullptr || full_ != nullptr)  // down's input, the same bits as the forward's
      swiglu_fwd(&s.g[sz(o * ff_)], &s.u[sz(o * ff_)], mrows * ff_, h_.data());
    // Down's gradient from this expert's rows: dy_ already carries each
    // row's routing weight.
    w_grad(lw.down_exps[sz(e)], dy_.data(), h_.data(), mrows);
    lora_term(2, e, o, h_.data(), dy_.data(), mrows, dh_.data());
    swiglu_bwd(&s.g[sz(o * ff_)], &s.u[sz(o * ff_)], dh_.data(), mrows * ff_, dg_.data(),
               du_.data());
    w_grad(lw.gate_exps[sz(e)], dg_.data(), xin_.data(), mrows);
    w_grad(lw.up_exps[sz(e)], du_.data(), xin_.data(), mrows);
    in_grad(lw.gate_exps[sz(e)], dg_.data(), mrows, dxe_.data(), false);
    lora_term(0, e, o, xin_.data(), dg_.data(), mrows, dxe_.data());
    in_grad(lw.up_exps[sz(e)], du_.data(), mrows, dxe_.data(), true);
    lora_term(1, e, o, xin_.data(), du_.data(), mrows, dxe_.data());
    for (int64_t i = 0; i < mrows; ++i) {
      float* dst = dxn + s.row[sz(o + i)] * E_;
      const float* src = &dxe_[sz(i * E_)];
      for (int64_t d = 0; d < E_; ++d) dst[d] += src[d];
    }
  }
  // Through the routing weights into the router logits, then the router.
  pool_.parallel_for(n, [&](int64_t r, int) {
    moe_route_bwd(&s.probs[sz(r * NE_)], NE_, &s.chosen[sz(r * K_)], &s.w[sz(r * K_)], K_,
                  renormalize_, &dw_[sz(r * K_)], &dp_[sz(r * NE_)], &dlogits_[sz(r * NE_)]);
  });
  in_grad(lw.gate_inp, dlogits_.data(), n, dxn, true);
  w_grad(lw.gate_inp, dlogits_.data(), xn, n);
}

}  // namespace slm::train
