// Differentiable float ops of the llama-family block for training: each op a
// forward and a backward, templated on the scalar type so the tests check
// every backward in double against central finite differences while the
// trainer runs them in float. Shapes are row-major [rows][width]; backward
// functions write (never accumulate into) their input gradients unless the
// name says `accumulate`. Frozen weights (norm gains) get no gradient.
// No allocation except where a buffer is passed in; no throwing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace slm::train {

// y[i] = x[i] * inv * w[i], inv = 1 / sqrt(mean(x^2) + eps); y may alias x.
template <class T>
void rms_norm_fwd(const T* x, const float* w, int64_t n, float eps, T* y) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const T inv = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv * static_cast<T>(w[i]);
}

// dx = inv * (dy * w) - x * inv^3 / n * sum(dy * w * x); dx may alias dy.
template <class T>
void rms_norm_bwd(const T* x, const float* w, int64_t n, float eps, const T* dy, T* dx) {
  double ss = 0, dot = 0;
  for (int64_t i = 0; i < n; ++i) {
    ss += static_cast<double>(x[i]) * x[i];
    dot += static_cast<double>(dy[i]) * w[i] * x[i];
  }
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
  const T a = static_cast<T>(inv),
          b = static_cast<T>(inv * inv * inv * dot / static_cast<double>(n));
  for (int64_t i = 0; i < n; ++i) dx[i] = a * dy[i] * static_cast<T>(w[i]) - b * x[i];
}

// The weight's gradient of y = rms_norm(x) * w: dw[i] += dy[i] * x[i] * inv.
template <class T>
void rms_norm_bwd_w(const T* x, int64_t n, float eps, const T* dy, T* dw) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const T inv = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) dw[i] += dy[i] * x[i] * inv;
}

// Rotary embedding of one head x[0..n_rot) in place; cs as ops::rope_angles
// fills it (cos of pair i at i, sin at n_rot/2 + i). neox: pairs (i, i + n_rot/2),
// else (2i, 2i+1). inverse: rotate by -theta, which is the backward (the
// rotation is orthogonal, also when cos/sin carry a magnitude factor: the
// backward is the transpose, which is what inverse computes).
template <class T>
void rope(T* x, int64_t n_rot, const float* cs, bool neox, bool inverse) {
  const int64_t half = n_rot / 2;
  for (int64_t i = 0; i < half; ++i) {
    const T c = static_cast<T>(cs[i]),
            s = inverse ? -static_cast<T>(cs[half + i]) : static_cast<T>(cs[half + i]);
    T* a = neox ? &x[i] : &x[2 * i];
    T* b = neox ? &x[i + half] : &x[2 * i + 1];
    const T x0 = *a, x1 = *b;
    *a = x0 * c - x1 * s;
    *b = x0 * s + x1 * c;
  }
}

template <class T>
T silu(T g) {
  return g / (T(1) + std::exp(-g));
}

// h[i] = silu(g[i]) * u[i]
template <class T>
void swiglu_fwd(const T* g, const T* u, int64_t n, T* h) {
  for (int64_t i = 0; i < n; ++i) h[i] = silu(g[i]) * u[i];
}

// dg, du from dh.
template <class T>
void swiglu_bwd(const T* g, const T* u, const T* dh, int64_t n, T* dg, T* du) {
  for (int64_t i = 0; i < n; ++i) {
    const T sg = T(1) / (T(1) + std::exp(-g[i]));
    const T d = dh[i];
    du[i] = d * g[i] * sg;
    dg[i] = d * u[i] * sg * (T(1) + g[i] * (T(1) - sg));
  }
}

// Causal grouped-query attention of one sequence of n rows at positions 0..n-1:
//   q, out: [n][n_head * hd]; k, v: [n][n_head_kv * hd]
struct AttnShape {
  int64_t n, n_head, n_head_kv, hd;
  float scale;
};

// The probabilities of row i of head h: p[0..i] (scratch of n).
// a . b over n values with 8 independent partial sums, so that the compiler
// vectorizes it (a single running sum is one serial chain of adds).
template <class T>
T dot_n(const T* a, const T* b, int64_t n) {
  T acc[8] = {};
  int64_t d = 0;
  for (; d + 8 <= n; d += 8)
    for (int u = 0; u < 8; ++u) acc[u] += a[d + u] * b[d + u];
  T sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; d < n; ++d) sum += a[d] * b[d];
  return sum;
}

