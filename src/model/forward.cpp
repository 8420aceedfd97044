// The forward pass as named blocks over one step's batch (forward.h):
//   embed -> for each layer: attention_block, ffn_dense | ffn_moe -> output_logits
// Activations are row-major [rows][width]; every op goes through the model's
// backend, every matrix product through backend::Backend::linear.
#include "model/forward.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "base/check.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/session.h"

namespace slm::model {

// How a mixture-of-experts layer picks experts for a row: softmax over all
// router logits, keep the top k (ties to the lower index), optionally
// renormalise the kept weights to sum to one (Mixtral, Qwen3-MoE).
// min_weight: chosen experts whose renormalised weight falls below it are
// dropped (the top one always stays) and the rest rescaled to the mass the
// chosen experts had (PruneOptions::moe_min_weight).
struct RouterPolicy {
  int64_t top_k;
  bool renormalize;
  float min_weight = 0;
};

namespace {

// v, or +0 where keep is 0 (keep: 0 or 1). Masks the bits: a conditional
// select GCC turns into a branch, which half the entries at 50% pruning
// mispredict.
inline float keep_or_zero(float v, uint32_t keep) {
  return std::bit_cast<float>(std::bit_cast<uint32_t>(v) & (0u - keep));
}

// Floats of attention score scratch per thread for step b: a whole context
// for each head of a KV group that a decode task scores at once
// (ops::attention_many).
int64_t score_stride(const ModelConfig& c, const StepBatch& b) {
  return ops::attention_group_rows(c.n_head, c.n_head_kv) * b.max_ctx;
}

StepProfile::Part part_of(backend::Role r) {
  switch (r) {
    case backend::Role::kQ:
    case backend::Role::kK:
    case backend::Role::kV:
      return StepProfile::kQkv;
    case backend::Role::kO:
      return StepProfile::kO;
    case backend::Role::kGate:
    case backend::Role::kUp:
      return StepProfile::kGateUp;
    case backend::Role::kDown:
      return StepProfile::kDown;
    case backend::Role::kOutput:
      return StepProfile::kHead;
    default:
      return StepProfile::kOther;
  }
}

// Adds the wall time of its scope to a StepProfile entry (none: costs a
// null test).
class PartTimer {
 public:
  PartTimer(StepProfile* p, StepProfile::Part part, int how) : p_(p), part_(part), how_(how) {
    if (p_ != nullptr) t0_ = std::chrono::steady_clock::now();
  }
  ~PartTimer() {
    if (p_ == nullptr) return;
    p_->ns[part_][how_] +=
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0_).count();
    ++p_->calls[part_][how_];
  }
  PartTimer(const PartTimer&) = delete;
  PartTimer& operator=(const PartTimer&) = delete;

 private:
  StepProfile* p_;
  StepProfile::Part part_;
  int how_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

struct Forward {
  const Model& model;
  const ModelConfig& c;
  const backend::Backend& be;
  Scratch& s;
  const StepBatch& b;

  // fn(r0, r1) over the step's rows [0, n) in ranges, split over the pool for
  // a prompt's many rows (the row-wise ops between the matrix products:
  // norms, bias + RoPE, activation, residual adds), so the other threads do
  // not wait while one does them all; a few rows (decoding) run inline.
  // Each row's values are what one call over all rows gives.
  template <class Fn>
  void over_rows(int64_t n, const Fn& fn) {
    ThreadPool& pool = *s.ws_.pool;
    if (n < kParallelRows || pool.size() == 1) return fn(int64_t{0}, n);
    const int64_t n_chunks = std::min<int64_t>(n / (kParallelRows / 2), 4 * pool.size());
    pool.parallel_for(n_chunks,
                      [&](int64_t i, int) { fn(n * i / n_chunks, n * (i + 1) / n_chunks); });
  }
  static constexpr int64_t kParallelRows = 16;

