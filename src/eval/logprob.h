// Log-probabilities of one row of logits, accumulated in double: the one
// numeric rule every eval metric uses (perplexity, logits files, choices).
// Shapes: a row is [n_vocab] float logits.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace slm::eval {

// log sum_i exp(row[i]) = max + log(sum exp(row[i] - max)), in double, so
// log p(i) = row[i] - log_normalizer(row).
double log_normalizer(std::span<const float> row);

// Index of the largest entry (the lowest index among equal ones).
int32_t argmax(std::span<const float> row);

// The k largest entries' indices in descending order of value (ties: lower
// index first); k is clamped to row.size(). out is reused between calls.
void top_k(std::span<const float> row, int64_t k, std::vector<int32_t>& out);

// Running sums of negative log-likelihoods, for perplexity and its standard
// error by the delta method (as llama-perplexity prints it):
// ppl = exp(mean), se(ppl) = ppl * sqrt(var / (n - 1)), var = E[v^2] - E[v]^2.
struct NllStats {
  double sum = 0, sum2 = 0;
  int64_t n = 0;
  void add(double nll) {
    sum += nll;
    sum2 += nll * nll;
    ++n;
  }
  double mean() const { return n > 0 ? sum / static_cast<double>(n) : 0.0; }
  double ppl() const;
  double ppl_stderr() const;  // 0 when n < 2
};

}  // namespace slm::eval
