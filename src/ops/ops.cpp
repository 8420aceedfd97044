#include "ops/ops.h"

#include <algorithm>
#include <cmath>

#include "base/thread_pool.h"

namespace slm::ops {

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out) {
  // Accumulate in double: the mean square over thousands of elements loses
  // digits in float, and this costs nothing next to the matrix products.
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void add(float* x, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += b[i];
}

void swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void softmax(float* x, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void rope(float* x, int64_t n_rot, int64_t pos, const float* inv_freq, bool neox) {
  const int64_t half = n_rot / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double theta = static_cast<double>(pos) * inv_freq[i];
    const float c = static_cast<float>(std::cos(theta));
    const float s = static_cast<float>(std::sin(theta));
    const int64_t a = neox ? i : 2 * i;
    const int64_t b = neox ? i + half : 2 * i + 1;
    const float x0 = x[a], x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
  }
}

void attention(const AttentionShape& s, const float* q, const float* k_cache, const float* v_cache,
               float* out, float* scratch, ThreadPool& pool) {
  const int64_t q_stride = s.n_head * s.head_dim;
  const int64_t kv_stride = s.n_head_kv * s.head_dim;
  const int64_t group = s.n_head / s.n_head_kv;
  const int64_t span = s.pos0 + s.n_tokens;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  pool.parallel_for(s.n_tokens * s.n_head, [&](int64_t task, int thread) {
    const int64_t t = task / s.n_head;
    const int64_t h = task % s.n_head;
    const int64_t kvh = h / group;
    const int64_t n_keys = s.pos0 + t + 1;  // causal: keys up to and including this position
    const float* qv = q + t * q_stride + h * s.head_dim;
    float* scores = scratch + static_cast<int64_t>(thread) * span;
    for (int64_t j = 0; j < n_keys; ++j) {
      const float* kv = k_cache + j * kv_stride + kvh * s.head_dim;
      float dot = 0;
      for (int64_t d = 0; d < s.head_dim; ++d) dot += qv[d] * kv[d];
      scores[j] = dot * scale;
    }
    softmax(scores, n_keys);
    float* o = out + t * q_stride + h * s.head_dim;
    std::fill(o, o + s.head_dim, 0.0f);
    for (int64_t j = 0; j < n_keys; ++j) {
      const float p = scores[j];
      const float* vv = v_cache + j * kv_stride + kvh * s.head_dim;
      for (int64_t d = 0; d < s.head_dim; ++d) o[d] += p * vv[d];
    }
  });
}

}  // namespace slm::ops