  // x[rows] = rms_norm(x[rows]) * w over the step's n rows of width n_embd (out may alias x).
  void rms_norm_rows(const float* x, const std::vector<float>& w, int64_t n, float* out) {
    const int64_t E = c.n_embd;
    over_rows(n, [&](int64_t r0, int64_t r1) {
      be.rms_norm(x + r0 * E, w.data(), r1 - r0, E, c.norm_eps, out + r0 * E);
    });
  }
  // The end of a block over the step's n rows: proj = rms_norm(proj) *
  // post_norm where the model has one (Gemma), x += proj, then the next
  // block's input xn = rms_norm(x) * next_norm (none after the last layer),
  // all in one pass over the rows: one wake-up of the pool instead of two
  // or three. Each row's values are what separate passes give.
  void residual_rows(const std::vector<float>& post_norm, const std::vector<float>* next_norm,
                     int64_t n) {
    const int64_t E = c.n_embd;
    float *x = s.x_.data(), *proj = s.proj_.data(), *xn = s.xn_.data();
    over_rows(n, [&](int64_t r0, int64_t r1) {
      const int64_t m = r1 - r0, at = r0 * E;
      if (!post_norm.empty()) be.rms_norm(proj + at, post_norm.data(), m, E, c.norm_eps, proj + at);
      be.add(x + at, proj + at, m * E);
      if (next_norm != nullptr) be.rms_norm(x + at, next_norm->data(), m, E, c.norm_eps, xn + at);
    });
  }

  // Every matrix product of the step goes through here: outs share the input
  // x [n][cols], whose rows are the step's rows (or, for an expert, the rows
  // routed to it). This is where per-sequence LoRA deltas (by b.seqs row
  // ranges), activation-sparsity masks and fused groups plug in.
  // step_rows: x's rows are the step's rows (b.seqs ranges apply); false
  // for experts' routed rows (ffn_moe adds their deltas with
  // add_lora_routed) and the logits rows (LoraAdapter refuses the output).
  void linear(std::span<const backend::LinearOut> outs, const float* x, int64_t n,
              bool step_rows = true) {
    SLM_DCHECK_LE(n, s.max_rows_);
    for (const backend::LinearOut& o : outs) SLM_DCHECK_EQ(o.w->cols(), outs[0].w->cols());
    const PartTimer timer(s.profile_, part_of(outs[0].w->role), 0);
    be.linear(outs, x, n, s.ws_);
    if (step_rows && b.any_adapter) add_lora(outs, x);
  }
  void linear(const backend::Linear& w, const float* x, int64_t n, float* y,
              bool step_rows = true) {
    const backend::LinearOut out{&w, y};
    linear(std::span<const backend::LinearOut>(&out, 1), x, n, step_rows);
  }

  // y += B (A x) over each adapted sequence's rows (Punica-style segments:
  // the base product above ran once for every row of the step; the deltas
  // of every output and sequence go to the backend as one batch).
  void add_lora(std::span<const backend::LinearOut> outs, const float* x) {
    s.lora_segs_.clear();
    size_t nt = 0;
    for (const backend::LinearOut& o : outs)
      for (const SeqRows& sr : b.seqs) {
        if (sr.adapter == nullptr) continue;
        if (const backend::LoraFactors* f = sr.adapter->find(o.w))
          nt += static_cast<size_t>(sr.n_rows * f->r);
      }
    if (nt == 0) return;
    if (s.lora_t_.size() < nt) s.lora_t_.resize(nt);
    size_t t0 = 0;
    for (const backend::LinearOut& o : outs)
      for (const SeqRows& sr : b.seqs) {
        if (sr.adapter == nullptr) continue;
        const backend::LoraFactors* f = sr.adapter->find(o.w);
        if (f == nullptr) continue;
        SLM_DCHECK_EQ(f->n_in, o.w->cols());
        SLM_DCHECK_EQ(f->n_out, o.w->rows());
        s.lora_segs_.push_back(
            {f, x + sr.row0 * f->n_in, s.lora_t_.data() + t0, o.y + sr.row0 * f->n_out, sr.n_rows});
        t0 += static_cast<size_t>(sr.n_rows * f->r);
      }
    be.lora(s.lora_segs_, s.ws_);
  }

