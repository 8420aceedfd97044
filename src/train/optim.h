// Optimisation for finetuning: AdamW (decoupled weight decay, bias-corrected
// moments), global-norm gradient clipping, and the learning-rate schedule
// (linear warm-up, then cosine decay to min_ratio * peak).
// Ownership: AdamW owns its moment buffers, shaped like the parameters it
// first sees. Thread-safety: one caller.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace slm::train {

struct AdamWOptions {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
};

class AdamW {
 public:
  explicit AdamW(const AdamWOptions& options) : o_(options) {}
  // One update of every params[i] from grads[i] (same shapes on every call).
  void step(std::span<const std::span<float>> params, std::span<const std::span<float>> grads, float lr);
  int64_t steps() const { return t_; }

  // Moments, for checkpoints: m then v of each parameter tensor.
  std::vector<std::vector<float>>& moments() { return mv_; }
  void set_steps(int64_t t) { t_ = t; }

 private:
  AdamWOptions o_;
  int64_t t_ = 0;
  std::vector<std::vector<float>> mv_;  // [2 * i] m, [2 * i + 1] v
};

// Scales the gradients so their global L2 norm is at most max_norm (0: no
// clipping); returns the norm before clipping.
double clip_grad_norm(std::span<const std::span<float>> grads, double max_norm);

// Learning rate at step (0-based) of total: linear warm-up over warmup steps
// to peak, then cosine decay to min_ratio * peak at the last step.
double lr_at(int64_t step, int64_t total, int64_t warmup, double peak, double min_ratio = 0.0);

}  // namespace slm::train
