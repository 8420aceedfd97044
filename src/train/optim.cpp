// optim.h: AdamW, clipping and the schedule.
#include "train/optim.h"

#include <cmath>
#include <numbers>

namespace slm::train {

void AdamW::step(std::span<const std::span<float>> params, std::span<const std::span<float>> grads, float lr) {
  if (mv_.empty())
    for (const std::span<float> p : params) {
      mv_.emplace_back(p.size(), 0.0f);
      mv_.emplace_back(p.size(), 0.0f);
    }
  ++t_;
  const double bc1 = 1.0 - std::pow(static_cast<double>(o_.beta1), static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(static_cast<double>(o_.beta2), static_cast<double>(t_));
  const float step = static_cast<float>(lr / bc1), inv_bc2 = static_cast<float>(1.0 / bc2);
  const float decay = 1.0f - lr * o_.weight_decay;
  for (size_t i = 0; i < params.size(); ++i) {
    float* p = params[i].data();
    const float* g = grads[i].data();
    float* m = mv_[2 * i].data();
    float* v = mv_[2 * i + 1].data();
    for (size_t j = 0; j < params[i].size(); ++j) {
      m[j] = o_.beta1 * m[j] + (1.0f - o_.beta1) * g[j];
      v[j] = o_.beta2 * v[j] + (1.0f - o_.beta2) * g[j] * g[j];
      p[j] = p[j] * decay - step * m[j] / (std::sqrt(v[j] * inv_bc2) + o_.eps);
    }
  }
}

double clip_grad_norm(std::span<const std::span<float>> grads, double max_norm) {
  double ss = 0;
  for (const std::span<float> g : grads)
    for (const float x : g) ss += static_cast<double>(x) * x;
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && norm > max_norm) {
    const float s = static_cast<float>(max_norm / (norm + 1e-12));
    for (const std::span<float> g : grads)
      for (float& x : g) x *= s;
  }
  return norm;
}

double lr_at(int64_t step, int64_t total, int64_t warmup, double peak, double min_ratio) {
  if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const int64_t decay_steps = total - warmup;
  if (decay_steps <= 1) return peak;
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(decay_steps - 1);
  const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * std::min(1.0, progress)));
  return peak * (min_ratio + (1.0 - min_ratio) * cosine);
}

}  // namespace slm::train