  // add_lora for an expert's routed rows: x [m][n_in] row i is step row
  // s.expert_rows_[i] (increasing, so the rows of one sequence are one run,
  // b.seqs being increasing row ranges); each run gets its sequence's
  // adapter's pair for this expert.
  void add_lora_routed(std::span<const backend::LinearOut> outs, const float* x, int64_t m) {
    s.lora_segs_.clear();
    size_t nt = 0;
    // Pass 0 sizes the scratch; pass 1 makes the segments.
    for (int pass = 0; pass < 2; ++pass) {
      size_t t0 = 0;
      for (const backend::LinearOut& o : outs) {
        size_t q = 0;  // index into b.seqs
        for (int64_t i = 0; i < m;) {
          const int64_t r = s.expert_rows_[i];
          while (q < b.seqs.size() && b.seqs[q].row0 + b.seqs[q].n_rows <= r) ++q;
          SLM_DCHECK_LT(q, b.seqs.size());
          const SeqRows& sr = b.seqs[q];
          int64_t j = i + 1;
          while (j < m && s.expert_rows_[j] < sr.row0 + sr.n_rows) ++j;
          const backend::LoraFactors* f = sr.adapter != nullptr ? sr.adapter->find(o.w) : nullptr;
          if (f != nullptr) {
            if (pass == 0) {
              nt += static_cast<size_t>((j - i) * f->r);
            } else {
              SLM_DCHECK_EQ(f->n_in, o.w->cols());
              SLM_DCHECK_EQ(f->n_out, o.w->rows());
              s.lora_segs_.push_back(
                  {f, x + i * f->n_in, s.lora_t_.data() + t0, o.y + i * f->n_out, j - i});
              t0 += static_cast<size_t>((j - i) * f->r);
            }
          }
          i = j;
        }
      }
      if (nt == 0) return;
      if (pass == 0 && s.lora_t_.size() < nt) s.lora_t_.resize(nt);
    }
    be.lora(s.lora_segs_, s.ws_);
  }
  void add_lora_routed(const backend::Linear& w, const float* x, int64_t m, float* y) {
    const backend::LinearOut out{&w, y};
    add_lora_routed(std::span<const backend::LinearOut>(&out, 1), x, m);
  }

  // Like linear, for an input x [n][cols] that pruning zeroed in part: one
  // row (decoding) whose matrices all have column copies reads only the
  // copies' rows of its non-zero inputs. A row that kept more than the
  // copies pay for (ColumnMatrix::pays_below; the pass that zeroed x counted
  // them) goes the dense way without listing them.
  void linear_pruned(std::span<const backend::LinearOut> outs, const float* x, int64_t n,
                     bool step_rows = true) {
    const bool counted = s.kept_of_ == x;
    s.kept_of_ = nullptr;
    SLM_DCHECK(!counted || n == 1);
    if (counted) {
      bool columns = true;
      double below = 1.0;  // share of kept inputs where every copy beats its dense kernel
      for (const backend::LinearOut& o : outs) {
        columns = columns && o.w->columns != nullptr;
        below = std::min(below, kernels::ColumnMatrix::pays_below(o.w->view.type));
      }
      const int64_t cols = outs[0].w->cols();
      if (columns && static_cast<double>(s.n_kept_) < below * static_cast<double>(cols)) {
        SLM_DCHECK_LE(cols, static_cast<int64_t>(s.kept_.size()));
        int64_t m;
        {
          const PartTimer list_timer(s.profile_, StepProfile::kPrune, 0);
          m = be.list_nonzero(x, cols, s.kept_.data());
        }
        SLM_DCHECK_LE(m, s.n_kept_);
        const StepProfile::Part part = part_of(outs[0].w->role);
        if (s.profile_ != nullptr) {
          s.profile_->kept[part] += static_cast<uint64_t>(m);
          s.profile_->inputs[part] += static_cast<uint64_t>(cols);
        }
        const PartTimer timer(s.profile_, part, 1);
        be.linear_columns(outs, x, std::span<const int32_t>(s.kept_.data(), m), s.ws_);
        if (step_rows && b.any_adapter) add_lora(outs, x);
        return;
      }
    }
    linear(outs, x, n, step_rows);
  }
  void linear_pruned(const backend::Linear& w, const float* x, int64_t n, float* y,
                     bool step_rows = true) {
    const backend::LinearOut out{&w, y};
    linear_pruned(std::span<const backend::LinearOut>(&out, 1), x, n, step_rows);
  }

  // The projection input x [n][width] of tap t in layer l: shown to the tap,
  // then (TEAL) entries with |x| < threshold are zeroed, each row on its own,
  // so the matrices that read x skip those columns. A zero threshold leaves
  // x untouched (bit-identical to dense). Returns whether x was pruned.
  // Tap::kHeadIn (l = n_layer) is the output matrix's input, whose rows the
  // tap has already seen (output_logits shows it every row of the step); it
  // counts in the stats only when pruned, so a file without head pruning
  // reports the share it always did.
  bool prune(int64_t l, Tap t, float* x, int64_t n, int64_t width) {
    const bool head = t == Tap::kHeadIn;
    if (s.tap_ != nullptr && !head) s.tap_->on_activation(l, t, x, n, width);
    const Sparsity* sp = model.prune().sparsity.get();
    if (sp == nullptr || (head && !(sp->head_threshold > 0))) return false;
    const float thr = head ? sp->head_threshold : sp->threshold(l, t);
    s.stats_.total += static_cast<uint64_t>(n * width);
    if (!(thr > 0)) return false;
    const PartTimer timer(s.profile_, StepProfile::kPrune, 0);
    const int64_t z = be.zero_below(x, n * width, thr);
    if (n == 1) {  // decoding: linear_pruned picks column copies or dense by the count
      s.n_kept_ = width - z;
      s.kept_of_ = x;
    }
    s.stats_.zeroed += static_cast<uint64_t>(z);
    return true;
  }

