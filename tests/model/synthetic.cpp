#include "model/synthetic.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>
#include <stdexcept>
#include <type_traits>

#include "base/thread_pool.h"
#include "model/arch.h"
#include "model/synth.h"
#include "model/weights.h"

namespace slm::test {
namespace {

int64_t head_dim_of(const SynthSpec& s) { return s.head_dim ? s.head_dim : s.n_embd / s.n_head; }

double llama3_freq(const SynthSpec& s, double freq) {
  const double wavelen = 2 * std::numbers::pi / freq;
  const double low = s.orig_ctx / s.low_freq, high = s.orig_ctx / s.high_freq;
  if (wavelen < high) return freq;
  if (wavelen > low) return freq / s.rope_factor;
  const double smooth = (s.orig_ctx / wavelen - s.low_freq) / (s.high_freq - s.low_freq);
  return (1 - smooth) * freq / s.rope_factor + smooth * freq;
}

}  // namespace

// The file comes from slm's one synthetic writer (model/synth.h), which walks
// the family's tensor table; the float values it reports are what the
// float64 forward below runs on.
SynthModel make_synth(const SynthSpec& s) {
  SynthModel m;
  m.spec = s;
  model::SynthShape shape{"test", s.arch, s.n_layer, s.n_embd, s.n_head, s.n_head_kv, s.head_dim, s.n_ff,
                          s.n_vocab, s.n_ctx_train, s.rope_base, 1e-5f, /*tied=*/false};
  shape.n_expert = s.n_expert;
  shape.n_expert_used = s.n_expert_used;
  shape.rope_scaling = {s.rope_scaling, s.rope_factor, s.low_freq, s.high_freq, s.orig_ctx, s.rope_freqs_tensor};
  shape.n_swa = s.n_swa;
  shape.attn_softcap = s.attn_softcap;
  shape.final_softcap = s.final_softcap;
  ThreadPool pool(1);
  m.gguf = model::synth_bytes(shape, "F32", s.seed, pool, [&](const std::string& name, std::span<const float> v) {
    m.w[name].assign(v.begin(), v.end());
  });
  return m;
}

namespace {

using Vec = std::vector<double>;

// y[r] = sum_c W[r][c] x[c] for a [rows][cols] row-major float matrix.
Vec matvec(const float* W, int64_t rows, int64_t cols, const Vec& x) {
  Vec y(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r] += static_cast<double>(W[r * cols + c]) * x[c];
  return y;
}

Vec rmsnorm(const Vec& x, const std::vector<float>& w) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double k = 1.0 / std::sqrt(ss / x.size() + 1e-5);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * k * w[i];
  return y;
}

// base: the layer's RoPE base; factors: LongRoPE divisors per pair (or empty).
void rope_head(double* x, int64_t hd, int64_t pos, const SynthSpec& s, bool neox, double base,
               const std::vector<float>& factors) {
  for (int64_t i = 0; i < hd / 2; ++i) {
    double f = std::pow(base, -2.0 * i / hd);
    if (!factors.empty()) f /= factors[i];
    if (s.rope_scaling == "llama3") f = llama3_freq(s, f);
    if (s.rope_scaling == "linear") f /= s.rope_factor;
    const double th = pos * f, c = std::cos(th), sn = std::sin(th);
    // llama: adjacent pairs; NeoX (qwen): pairs split across the halves.
    double& a = neox ? x[i] : x[2 * i];
    double& b = neox ? x[i + hd / 2] : x[2 * i + 1];
    const double a0 = a, b0 = b;
    a = a0 * c - b0 * sn;
    b = a0 * sn + b0 * c;
  }
}

// The tensor names come from the family's table (model/arch.h), looked up by
// the field a tensor binds to, so this forward reads what slm's binder reads.
using model::LayerWeights;
template <typename Field>
std::string name_of(const model::Family& fam, Field field, int64_t layer) {
  for (const model::TensorSpec& t : fam.layer) {
    if constexpr (std::is_same_v<Field, std::vector<float> LayerWeights::*>) {
      if (t.vector == field) return model::tensor_name(t, layer);
    } else if constexpr (std::is_same_v<Field, backend::Linear LayerWeights::*>) {
      if (t.matrix == field) return model::tensor_name(t, layer);
      for (const model::TensorSpec::Part& p : t.parts)
        if (p.matrix == field) return model::tensor_name(t, layer);
    } else {
      if (t.experts == field) return model::tensor_name(t, layer);
    }
  }
  return {};  // not in this family's table (opt() then gives an empty vector)
}

// token_embd, output and output_norm by the ModelWeights field they bind to.
std::string global_name(const model::Family& fam, int which) {
  for (const model::TensorSpec& t : fam.globals)
    if ((which == 0 && t.global_table) || (which == 1 && t.global_matrix) ||
        (which == 2 && t.global_vector == &model::ModelWeights::output_norm))
      return model::tensor_name(t, -1);
  throw std::runtime_error("no such tensor in the table");
}

// Rows of a fused tensor before a part (Phi-3's attn_qkv, ffn_up = [gate; up]).
int64_t part_offset(const model::Family& fam, backend::Linear LayerWeights::*field, const SynthSpec& s) {
  const int64_t hd = s.head_dim ? s.head_dim : s.n_embd / s.n_head;
  for (const model::TensorSpec& t : fam.layer) {
    int64_t rows = 0;
    for (const model::TensorSpec::Part& p : t.parts) {
      if (p.matrix == field) return rows;
      rows += p.rows == model::Dim::kQ ? s.n_head * hd : p.rows == model::Dim::kFf ? s.n_ff : s.n_head_kv * hd;
    }
  }
  return 0;
}

Vec gated_ffn(const float* g, const float* u, const float* d, int64_t n_embd, int64_t n_ff, const Vec& x,
              bool gelu) {
  Vec gate = matvec(g, n_ff, n_embd, x), up = matvec(u, n_ff, n_embd, x);
  for (int64_t i = 0; i < n_ff; ++i) {
    const double v = gate[i];
    const double act = gelu ? 0.5 * v * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v)))
                            : v / (1 + std::exp(-v));
    gate[i] = act * up[i];
  }
  return matvec(d, n_embd, n_ff, gate);
}