template <class T>
void attn_probs(const AttnShape& s, const T* q, const T* k, int64_t h, int64_t i, T* p) {
  const int64_t qd = s.n_head * s.hd, kd = s.n_head_kv * s.hd, kh = h / (s.n_head / s.n_head_kv);
  const T* qi = q + i * qd + h * s.hd;
  T mx = -INFINITY;
  for (int64_t j = 0; j <= i; ++j) {
    const T* kj = k + j * kd + kh * s.hd;
    p[j] = dot_n(qi, kj, s.hd) * static_cast<T>(s.scale);
    mx = std::max(mx, p[j]);
  }
  double sum = 0;
  for (int64_t j = 0; j <= i; ++j) {
    p[j] = std::exp(p[j] - mx);
    sum += p[j];
  }
  const T inv = static_cast<T>(1.0 / sum);
  for (int64_t j = 0; j <= i; ++j) p[j] *= inv;
}

// Heads [h0, h1) of the forward; p: scratch of n.
template <class T>
void attention_fwd(const AttnShape& s, const T* q, const T* k, const T* v, T* out, int64_t h0,
                   int64_t h1, T* p) {
  const int64_t qd = s.n_head * s.hd, kd = s.n_head_kv * s.hd, group = s.n_head / s.n_head_kv;
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t i = 0; i < s.n; ++i) {
      attn_probs(s, q, k, h, i, p);
      T* o = out + i * qd + h * s.hd;
      std::fill(o, o + s.hd, T(0));
      for (int64_t j = 0; j <= i; ++j) {
        const T* vj = v + j * kd + (h / group) * s.hd;
        for (int64_t d = 0; d < s.hd; ++d) o[d] += p[j] * vj[d];
      }
    }
}

// Backward for the query heads of kv heads [g0, g1) (each kv head's dk, dv
// columns are written by one call only, so calls over disjoint ranges may
// run in parallel). Recomputes the probabilities; p: scratch of n.
template <class T>
void attention_bwd(const AttnShape& s, const T* q, const T* k, const T* v, const T* out,
                   const T* dout, T* dq, T* dk, T* dv, int64_t g0, int64_t g1, T* p) {
  const int64_t qd = s.n_head * s.hd, kd = s.n_head_kv * s.hd, group = s.n_head / s.n_head_kv;
  const T sc = static_cast<T>(s.scale);
  for (int64_t kh = g0; kh < g1; ++kh) {
    for (int64_t j = 0; j < s.n; ++j) {
      std::fill(dk + j * kd + kh * s.hd, dk + j * kd + (kh + 1) * s.hd, T(0));
      std::fill(dv + j * kd + kh * s.hd, dv + j * kd + (kh + 1) * s.hd, T(0));
    }
    for (int64_t h = kh * group; h < (kh + 1) * group; ++h)
      for (int64_t i = 0; i < s.n; ++i) {
        attn_probs(s, q, k, h, i, p);
        const T* doi = dout + i * qd + h * s.hd;
        const T* oi = out + i * qd + h * s.hd;
        const T* qi = q + i * qd + h * s.hd;
        T* dqi = dq + i * qd + h * s.hd;
        const T rowdot = dot_n(doi, oi, s.hd);  // sum_j p_j dp_j = dO_i . O_i
        std::fill(dqi, dqi + s.hd, T(0));
        for (int64_t j = 0; j <= i; ++j) {
          const T* vj = v + j * kd + kh * s.hd;
          const T* kj = k + j * kd + kh * s.hd;
          T* dvj = dv + j * kd + kh * s.hd;
          T* dkj = dk + j * kd + kh * s.hd;
          const T dpj = dot_n(doi, vj, s.hd);
          for (int64_t d = 0; d < s.hd; ++d) dvj[d] += p[j] * doi[d];
          const T ds = p[j] * (dpj - rowdot) * sc;
          for (int64_t d = 0; d < s.hd; ++d) {
            dqi[d] += ds * kj[d];
            dkj[d] += ds * qi[d];
          }
        }
      }
  }
}

// Cross-entropy of one row: returns logsumexp(z) - z[target] and, when dz is
// set, dz = weight * (softmax(z) - onehot(target)) (dz may alias z).
template <class T>
double cross_entropy(const T* z, int64_t n, int32_t target, T weight, T* dz) {
  T mx = z[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, z[i]);
  const T zt = z[target];  // before dz (which may alias z) is written
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = std::exp(static_cast<double>(z[i] - mx));
    sum += e;
    if (dz != nullptr) dz[i] = static_cast<T>(e);  // one exp per logit: scaled below
  }
  const double lse = static_cast<double>(mx) + std::log(sum);
  const double loss = lse - static_cast<double>(zt);
  if (dz != nullptr) {
    const T inv = weight * static_cast<T>(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) dz[i] *= inv;
    dz[target] -= weight;
  }
  return loss;
}

}  // namespace slm::train