  // CATS: FFN rows whose |act(gate)| is below the layer's gate threshold are
  // cut (gate and up set to zero, so act(0) * 0 = 0 reaches down's input),
  // decided on the pre-activation by the layer's GateCut (compares, no exp).
  // One row (decoding): the uncut rows are counted for linear_pruned (an
  // uncut row whose act(gate) * up is exactly 0 is counted but not listed).
  bool cut_gate(int64_t l, float* gate, float* up, int64_t n, int64_t width) {
    if (s.tap_ != nullptr) s.tap_->on_activation(l, Tap::kGate, gate, n, width);
    const Sparsity* sp = model.prune().sparsity.get();
    if (sp == nullptr || sp->ffn_rule != FfnRule::kCats) return false;
    const float thr = sp->threshold(l, Tap::kGate);
    s.stats_.total += static_cast<uint64_t>(n * width);
    if (!(thr > 0)) return false;
    const PartTimer timer(s.profile_, StepProfile::kPrune, 0);
    const GateCut gc = model.gate_cut(l);  // a copy: the stores to gate/up cannot alias its ends
    int64_t m = 0;
    for (int64_t i = 0; i < n * width; ++i) {
      const uint32_t keep = !gc.cut(gate[i]);
      gate[i] = keep_or_zero(gate[i], keep);
      up[i] = keep_or_zero(up[i], keep);
      m += keep;
    }
    if (n == 1) {
      s.n_kept_ = m;
      s.kept_of_ = gate;  // down's input: gated in place
    }
    s.stats_.zeroed += static_cast<uint64_t>(n * width - m);
    return true;
  }

  // Describes the step once: each sequence's rows and positions.
  static void describe(std::span<const SeqChunk> chunks, StepBatch& b) {
    b.n_rows = 0;
    b.max_ctx = 0;
    b.seqs.clear();
    b.pos.clear();
    b.any_adapter = false;
    for (const SeqChunk& ch : chunks) {
      const int64_t m = static_cast<int64_t>(ch.tokens.size());
      const int64_t pos0 = ch.session->n_past_;
      // A window-only layer's ring holds its window plus one step's rows.
      if (ch.session->ring_ > 0 && m > ch.session->n_batch_)
        throw Error("internal: a step of " + std::to_string(m) +
                    " rows exceeds the session's batch of " + std::to_string(ch.session->n_batch_));
      b.seqs.push_back({ch.session, b.n_rows, m, pos0, ch.adapter});
      b.any_adapter = b.any_adapter || ch.adapter != nullptr;
      for (int64_t i = 0; i < m; ++i) b.pos.push_back(pos0 + i);
      b.n_rows += m;
      b.max_ctx = std::max(b.max_ctx, ch.session->n_ctx());
    }
  }

  // x [rows][n_embd] = the tokens' embedding rows (or the given embeddings);
  // rope_ [rows][n_rot] = cos/sin of each row's position. A prompt's rows
  // are split over the pool (the angles are double cos and sin: a serial
  // pass over 512 rows would keep the other threads waiting).
  void embed(std::span<const SeqChunk> chunks) {
    const int64_t E = c.n_embd;
    for (const SeqChunk& ch : chunks)
      for (const int32_t id : ch.tokens) SLM_DCHECK(id >= 0 && id < c.n_vocab);
    over_rows(b.n_rows, [&](int64_t r0, int64_t r1) {
      for (size_t i = 0; i < chunks.size(); ++i) {
        const SeqChunk& ch = chunks[i];
        const SeqRows& sr = b.seqs[i];
        const int64_t a = std::max(r0, sr.row0), e = std::min(r1, sr.row0 + sr.n_rows);
        if (a >= e) continue;
        float* x = &s.x_[a * E];
        const auto first = static_cast<size_t>(a - sr.row0), count = static_cast<size_t>(e - a);
        if (ch.embeddings != nullptr)
          std::memcpy(x, ch.embeddings + first * E, count * E * sizeof(float));
        else
          be.embed(model.weights().token_embd, ch.tokens.subspan(first, count), x);
        if (ch.embeddings == nullptr && c.embd_scale != 1.0f)  // Gemma: x * sqrt(n_embd)
          for (size_t j = 0; j < count * E; ++j) x[j] *= c.embd_scale;
        // rope_ [table][rows][n_rot]: each row's angles in every RoPE table
        // the layers use, long or short factors by its session's context.
        for (int k = 0; k < model.n_rope_tables(); ++k) {
          const float* inv_freq =
              model.rope_inv_freq(k, model.rope_long(sr.session->n_ctx())).data();
          for (int64_t r = a; r < e; ++r) {
            float* cs = rope_row(k, r);
            be.rope_angles(c.n_rot, b.pos[r], inv_freq, cs);
            if (c.rope_attn_factor != 1.0f)
              for (int64_t j = 0; j < c.n_rot; ++j) cs[j] *= c.rope_attn_factor;
          }
        }
      }
    });
  }