double capped(double v, double cap) { return cap > 0 ? cap * std::tanh(v / cap) : v; }

}  // namespace

std::vector<double> reference_forward(const SynthModel& m, const std::vector<int32_t>& tokens) {
  const SynthSpec& s = m.spec;
  const int64_t hd = head_dim_of(s), T = static_cast<int64_t>(tokens.size());
  const int64_t qd = s.n_head * hd, kd = s.n_head_kv * hd;
  auto W = [&](const std::string& n) { return m.w.at(n).data(); };
  const model::Family& fam = *model::find_family(s.arch);
  const bool neox = fam.rope_order == model::RopeOrder::kNeox;
  // An optional tensor: empty when the file does not hold it.
  auto opt = [&](const std::string& n) { return m.w.count(n) ? m.w.at(n) : std::vector<float>{}; };
  auto head_norm = [&](double* x, const std::vector<float>& w) {
    if (w.empty()) return;
    const Vec y = rmsnorm(Vec(x, x + hd), w);
    std::copy(y.begin(), y.end(), x);
  };
  std::vector<Vec> x(T);
  for (int64_t t = 0; t < T; ++t) {
    x[t] = Vec(W(global_name(fam, 0)) + tokens[t] * s.n_embd, W(global_name(fam, 0)) + (tokens[t] + 1) * s.n_embd);
    if (fam.scale_embeddings)
      for (double& e : x[t]) e *= std::sqrt(static_cast<double>(s.n_embd));
  }
  // LongRoPE: the short factors (these contexts are within the original length).
  const std::vector<float> factors = opt("rope_factors_short.weight");
  const bool gelu = fam.ffn_act == model::FfnActivation::kGeluTanh;
  for (int64_t l = 0; l < s.n_layer; ++l) {
    auto N = [&](auto field) { return name_of(fam, field, l); };
    // A matrix by its field: a whole tensor or its rows of a fused one.
    auto M = [&](backend::Linear LayerWeights::*field) {
      return W(N(field)) + part_offset(fam, field, s) * s.n_embd;
    };
    const bool sliding = s.n_swa > 0 && model::is_sliding(fam.swa, l);
    const double base = sliding && fam.swa_rope_base > 0 ? fam.swa_rope_base : s.rope_base;
    // Gemma's post norms, where the family's table has them.
    const std::vector<float> post_attn = opt(N(&LayerWeights::post_attn_norm)),
                             post_ffn = opt(N(&LayerWeights::post_ffn_norm));
    const std::vector<float> bq = opt(N(&LayerWeights::bq)), bk = opt(N(&LayerWeights::bk)),
                             bv = opt(N(&LayerWeights::bv)), q_norm = opt(N(&LayerWeights::q_norm)),
                             k_norm = opt(N(&LayerWeights::k_norm));
    std::vector<Vec> q(T), k(T), v(T);
    for (int64_t t = 0; t < T; ++t) {
      const Vec xn = rmsnorm(x[t], m.w.at(N(&LayerWeights::attn_norm)));
      q[t] = matvec(M(&LayerWeights::wq), qd, s.n_embd, xn);
      k[t] = matvec(M(&LayerWeights::wk), kd, s.n_embd, xn);
      v[t] = matvec(M(&LayerWeights::wv), kd, s.n_embd, xn);
      for (size_t i = 0; i < bq.size(); ++i) q[t][i] += bq[i];
      for (size_t i = 0; i < bk.size(); ++i) k[t][i] += bk[i];
      for (size_t i = 0; i < bv.size(); ++i) v[t][i] += bv[i];
      for (int64_t h = 0; h < s.n_head; ++h) {
        head_norm(&q[t][h * hd], q_norm);
        rope_head(&q[t][h * hd], hd, t, s, neox, base, factors);
      }
      for (int64_t h = 0; h < s.n_head_kv; ++h) {
        head_norm(&k[t][h * hd], k_norm);
        rope_head(&k[t][h * hd], hd, t, s, neox, base, factors);
      }
    }
    for (int64_t t = 0; t < T; ++t) {
      Vec att(qd, 0.0);
      for (int64_t h = 0; h < s.n_head; ++h) {
        const int64_t g = h / (s.n_head / s.n_head_kv);
        // A sliding layer sees the last n_swa positions only.
        const int64_t j0 = sliding ? std::max<int64_t>(0, t - s.n_swa + 1) : 0;
        Vec sc(t + 1, 0.0);
        double mx = -1e300;
        for (int64_t j = j0; j <= t; ++j) {
          double d = 0;
          for (int64_t i = 0; i < hd; ++i) d += q[t][h * hd + i] * k[j][g * hd + i];
          sc[j] = capped(d / std::sqrt(static_cast<double>(hd)), s.attn_softcap);
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int64_t j = j0; j <= t; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
        for (int64_t j = j0; j <= t; ++j)
          for (int64_t i = 0; i < hd; ++i) att[h * hd + i] += sc[j] / sum * v[j][g * hd + i];
      }
      Vec o = matvec(W(N(&LayerWeights::wo)), s.n_embd, qd, att);
      if (!post_attn.empty()) o = rmsnorm(o, post_attn);
      for (int64_t i = 0; i < s.n_embd; ++i) x[t][i] += o[i];
      const Vec xn = rmsnorm(x[t], m.w.at(N(&LayerWeights::ffn_norm)));
      Vec f(s.n_embd, 0.0);
      if (s.n_expert == 0) {
        f = gated_ffn(M(&LayerWeights::ffn_gate), M(&LayerWeights::ffn_up), W(N(&LayerWeights::ffn_down)), s.n_embd,
                      s.n_ff, xn, gelu);
      } else {
        Vec r = matvec(W(N(&LayerWeights::gate_inp)), s.n_expert, s.n_embd, xn);
        double mx = *std::max_element(r.begin(), r.end()), sum = 0;
        for (double& e : r) sum += (e = std::exp(e - mx));
        for (double& e : r) e /= sum;
        std::vector<int64_t> idx(s.n_expert);
        std::iota(idx.begin(), idx.end(), 0);
        std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return r[a] > r[b]; });
        double wsum = 0;
        for (int64_t kk = 0; kk < s.n_expert_used; ++kk) wsum += r[idx[kk]];
        for (int64_t kk = 0; kk < s.n_expert_used; ++kk) {
          const int64_t e = idx[kk];
          const int64_t mat = s.n_ff * s.n_embd;
          const Vec y = gated_ffn(W(N(&LayerWeights::gate_exps)) + e * mat, W(N(&LayerWeights::up_exps)) + e * mat,
                                  W(N(&LayerWeights::down_exps)) + e * mat, s.n_embd, s.n_ff, xn, gelu);
          for (int64_t i = 0; i < s.n_embd; ++i) f[i] += r[e] / wsum * y[i];
        }
      }
      if (!post_ffn.empty()) f = rmsnorm(f, post_ffn);
      for (int64_t i = 0; i < s.n_embd; ++i) x[t][i] += f[i];
    }
  }
  std::vector<double> logits;
  for (int64_t t = 0; t < T; ++t) {
    const Vec y = matvec(W(global_name(fam, 1)), s.n_vocab, s.n_embd, rmsnorm(x[t], m.w.at(global_name(fam, 2))));
    for (const double e : y) logits.push_back(capped(e, s.final_softcap));
  }
  return logits;
}

}  // namespace slm::test
