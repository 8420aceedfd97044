// Direct preference optimisation (DPO, Rafailov et al. 2023) with the sigmoid
// loss over a LoRA policy whose reference is the same base with the adapter
// off (no second copy of the model), or over full training's weights whose
// reference is the base before the first step:
//   margin = (logp(chosen) - ref(chosen)) - (logp(rejected) - ref(rejected))
//   loss   = -log sigmoid(beta * margin)
// where logp sums the log-probabilities of a side's target tokens (the
// completion; the prompt is masked). The reference sums are computed once per
// pair before training (reference_logps) and passed back in: for full
// training they must be computed while the trained weights still equal the
// base (before any step, and before a checkpoint is resumed into them).
//
// Gradient: d loss / d logp(chosen) = -beta * sigmoid(-beta * margin), and the
// opposite for rejected. Each side's forward and backward runs once with unit
// weight (Trainer::run); the pair's gradient is the weighted difference of
// the two, so no side needs a second forward once the weight is known.
//
// Ownership: refers to the trainer and the trained parameters' gradients
// (they must outlive it) and owns one gradient-sized scratch (for full
// training, a copy of every weight's gradient). Thread-safety: one caller.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "train/trainer.h"

namespace slm::train {

class LoraParams;

// One preference: the prompt with the chosen and with the rejected
// completion; each side's targets are its completion tokens.
struct PreferencePair {
  Example chosen, rejected;
};

// Summed target log-probabilities of both sides under the reference model.
struct RefLogp {
  double chosen = 0, rejected = 0;
};

// Sums over pairs; the means are what a progress line reports.
struct DpoStats {
  double loss = 0;            // sum of -log sigmoid(beta * margin)
  double reward_margin = 0;   // sum of beta * margin
  double correct = 0;         // pairs with margin > 0; an exact tie (a zero adapter) counts half
  double kl = 0;              // sum over chosen sides of logp - ref
  int64_t chosen_tokens = 0;  // target tokens of the chosen sides
  int64_t pairs = 0;

  void add(const DpoStats& o);
  double mean_loss() const { return pairs > 0 ? loss / static_cast<double>(pairs) : 0.0; }
  double mean_margin() const {
    return pairs > 0 ? reward_margin / static_cast<double>(pairs) : 0.0;
  }
  double accuracy() const { return pairs > 0 ? correct / static_cast<double>(pairs) : 0.0; }
  // KL-to-base estimate: mean logp - ref per chosen target token (nats).
  double kl_per_token() const {
    return chosen_tokens > 0 ? kl / static_cast<double>(chosen_tokens) : 0.0;
  }
};

// -log sigmoid(x), stable for large |x|.
double neg_log_sigmoid(double x);

class Dpo {
 public:
  // grads: the trained parameters' gradients (LoraParams::grads or
  // FullParams::grads; empty for evaluation only). beta > 0.
  Dpo(Trainer& trainer, std::vector<std::span<float>> grads, double beta);
  // A LoRA policy (lora may be null for evaluation only).
  Dpo(Trainer& trainer, LoraParams* lora, double beta);

  // The reference sums of every pair: the trainer's forward with the adapter off.
  std::vector<RefLogp> reference_logps(std::span<const PreferencePair> pairs);

  // Loss and statistics of one pair under the policy (adapter on). With
  // backward, grad_scale * d loss / d parameters accumulates into the
  // gradients (what was there is kept).
  DpoStats pair(const PreferencePair& p, const RefLogp& ref, bool backward,
                float grad_scale = 1.0f);

  // Statistics of a set without gradients.
  DpoStats evaluate(std::span<const PreferencePair> pairs, std::span<const RefLogp> refs);

 private:
  Trainer& tr_;
  std::vector<std::span<float>> grads_;
  double beta_;
  std::vector<float> saved_;  // the gradients accumulated before the current pair
};

}  // namespace slm::train