  float* rope_row(int table, int64_t r) { return &s.rope_[(table * b.n_rows + r) * c.n_rot]; }

  // Rows [r0, r1) of q_, k_, v_: biases added, per-head norms (Qwen3,
  // Gemma 3), then RoPE at each row's position.
  void bias_norm_rope(int64_t l, const LayerWeights& lw, int64_t r0, int64_t r1, bool neox) {
    const int64_t qd = c.q_dim(), kd = c.kv_dim();
    for (int64_t r = r0; r < r1; ++r) {
      float* q = &s.q_[r * qd];  // [n_head][head_dim]
      float* k = &s.k_[r * kd];  // [n_head_kv][head_dim]
      if (!lw.bq.empty()) be.add(q, lw.bq.data(), qd);
      if (!lw.bk.empty()) be.add(k, lw.bk.data(), kd);
      if (!lw.bv.empty()) be.add(&s.v_[r * kd], lw.bv.data(), kd);
      const float* cs = rope_row(c.layers[l].rope_table, r);
      for (int64_t h = 0; h < c.n_head; ++h) {
        float* qh = q + h * c.head_dim;
        if (!lw.q_norm.empty()) be.rms_norm(qh, lw.q_norm.data(), 1, c.head_dim, c.norm_eps, qh);
        be.rope_apply(qh, c.n_rot, cs, neox);
      }
      for (int64_t h = 0; h < c.n_head_kv; ++h) {
        float* kh = k + h * c.head_dim;
        if (!lw.k_norm.empty()) be.rms_norm(kh, lw.k_norm.data(), 1, c.head_dim, c.norm_eps, kh);
        be.rope_apply(kh, c.n_rot, cs, neox);
      }
    }
  }

  // x += Wo . attention(rope(norm_qk(Wq xn + bq)), rope(norm_qk(Wk xn + bk)), Wv xn + bv), xn =
  // rms_norm(x), which the step's first layer computes here and the others
  // receive from the previous block's residual_rows; leaves xn = the FFN's
  // input rms_norm(x) likewise.
  void attention_block(int64_t l) {
    const LayerWeights& lw = model.weights().layers[l];
    const int64_t E = c.n_embd, qd = c.q_dim(), n = b.n_rows;
    if (l == 0) rms_norm_rows(s.x_.data(), lw.attn_norm, n, s.xn_.data());
    const bool pruned = prune(l, Tap::kAttnIn, s.xn_.data(), n, E);
    const backend::LinearOut qkv[] = {
        {&lw.wq, s.q_.data()}, {&lw.wk, s.k_.data()}, {&lw.wv, s.v_.data()}};
    if (pruned)
      linear_pruned(qkv, s.xn_.data(), n);
    else
      linear(qkv, s.xn_.data(), n);
    const bool neox = c.rope_order == RopeOrder::kNeox;
    // Bias, norms and RoPE, then each row's keys and values appended to its
    // sequence's cache for this layer (a ring for a window-only layer), in
    // one pass over the rows (ranges hold distinct cache rows); then attend
    // over every sequence at once: one parallel job over (sequence, token,
    // head), not one per sequence.
    over_rows(n, [&](int64_t r0, int64_t r1) {
      bias_norm_rope(l, lw, r0, r1, neox);
      store_kv_rows(l, r0, r1);
    });
    std::vector<backend::AttentionCall>& calls = s.ws_.attn;  // reserved for max_rows sequences
    calls.clear();
    for (const SeqRows& sr : b.seqs) {
      Session& seq = *sr.session;
      SLM_DCHECK_LE(sr.pos0 + sr.n_rows, seq.n_ctx());
      const backend::AttentionShape shape{sr.n_rows,    sr.pos0,
                                          c.n_head,     c.n_head_kv,
                                          c.head_dim,   c.layers[l].sliding ? c.n_swa : 0,
                                          c.attn_scale, c.attn_softcap,
                                          seq.ring(l),  seq.kv_type()};
      calls.push_back(
          {shape, &s.q_[sr.row0 * qd], seq.k_layer(l), seq.v_layer(l), &s.attn_[sr.row0 * qd]});
    }
    be.attention_many(calls, score_stride(c, b), s.ws_);
    if (prune(l, Tap::kOIn, s.attn_.data(), n, qd))
      linear_pruned(lw.wo, s.attn_.data(), n, s.proj_.data());
    else
      linear(lw.wo, s.attn_.data(), n, s.proj_.data());
    residual_rows(lw.post_attn_norm, &lw.ffn_norm, n);  // Gemma: post_attn_norm
  }

