#include "engine/logits_processor.h"

#include <cfloat>
#include <limits>
#include <string>

#include "base/error.h"

namespace slm::engine {

float sanitize_logit(float l) {
  if (l != l) return -std::numeric_limits<float>::infinity();
  return l > FLT_MAX ? FLT_MAX : l;
}

void LogitBias::apply(std::span<float> logits, std::span<const int32_t>) {
  for (const auto& [id, bias] : bias_) {
    float& l = logits[static_cast<size_t>(id)];
    l = sanitize_logit(l + bias);
  }
}

bool LogitBias::few_ids(std::span<const int32_t>, std::vector<int32_t>& ids) const {
  for (const auto& entry : bias_) ids.push_back(entry.first);
  return true;
}

Penalties::Penalties(float repeat, int32_t window, float presence, float frequency, int64_t n_vocab)
    : repeat_(repeat),
      presence_(presence),
      frequency_(frequency),
      window_(window),
      counts_(static_cast<size_t>(n_vocab), 0) {}

namespace {

// The tokens apply() penalises: the last window of the history (all of it when negative).
std::span<const int32_t> penalty_window(std::span<const int32_t> history, int32_t window) {
  if (window > 0 && history.size() > static_cast<size_t>(window))
    return history.last(static_cast<size_t>(window));
  return history;
}

}  // namespace

bool Penalties::few_ids(std::span<const int32_t> history, std::vector<int32_t>& ids) const {
  const std::span<const int32_t> window = penalty_window(history, window_);
  ids.insert(ids.end(), window.begin(), window.end());
  return true;
}

void Penalties::apply(std::span<float> logits, std::span<const int32_t> history) {
  const std::span<const int32_t> window = penalty_window(history, window_);
  const auto n_vocab = static_cast<int64_t>(counts_.size());
  // Check every id before counting so an error leaves counts_ all-zero.
  for (const int32_t t : window)
    if (t < 0 || t >= n_vocab)
      throw Error("sampler: history token id " + std::to_string(t) + " is outside [0, " +
                  std::to_string(n_vocab) + ")");
  for (const int32_t t : window) ++counts_[static_cast<size_t>(t)];
  // Each distinct token is penalised once, at its first occurrence;
  // resetting its count marks it done.
  for (const int32_t t : window) {
    int32_t& count = counts_[static_cast<size_t>(t)];
    if (count == 0) continue;
    float& l = logits[static_cast<size_t>(t)];
    if (repeat_ != 1.0f) l = l <= 0.0f ? l * repeat_ : l / repeat_;
    l -= static_cast<float>(count) * frequency_ + presence_;
    l = sanitize_logit(l);
    count = 0;
  }
}

}  // namespace slm::engine
