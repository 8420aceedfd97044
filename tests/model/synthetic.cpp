#include "model/synthetic.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>

#include "gguf/writer.h"

namespace slm::test {
namespace {

struct Rng {
  uint64_t s;
  double uniform() {  // [-1, 1)
    s += 0x9e3779b97f4a7c15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) / 4503599627370496.0 - 1.0;
  }
};

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

SynthModel make_synth(const SynthSpec& s) {
  SynthModel m;
  m.spec = s;
  Rng rng{s.seed};
  gguf::Writer w;
  const std::string a = s.arch;
  w.add_string("general.architecture", a);
  w.add_u32(a + ".context_length", static_cast<uint32_t>(s.n_ctx_train));
  w.add_u32(a + ".embedding_length", static_cast<uint32_t>(s.n_embd));
  w.add_u32(a + ".block_count", static_cast<uint32_t>(s.n_layer));
  w.add_u32(a + ".feed_forward_length", static_cast<uint32_t>(s.n_ff));
  w.add_u32(a + ".attention.head_count", static_cast<uint32_t>(s.n_head));
  w.add_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv));
  w.add_f32(a + ".rope.freq_base", s.rope_base);
  w.add_f32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  const int64_t hd = head_dim_of(s);
  if (s.head_dim) w.add_u32(a + ".attention.key_length", static_cast<uint32_t>(hd));
  if (s.n_expert) {
    w.add_u32(a + ".expert_count", static_cast<uint32_t>(s.n_expert));
    w.add_u32(a + ".expert_used_count", static_cast<uint32_t>(s.n_expert_used));
  }
  if (!s.rope_scaling.empty() && !s.rope_freqs_tensor) {
    w.add_string(a + ".rope.scaling.type", s.rope_scaling);
    w.add_f32(a + ".rope.scaling.factor", s.rope_factor);
    w.add_f32(a + ".rope.scaling.low_freq_factor", s.low_freq);
    w.add_f32(a + ".rope.scaling.high_freq_factor", s.high_freq);
    w.add_u32(a + ".rope.scaling.original_context_length", static_cast<uint32_t>(s.orig_ctx));
  }
  auto add = [&](const std::string& name, std::vector<int64_t> shape, double scale, double offset = 0) {
    const int64_t n = std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(offset + scale * rng.uniform());
    w.add_tensor(name, DType::F32, shape, {reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4});
    m.w[name] = std::move(v);
  };
  add("token_embd.weight", {s.n_embd, s.n_vocab}, 1.0);
  add("output_norm.weight", {s.n_embd}, 0.2, 1.0);
  add("output.weight", {s.n_embd, s.n_vocab}, 0.3);
  if (s.rope_freqs_tensor) {
    std::vector<float> div(hd / 2);
    for (int64_t i = 0; i < hd / 2; ++i) {
      const double f = std::pow(s.rope_base, -2.0 * i / hd);
      div[i] = static_cast<float>(f / llama3_freq(s, f));
    }
    w.add_tensor("rope_freqs.weight", DType::F32, {hd / 2},
                 {reinterpret_cast<const uint8_t*>(div.data()), div.size() * 4});
  }
  const double ws = 1.0 / std::sqrt(static_cast<double>(s.n_embd));
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {s.n_embd}, 0.2, 1.0);
    add(p + "attn_q.weight", {s.n_embd, s.n_head * hd}, ws);
    add(p + "attn_k.weight", {s.n_embd, s.n_head_kv * hd}, ws);
    add(p + "attn_v.weight", {s.n_embd, s.n_head_kv * hd}, ws);
    add(p + "attn_output.weight", {s.n_head * hd, s.n_embd}, ws);
    add(p + "ffn_norm.weight", {s.n_embd}, 0.2, 1.0);
    if (s.n_expert) {
      add(p + "ffn_gate_inp.weight", {s.n_embd, s.n_expert}, 3 * ws);
      add(p + "ffn_gate_exps.weight", {s.n_embd, s.n_ff, s.n_expert}, ws);
      add(p + "ffn_up_exps.weight", {s.n_embd, s.n_ff, s.n_expert}, ws);
      add(p + "ffn_down_exps.weight", {s.n_ff, s.n_embd, s.n_expert}, ws);
    } else {
      add(p + "ffn_gate.weight", {s.n_embd, s.n_ff}, ws);
      add(p + "ffn_up.weight", {s.n_embd, s.n_ff}, ws);
      add(p + "ffn_down.weight", {s.n_ff, s.n_embd}, ws);
    }
  }
  m.gguf = w.to_bytes();
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