  // Rows [r0, r1) of k_ and v_ into their sequences' caches for layer l.
  void store_kv_rows(int64_t l, int64_t r0, int64_t r1) {
    const int64_t kd = c.kv_dim();
    for (const SeqRows& sr : b.seqs) {
      const int64_t a = std::max(r0, sr.row0), e = std::min(r1, sr.row0 + sr.n_rows);
      if (a < e)
        sr.session->store_kv(l, sr.pos0 + (a - sr.row0), e - a, &s.k_[a * kd], &s.v_[a * kd]);
    }
  }

  // proj [rows][n_embd] = W_down . (act(W_gate xn) * W_up xn), act silu or tanh-GELU
  // Pruning: TEAL zeroes small entries of xn and of down's input; CATS
  // (instead of TEAL on down's input) cuts the rows whose gate is small.
  // CATS still computes up for every row (issue #15): a calibrated file
  // prunes xn too, so decoding's stacked gate/up column copy already reads
  // only the kept inputs' share of up, as many bytes as up's kept rows; and
  // rows read apart (kernels.h RowMatrix, one dot product each) ran at a
  // quarter of the packed kernels' pace, which made decoding slower
  // (bench_columns times gate, then up's kept rows: gcols+urows).
  void ffn_dense(int64_t l, const LayerWeights& lw) {
    const int64_t n = b.n_rows;
    const bool pruned_in = prune(l, Tap::kFfnIn, s.xn_.data(), n, c.n_embd);
    const backend::LinearOut gate_up[] = {{&lw.ffn_gate, s.gate_.data()},
                                          {&lw.ffn_up, s.up_.data()}};
    if (pruned_in)
      linear_pruned(gate_up, s.xn_.data(), n);
    else
      linear(gate_up, s.xn_.data(), n);
    bool pruned_h = cut_gate(l, s.gate_.data(), s.up_.data(), n, c.n_ff);
    over_rows(n, [&](int64_t r0, int64_t r1) {
      be.gated(c.ffn_act, s.gate_.data() + r0 * c.n_ff, s.up_.data() + r0 * c.n_ff,
               (r1 - r0) * c.n_ff);
    });
    const Sparsity* sp = model.prune().sparsity.get();
    if (sp == nullptr || sp->ffn_rule == FfnRule::kTeal)
      pruned_h = prune(l, Tap::kDownIn, s.gate_.data(), n, c.n_ff);
    else if (s.tap_ != nullptr)
      s.tap_->on_activation(l, Tap::kDownIn, s.gate_.data(), n, c.n_ff);
    if (pruned_h)
      linear_pruned(lw.ffn_down, s.gate_.data(), n, s.proj_.data());
    else
      linear(lw.ffn_down, s.gate_.data(), n, s.proj_.data());
  }

