// dpo.h: the DPO objective on top of Trainer::run.
#include "train/dpo.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "train/lora_params.h"

namespace slm::train {

void DpoStats::add(const DpoStats& o) {
  loss += o.loss;
  reward_margin += o.reward_margin;
  correct += o.correct;
  kl += o.kl;
  chosen_tokens += o.chosen_tokens;
  pairs += o.pairs;
}

double neg_log_sigmoid(double x) {
  return x >= 0 ? std::log1p(std::exp(-x)) : -x + std::log1p(std::exp(x));
}

Dpo::Dpo(Trainer& trainer, std::vector<std::span<float>> grads, double beta)
    : tr_(trainer), grads_(std::move(grads)), beta_(beta) {
  if (!(beta > 0) || !std::isfinite(beta)) throw Error("DPO beta must be a positive number");
}

Dpo::Dpo(Trainer& trainer, LoraParams* lora, double beta)
    : Dpo(trainer, lora != nullptr ? lora->grads() : std::vector<std::span<float>>{}, beta) {}

std::vector<RefLogp> Dpo::reference_logps(std::span<const PreferencePair> pairs) {
  std::vector<RefLogp> out;
  out.reserve(pairs.size());
  tr_.set_lora_enabled(false);
  for (const PreferencePair& p : pairs)
    out.push_back({-tr_.run(p.chosen, false).loss, -tr_.run(p.rejected, false).loss});
  tr_.set_lora_enabled(true);
  return out;
}

DpoStats Dpo::pair(const PreferencePair& p, const RefLogp& ref, bool backward, float grad_scale) {
  const bool grads = backward && !grads_.empty();
  tr_.set_lora_enabled(true);
  // With gradients: G (earlier pairs) is set aside, then the gradients
  // become d CE(rejected) - d CE(chosen) = d logp(chosen) - d logp(rejected)
  // (CE = -logp, the trainer's summed loss), and G + w * that is put back.
  const std::span<const std::span<float>> g =
      grads ? std::span<const std::span<float>>(grads_) : std::span<const std::span<float>>{};
  if (grads) {
    saved_.clear();
    for (const std::span<float> t : g) {
      saved_.insert(saved_.end(), t.begin(), t.end());
      std::fill(t.begin(), t.end(), 0.0f);
    }
  }
  const LossSum c = tr_.run(p.chosen, grads);
  if (grads)
    for (const std::span<float> t : g)
      for (float& x : t) x = -x;
  const LossSum r = tr_.run(p.rejected, grads);
  const double pol_c = -c.loss, pol_r = -r.loss;
  const double margin = (pol_c - ref.chosen) - (pol_r - ref.rejected);
  const double z = beta_ * margin;
  DpoStats s;
  s.loss = neg_log_sigmoid(z);
  s.reward_margin = z;
  s.correct = margin > 0 ? 1.0 : margin == 0 ? 0.5 : 0.0;
  s.kl = pol_c - ref.chosen;
  s.chosen_tokens = c.n_targets;
  s.pairs = 1;
  if (grads) {
    // d loss / d margin = -beta * sigmoid(-z); margin's gradient is in g.
    const float w = static_cast<float>(-beta_ / (1.0 + std::exp(z))) * grad_scale;
    size_t k = 0;
    for (const std::span<float> t : g)
      for (float& x : t) x = saved_[k++] + w * x;
  }
  return s;
}

DpoStats Dpo::evaluate(std::span<const PreferencePair> pairs, std::span<const RefLogp> refs) {
  if (refs.size() != pairs.size())
    throw Error("internal: DPO reference sums do not match the pairs");
  DpoStats s;
  for (size_t i = 0; i < pairs.size(); ++i) s.add(pair(pairs[i], refs[i], false));
  return s;
}

}  // namespace slm::train