void rope_head(double* x, int64_t hd, int64_t pos, const SynthSpec& s) {
  for (int64_t i = 0; i < hd / 2; ++i) {
    double f = std::pow(static_cast<double>(s.rope_base), -2.0 * i / hd);
    if (s.rope_scaling == "llama3") f = llama3_freq(s, f);
    if (s.rope_scaling == "linear") f /= s.rope_factor;
    const double th = pos * f, c = std::cos(th), sn = std::sin(th);
    const double a = x[2 * i], b = x[2 * i + 1];  // llama: adjacent pairs
    x[2 * i] = a * c - b * sn;
    x[2 * i + 1] = a * sn + b * c;
  }
}

Vec swiglu_ffn(const float* g, const float* u, const float* d, int64_t n_embd, int64_t n_ff, const Vec& x) {
  Vec gate = matvec(g, n_ff, n_embd, x), up = matvec(u, n_ff, n_embd, x);
  for (int64_t i = 0; i < n_ff; ++i) gate[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
  return matvec(d, n_embd, n_ff, gate);
}

}  // namespace

std::vector<double> reference_forward(const SynthModel& m, const std::vector<int32_t>& tokens) {
  const SynthSpec& s = m.spec;
  const int64_t hd = head_dim_of(s), T = static_cast<int64_t>(tokens.size());
  const int64_t qd = s.n_head * hd, kd = s.n_head_kv * hd;
  auto W = [&](const std::string& n) { return m.w.at(n).data(); };
  std::vector<Vec> x(T);
  for (int64_t t = 0; t < T; ++t)
    x[t] = Vec(W("token_embd.weight") + tokens[t] * s.n_embd, W("token_embd.weight") + (tokens[t] + 1) * s.n_embd);
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    std::vector<Vec> q(T), k(T), v(T);
    for (int64_t t = 0; t < T; ++t) {
      const Vec xn = rmsnorm(x[t], m.w.at(p + "attn_norm.weight"));
      q[t] = matvec(W(p + "attn_q.weight"), qd, s.n_embd, xn);
      k[t] = matvec(W(p + "attn_k.weight"), kd, s.n_embd, xn);
      v[t] = matvec(W(p + "attn_v.weight"), kd, s.n_embd, xn);
      for (int64_t h = 0; h < s.n_head; ++h) rope_head(&q[t][h * hd], hd, t, s);
      for (int64_t h = 0; h < s.n_head_kv; ++h) rope_head(&k[t][h * hd], hd, t, s);
    }
    for (int64_t t = 0; t < T; ++t) {
      Vec att(qd, 0.0);
      for (int64_t h = 0; h < s.n_head; ++h) {
        const int64_t g = h / (s.n_head / s.n_head_kv);
        Vec sc(t + 1);
        double mx = -1e300;
        for (int64_t j = 0; j <= t; ++j) {
          double d = 0;
          for (int64_t i = 0; i < hd; ++i) d += q[t][h * hd + i] * k[j][g * hd + i];
          sc[j] = d / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (double& e : sc) sum += (e = std::exp(e - mx));
        for (int64_t j = 0; j <= t; ++j)
          for (int64_t i = 0; i < hd; ++i) att[h * hd + i] += sc[j] / sum * v[j][g * hd + i];
      }
      const Vec o = matvec(W(p + "attn_output.weight"), s.n_embd, qd, att);
      for (int64_t i = 0; i < s.n_embd; ++i) x[t][i] += o[i];
      const Vec xn = rmsnorm(x[t], m.w.at(p + "ffn_norm.weight"));
      Vec f(s.n_embd, 0.0);
      if (s.n_expert == 0) {
        f = swiglu_ffn(W(p + "ffn_gate.weight"), W(p + "ffn_up.weight"), W(p + "ffn_down.weight"), s.n_embd, s.n_ff, xn);
      } else {
        Vec r = matvec(W(p + "ffn_gate_inp.weight"), s.n_expert, s.n_embd, xn);
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
          const Vec y = swiglu_ffn(W(p + "ffn_gate_exps.weight") + e * mat, W(p + "ffn_up_exps.weight") + e * mat,
                                   W(p + "ffn_down_exps.weight") + e * mat, s.n_embd, s.n_ff, xn);
          for (int64_t i = 0; i < s.n_embd; ++i) f[i] += r[e] / wsum * y[i];
        }
      }
      for (int64_t i = 0; i < s.n_embd; ++i) x[t][i] += f[i];
    }
  }
  std::vector<double> logits;
  for (int64_t t = 0; t < T; ++t) {
    const Vec y = matvec(W("output.weight"), s.n_vocab, s.n_embd, rmsnorm(x[t], m.w.at("output_norm.weight")));
    logits.insert(logits.end(), y.begin(), y.end());
  }
  return logits;
}

}  // namespace slm::test