  // proj [rows][n_embd] = sum over the row's chosen experts e of weight_e * FFN_e(xn).
  void ffn_moe(const LayerWeights& lw, const RouterPolicy& policy) {
    const int64_t n = b.n_rows, E = c.n_embd, NE = c.n_expert, K = policy.top_k, ff = c.n_ff_expert;
    linear(lw.gate_inp, s.xn_.data(), n, s.router_.data());  // [rows][n_expert]
    std::vector<int32_t>& order = s.expert_order_;
    for (int64_t r = 0; r < n; ++r) {
      float* p = &s.router_[r * NE];
      be.softmax(p, NE);
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + K, order.end(), [p](int32_t a, int32_t z) {
        return p[a] > p[z] || (p[a] == p[z] && a < z);
      });
      double sum = 0;
      for (int64_t k = 0; k < K; ++k) sum += p[order[k]];
      // Expert skipping: a dropped slot keeps expert -1 (matches none below).
      int64_t kept = K;
      double kept_sum = sum;
      if (policy.min_weight > 0) {
        kept = 1;  // the top expert always stays
        kept_sum = p[order[0]];
        while (kept < K && p[order[kept]] / sum >= policy.min_weight) kept_sum += p[order[kept++]];
      }
      const double scale = policy.renormalize ? 1.0 / kept_sum : sum / kept_sum;
      for (int64_t k = 0; k < K; ++k) {
        s.chosen_[r * K + k] = k < kept ? order[k] : -1;
        if (kept == K)  // exactly the unpruned weights
          s.chosen_w_[r * K + k] =
              policy.renormalize ? static_cast<float>(p[order[k]] / sum) : p[order[k]];
        else
          s.chosen_w_[r * K + k] = k < kept ? static_cast<float>(p[order[k]] * scale) : 0.0f;
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
      SLM_DCHECK_LT(e, static_cast<int64_t>(lw.gate_exps.size()));
      const backend::LinearOut gate_up[] = {{&lw.gate_exps[e], s.gate_.data()},
                                            {&lw.up_exps[e], s.up_.data()}};
      linear(gate_up, s.expert_in_.data(), m, /*step_rows=*/false);
      if (b.any_adapter) add_lora_routed(gate_up, s.expert_in_.data(), m);
      be.gated(c.ffn_act, s.gate_.data(), s.up_.data(), m * ff);
      // expert_in_ is free again: reuse it for the expert's output [m][n_embd].
      linear(lw.down_exps[e], s.gate_.data(), m, s.expert_in_.data(), /*step_rows=*/false);
      if (b.any_adapter) add_lora_routed(lw.down_exps[e], s.gate_.data(), m, s.expert_in_.data());
      for (int64_t i = 0; i < m; ++i) {
        float* dst = &s.proj_[s.expert_rows_[i] * E];
        const float* src = &s.expert_in_[i * E];
        for (int64_t d = 0; d < E; ++d) dst[d] += s.expert_weight_[i] * src[d];
      }
    }
  }

  // x += FFN(xn), xn = rms_norm(x) from attention_block; leaves xn = the
  // next layer's attention input.
  void ffn_block(int64_t l) {
    const LayerWeights& lw = model.weights().layers[l];
    const int64_t n = b.n_rows;
    if (c.is_moe()) {
      const PruneOptions& po = model.prune();
      const int64_t k =
          po.moe_top_k > 0 ? std::min(po.moe_top_k, c.n_expert_used) : c.n_expert_used;
      ffn_moe(lw, {k, c.expert_weights_norm, po.moe_min_weight});
    } else {
      ffn_dense(l, lw);
    }
    const auto& layers = model.weights().layers;
    residual_rows(lw.post_ffn_norm,  // Gemma: post_ffn_norm
                  l + 1 < c.n_layer ? &layers[static_cast<size_t>(l + 1)].attn_norm : nullptr, n);
  }

  // Logits [n_vocab] of the rows that want them: W_out . rms_norm(x). Only
  // those rows go through the output matrix. A single row (one sequence
  // decoding) is written straight into its session's logits; more rows go
  // through the scratch and are copied to each chunk's destination.
  // Pruning: the normalised rows [n_out][n_embd] are thresholded like a
  // layer's taps (Sparsity::head_threshold), so decoding skips the head's
  // columns of small inputs (for a small model with a large vocabulary the
  // head is a third or more of the bytes read per token).
  void output_logits(std::span<const SeqChunk> chunks) {
    const int64_t E = c.n_embd, V = c.n_vocab;
    if (s.tap_ != nullptr) {
      // Calibration wants every row's head input, logits or not: the
      // scratch's out_rows_ holds max_rows rows; the pass below overwrites it.
      be.rms_norm(s.x_.data(), model.weights().output_norm.data(), b.n_rows, E, c.norm_eps,
                  s.out_rows_.data());
      s.tap_->on_activation(c.n_layer, Tap::kHeadIn, s.out_rows_.data(), b.n_rows, E);
    }
    int64_t n_out = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      const SeqChunk& ch = chunks[i];
      const SeqRows& sr = b.seqs[i];
      if (ch.logits == nullptr) continue;
      for (int64_t r = ch.all_rows ? sr.row0 : sr.row0 + sr.n_rows - 1; r < sr.row0 + sr.n_rows;
           ++r, ++n_out)
        be.rms_norm(&s.x_[r * E], model.weights().output_norm.data(), 1, E, c.norm_eps,
                    &s.out_rows_[n_out * E]);
    }
    if (n_out == 0) return;
    float* out = head_destination(chunks, n_out, V, s);
    if (prune(c.n_layer, Tap::kHeadIn, s.out_rows_.data(), n_out, E))
      linear_pruned(model.weights().output, s.out_rows_.data(), n_out, out, /*step_rows=*/false);
    else
      linear(model.weights().output, s.out_rows_.data(), n_out, out, /*step_rows=*/false);
    if (c.final_softcap > 0) be.softcap(out, n_out * V, c.final_softcap);  // Gemma 2
    int64_t o = 0;
    for (const SeqChunk& ch : chunks) {
      if (ch.logits == nullptr) continue;
      const int64_t rows = ch.all_rows ? static_cast<int64_t>(ch.tokens.size()) : 1;
      const float* src = out + o * V;
      float* last = ch.session->logits_.data();
      if (ch.logits != src) std::memcpy(ch.logits, src, rows * V * sizeof(float));
      if (ch.keep_last && last != src + (rows - 1) * V && last != ch.logits + (rows - 1) * V)
        std::memcpy(last, src + (rows - 1) * V, V * sizeof(float));
      o += rows;
    }
  }

