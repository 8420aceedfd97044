// Double-precision log-softmax pieces and perplexity statistics (logprob.h).
#include "eval/logprob.h"

#include <algorithm>
#include <cmath>

namespace slm::eval {

double log_normalizer(std::span<const float> row) {
  float mx = -INFINITY;
  for (float v : row) mx = std::max(mx, v);
  double sum = 0;
  for (float v : row) sum += std::exp(static_cast<double>(v) - static_cast<double>(mx));
  return static_cast<double>(mx) + std::log(sum);
}

int32_t argmax(std::span<const float> row) {
  int32_t best = 0;
  for (size_t i = 1; i < row.size(); ++i)
    if (row[i] > row[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  return best;
}

void top_k(std::span<const float> row, int64_t k, std::vector<int32_t>& out) {
  const int64_t n = static_cast<int64_t>(row.size());
  k = std::clamp<int64_t>(k, 0, n);
  out.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  const auto before = [&](int32_t a, int32_t b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  };
  std::partial_sort(out.begin(), out.begin() + k, out.end(), before);
  out.resize(static_cast<size_t>(k));
}

double NllStats::ppl() const {
  return std::exp(mean());
}

double NllStats::ppl_stderr() const {
  if (n < 2) return 0.0;
  const double m = mean();
  const double var = sum2 / static_cast<double>(n) - m * m;
  return var > 0 ? ppl() * std::sqrt(var / static_cast<double>(n - 1)) : 0.0;
}

}  // namespace slm::eval
