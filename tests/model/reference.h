// Reading llama.cpp reference logits (../shared/fixtures/reference) and
// comparing rows the way fixtures/README.md defines "the same".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace slm::test {

struct Reference {
  std::string model;   // e.g. "small-llama-Q4_0"
  std::string prompt;  // e.g. "en"
  std::vector<int32_t> prompt_tokens, greedy_tokens;
  int64_t n_vocab = 0;
  std::vector<float> logits;  // [rows][n_vocab]
};

// Every *.json under reference/ and reference-families/ as "DIR/NAME.json",
// sorted.
std::vector<std::string> reference_names(const std::string& fixtures);
// path: one of reference_names().
Reference load_reference(const std::string& fixtures, const std::string& path);

// KL(p_ref || p_got) of the softmax distributions of two logit rows.
double kl_divergence(const float* ref, const float* got, int64_t n);

}  // namespace slm::test