  // Where the head writes its n_out logit rows ([n_out][V]): straight into
  // the callers' buffers when they are one run of consecutive rows (a single
  // row kept as the session's last goes to the session's own buffer), else
  // the scratch; output_logits then copies only rows not written in place.
  static float* head_destination(std::span<const SeqChunk> chunks, int64_t n_out, int64_t V,
                                 Scratch& s) {
    float* first = nullptr;
    int64_t o = 0;
    bool consecutive = true;
    for (const SeqChunk& ch : chunks) {
      if (ch.logits == nullptr) continue;
      if (n_out == 1) return ch.keep_last ? ch.session->logits_.data() : ch.logits;
      if (first == nullptr) first = ch.logits;
      consecutive = consecutive && !ch.all_rows && ch.logits == first + o * V;
      ++o;
    }
    if (consecutive && first != nullptr) return first;
    if (s.logits_.size() < static_cast<size_t>(n_out * V))
      s.logits_.resize(static_cast<size_t>(n_out * V));
    return s.logits_.data();
  }

  // The whole step: describe, embed, layers, logits, then advance the sessions.
  static void run(const Model& model, std::span<const SeqChunk> chunks, Scratch& s,
                  ThreadPool& pool) {
    StepBatch& b = s.batch_;
    Forward::describe(chunks, b);
    if (b.n_rows == 0) return;
    if (b.n_rows > s.max_rows_)
      throw Error("internal: batch of " + std::to_string(b.n_rows) + " rows exceeds the scratch");
    s.ws_.pool = &pool;
    s.stats_ = {};
    s.kept_of_ = nullptr;
    // Scores for a whole context per thread and head of a KV group (32768
    // positions: 128 KiB a head), sized on a sequence's first step so the
    // token loop never allocates.
    const size_t need_scores = static_cast<size_t>(pool.size() * score_stride(model.config(), b));
    if (s.ws_.scores.size() < need_scores) s.ws_.scores.resize(need_scores);
    // Prefill attention's float keys and values (ops::attention_many), sized
    // on the first step that feeds a prompt, for the longest context.
    bool prefill = false;
    for (const SeqRows& sr : b.seqs) prefill = prefill || sr.n_rows >= ops::kPrefillMinTokens;
    const auto need_prefill = static_cast<size_t>(
        pool.size() * ops::attention_prefill_floats(b.max_ctx, model.config().head_dim));
    if (prefill && s.ws_.attn_prefill.size() < need_prefill)
      s.ws_.attn_prefill.resize(need_prefill);

    Forward f{model, model.config(), model.backend(), s, b};
    f.embed(chunks);
    for (int64_t l = 0; l < model.config().n_layer; ++l) {
      f.attention_block(l);
      f.ffn_block(l);
    }
    f.output_logits(chunks);
    for (const SeqRows& sr : b.seqs) sr.session->n_past_ += sr.n_rows;
  }
};

Scratch::Scratch(const ModelConfig& c, int64_t max_rows) : max_rows_(max_rows) {
  const int64_t B = max_rows;
  batch_.pos.reserve(B);
  batch_.seqs.reserve(B);
  ws_.attn.reserve(B);  // a step has at most one sequence per row
  ws_.attn_starts.reserve(B + 1);
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
  kept_.resize(static_cast<size_t>(std::max({c.n_embd, c.q_dim(), ff})));
  rope_.resize((c.rope_base_swa > 0 ? 2 : 1) * B * c.n_rot);
}

void forward(const Model& model, std::span<const SeqChunk> chunks, Scratch& s, ThreadPool& pool) {
  Forward::run(model, chunks, s, pool);
}

}  // namespace slm::model
