// Differentiable top-k routing of a mixture-of-experts layer (the float ops
// beside train/grad_ops.h, templated the same way so the test checks the
// backward in double against central differences).
//   p = softmax(router logits) over n experts (computed by the caller);
//   chosen = the k largest p (ties to the lower index, as model/forward.cpp);
//   w_j = p_j, or p_j / sum over the chosen of p when renormalised.
// The choice itself is piecewise constant: the gradient flows only through
// the chosen experts' weights, into every logit through the softmax.
// No allocation except the scratch passed in; no throwing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>

namespace slm::train {

// chosen[0..k), w[0..k) from the probabilities p[0..n); order: scratch [n].
template <class T>
void moe_route_fwd(const T* p, int64_t n, int64_t k, bool renormalize, int32_t* order,
                   int32_t* chosen, T* w) {
  std::iota(order, order + n, 0);
  std::partial_sort(order, order + k, order + n,
                    [p](int32_t a, int32_t z) { return p[a] > p[z] || (p[a] == p[z] && a < z); });
  double sum = 0;
  for (int64_t j = 0; j < k; ++j) sum += static_cast<double>(p[order[j]]);
  for (int64_t j = 0; j < k; ++j) {
    chosen[j] = order[j];
    w[j] = renormalize ? static_cast<T>(static_cast<double>(p[order[j]]) / sum) : p[order[j]];
  }
}

// dz[0..n) (the router logits' gradient) from dw[0..k); dp: scratch [n].
template <class T>
void moe_route_bwd(const T* p, int64_t n, const int32_t* chosen, const T* w, int64_t k,
                   bool renormalize, const T* dw, T* dp, T* dz) {
  std::fill(dp, dp + n, T(0));
  if (renormalize) {
    // w_j = p_j / Z: dL/dp_j = (dw_j - sum_i dw_i w_i) / Z for the chosen j.
    T z = 0, s = 0;
    for (int64_t j = 0; j < k; ++j) {
      z += p[chosen[j]];
      s += dw[j] * w[j];
    }
    for (int64_t j = 0; j < k; ++j) dp[chosen[j]] = (dw[j] - s) / z;
  } else {
    for (int64_t j = 0; j < k; ++j) dp[chosen[j]] = dw[j];
  }
  // Softmax: dz_i = p_i (dp_i - sum_j p_j dp_j).
  T dot = 0;
  for (int64_t i = 0; i < n; ++i) dot += p[i] * dp[i];
  for (int64_t i = 0; i < n; ++i) dz[i] = p[i] * (dp[i] - dot);
}

}  // namespace slm::train
