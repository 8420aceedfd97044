// attention.h: blocked causal attention for training.
#include "train/attention.h"

#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"

namespace slm::train {

namespace {

// Query rows a block: the block's P, dP [64][n] stay in L2 next to K^T, V^T.
constexpr int64_t kBlock = 64;

// t [hd][n] = the columns [c0, c0 + hd) of x [n][ld], transposed.
void transpose_head(const float* x, int64_t ld, int64_t c0, int64_t n, int64_t hd, float* t) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < hd; ++d) t[d * n + j] = x[j * ld + c0 + d];
}

// P [nb][n] of query rows [i0, i0 + nb) of head h against keys j < i0 + nb
// (w.kt holds its kv head's K^T): softmax over j <= i of scale * q_i . k_j,
// zero beyond i.
void block_probs(const AttnShape& s, const float* q, int64_t h, int64_t i0, int64_t nb,
                 kernels::AxpyRowsNFn axpy, AttnScratch& w) {
  const int64_t qd = s.n_head * s.hd, m = i0 + nb, n = s.n;
  float* p = w.p.data();
  for (int64_t t = 0; t < nb; ++t) std::fill(p + t * n, p + t * n + m, 0.0f);
  axpy(p, n, q + i0 * qd + h * s.hd, qd, nb, s.hd, w.kt.data(), n, m);
  for (int64_t t = 0; t < nb; ++t) {
    float* row = p + t * n;
    const int64_t last = i0 + t;  // keys 0..last are visible
    float mx = -INFINITY;
    for (int64_t j = 0; j <= last; ++j) {
      row[j] *= s.scale;
      mx = std::max(mx, row[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j <= last; ++j) {
      row[j] = std::exp(row[j] - mx);
      sum += row[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j <= last; ++j) row[j] *= inv;
    std::fill(row + last + 1, row + m, 0.0f);
  }
}

}  // namespace

void AttnScratch::reserve(int64_t n, int64_t hd) {
  const auto sz = [](int64_t a) { return static_cast<size_t>(a); };
  for (auto* v : {&kt, &vt}) v->resize(sz(hd * n));
  for (auto* v : {&p, &dp, &pt, &dst}) v->resize(sz(kBlock * n));
}

void attention_fwd_blocks(const AttnShape& s, const float* q, const float* k, const float* v,
                          float* out, int64_t h, AttnScratch& w) {
  const int64_t qd = s.n_head * s.hd, kd = s.n_head_kv * s.hd, n = s.n;
  const int64_t kh = h / (s.n_head / s.n_head_kv);
  const kernels::AxpyRowsNFn axpy = kernels::axpy_rows_n();
  transpose_head(k, kd, kh * s.hd, n, s.hd, w.kt.data());
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t nb = std::min(kBlock, n - i0), m = i0 + nb;
    block_probs(s, q, h, i0, nb, axpy, w);
    float* o = out + i0 * qd + h * s.hd;
    for (int64_t t = 0; t < nb; ++t) std::fill(o + t * qd, o + t * qd + s.hd, 0.0f);
    axpy(o, qd, w.p.data(), n, nb, m, v + kh * s.hd, kd, s.hd);
  }
}

void attention_bwd_blocks(const AttnShape& s, const float* q, const float* k, const float* v,
                          const float* out, const float* dout, float* dq, float* dk, float* dv,
                          int64_t kh, AttnScratch& w) {
  const int64_t qd = s.n_head * s.hd, kd = s.n_head_kv * s.hd, n = s.n, hd = s.hd;
  const int64_t group = s.n_head / s.n_head_kv;
  const kernels::AxpyRowsNFn axpy = kernels::axpy_rows_n();
  transpose_head(k, kd, kh * hd, n, hd, w.kt.data());
  transpose_head(v, kd, kh * hd, n, hd, w.vt.data());
  for (int64_t j = 0; j < n; ++j) {
    std::fill(dk + j * kd + kh * hd, dk + j * kd + (kh + 1) * hd, 0.0f);
    std::fill(dv + j * kd + kh * hd, dv + j * kd + (kh + 1) * hd, 0.0f);
  }
  for (int64_t h = kh * group; h < (kh + 1) * group; ++h)
    for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
      const int64_t nb = std::min(kBlock, n - i0), m = i0 + nb;
      block_probs(s, q, h, i0, nb, axpy, w);
      const float* p = w.p.data();
      float* ds = w.dp.data();  // dP, then dS in place
      const float* dob = dout + i0 * qd + h * hd;
      const float* qb = q + i0 * qd + h * hd;
      for (int64_t t = 0; t < nb; ++t) std::fill(ds + t * n, ds + t * n + m, 0.0f);
      axpy(ds, n, dob, qd, nb, hd, w.vt.data(), n, m);
      for (int64_t t = 0; t < nb; ++t) {
        // sum_j p_j dp_j = dO_i . O_i
        const float rowdot = dot_n(dob + t * qd, out + (i0 + t) * qd + h * hd, hd);
        for (int64_t j = 0; j < m; ++j)
          ds[t * n + j] = p[t * n + j] * (ds[t * n + j] - rowdot) * s.scale;
      }
      float* dqb = dq + i0 * qd + h * hd;
      for (int64_t t = 0; t < nb; ++t) std::fill(dqb + t * qd, dqb + t * qd + hd, 0.0f);
      axpy(dqb, qd, ds, n, nb, m, k + kh * hd, kd, hd);
      // dK += dS^T Q and dV += P^T dO over the block's rows.
      for (int64_t t = 0; t < nb; ++t)
        for (int64_t j = 0; j < m; ++j) {
          w.dst[static_cast<size_t>(j * kBlock + t)] = ds[t * n + j];
          w.pt[static_cast<size_t>(j * kBlock + t)] = p[t * n + j];
        }
      axpy(dk + kh * hd, kd, w.dst.data(), kBlock, m, nb, qb, qd, hd);
      axpy(dv + kh * hd, kd, w.pt.data(), kBlock, m, nb, dob, qd, hd);
    }
}

}  // namespace slm::train
