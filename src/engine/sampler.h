// Next-token sampling: a chain of logits processors (logit bias, then the
// repetition / presence / frequency penalties, then any processor a front end
// appends), then top-k, top-p, min-p, temperature and a seeded draw, in the
// order of llama.cpp's default chain (the filters see temperature-1 logits;
// the temperature only shapes the final draw).
//
// Determinism: for a given seed, logits row and history the chosen token is
// the same on every run, thread count and platform. The sampler uses its own
// PRNG (xoshiro256**), its own exp() built from + - * / only, sums in a
// canonical order and breaks ties by the lower token id; no std::*_distribution.
//
// Ownership / thread-safety: a Sampler owns its buffers (sized for n_vocab at
// construction, so sampling allocates nothing), its processors and its PRNG
// state; it belongs to one sequence and is driven by one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "engine/logits_processor.h"

namespace slm::engine {

struct SamplerParams {
  // <= 0: greedy (argmax after bias and penalties, ties to the lowest id).
  float temperature = 0.8f;
  int32_t top_k = 40;              // keep the k most likely; <= 0: off
  float top_p = 0.95f;             // nucleus mass in [0, 1]; 1: off
  float min_p = 0.05f;             // keep p >= min_p * p_max, in [0, 1]; 0: off
  float repeat_penalty = 1.0f;     // > 0; 1: off
  int32_t repeat_last_n = 64;      // window of the history the penalties see; 0: off, -1: all of it
  float presence_penalty = 0.0f;   // subtracted once from each token present in the window
  float frequency_penalty = 0.0f;  // subtracted per occurrence in the window
  std::map<int32_t, float> logit_bias;  // token id -> added to its logit; -inf bans the token
  uint64_t seed = 0;
};

// Throws slm::Error naming the field when a parameter is out of range or not a
// number, or a logit_bias id is outside [0, n_vocab).
void validate(const SamplerParams& params, int64_t n_vocab);

struct TokenProb {
  int32_t id;
  double p;
};

class Sampler {
 public:
  // Validates params (see validate) and allocates the per-vocabulary buffers.
  Sampler(const SamplerParams& params, int64_t n_vocab);

  const SamplerParams& params() const { return params_; }
  int64_t n_vocab() const { return n_vocab_; }
  // Restarts the random sequence as if freshly constructed with this seed.
  void reseed(uint64_t seed);
  // Appends a processor to the chain, after the bias and the penalties and
  // before the filters (a grammar mask goes here).
  void add_processor(std::unique_ptr<LogitsProcessor> p) { chain_.push_back(std::move(p)); }
  // Runs every processor's prepare() for the next sample() with this history
  // (see LogitsProcessor::prepare); has_prepare() says whether any does work.
  void prepare(std::span<const int32_t> history) {
    for (auto& p : chain_) p->prepare(history);
  }
  bool has_prepare() const {
    for (const auto& p : chain_)
      if (p->has_prepare()) return true;
    return false;
  }

  // Picks the next token from one logits row [n_vocab]; history holds the
  // tokens so far (prompt and generated, oldest first) for the penalties.
  // Throws slm::Error when logits has the wrong length, a history id is out of
  // range, or no token has a finite logit.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

  // sample() when a draft proposed `draft` for this position (speculative
  // decoding with a deterministic draft): returns draft with probability
  // p(draft), else a draw from p with draft removed and renormalised, so the
  // result is distributed exactly as sample()'s. Greedy returns the argmax.
  int32_t sample_draft(std::span<const float> logits, std::span<const int32_t> history,
                       int32_t draft);
  // The same for a draft drawn from a distribution q (a draft model's; ids in
  // any order, ids >= n_vocab ignored): speculative rejection sampling keeps
  // draft with probability min(1, p(draft) / q(draft)), else draws from the
  // normalised max(0, p - q), so the result is distributed as sample()'s.
  // The point-mass q = {draft: 1} is the deterministic case above.
  int32_t sample_draft(std::span<const float> logits, std::span<const int32_t> history,
                       int32_t draft, std::span<const TokenProb> q);
  // sample() that also writes the distribution it drew from (as
  // distribution() gives it) to dist: a draft model's proposal q.
  int32_t sample_with_distribution(std::span<const float> logits, std::span<const int32_t> history,
                                   std::vector<TokenProb>& dist);

  // The distribution sample() would draw from, after every filter and the
  // temperature: kept tokens, most likely first when a filter sorted them
  // (top-k / top-p / min-p), otherwise in id order; probabilities sum to 1.
  // Greedy gives one entry with p = 1. Does not advance the PRNG. The span
  // points into the sampler and is valid until its next call.
  std::span<const TokenProb> distribution(std::span<const float> logits,
                                          std::span<const int32_t> history);

 private:
  struct Candidate {
    int32_t id;
    float logit;
    double weight;  // exp(logit - max) at temperature 1, later at the sampling temperature
  };

  // Runs the processor chain and the filters; leaves the kept candidates in
  // cand_[0, n_kept_) with weights at the sampling temperature summing to
  // weight_sum_. Returns the token directly when greedy (n_kept_ == 1).
  void prepare(std::span<const float> logits, std::span<const int32_t> history);
  static int32_t greedy_pick(std::span<const float> row);  // argmax, ties to the lower id
  // Puts the k best of row_ into cand_[0, k), sorted.
  void select_top_k(size_t k);
  // Makes cand_[0, m) the m best candidates of cand_[0, n) in sorted order.
  void ensure_sorted(size_t m, size_t n);
  uint64_t next_random();
  double uniform();  // [0, 1) with 53 random bits
  // A greedy pick where every processor touches only a few ids (few_ids):
  // the row's own argmax against those ids' processed values, without
  // copying the row. False when it cannot decide (then the full path runs).
  bool greedy_few(std::span<const float> logits, std::span<const int32_t> history);
  // One id from the prepared candidates, by weight (one uniform() draw
  // unless a single candidate is kept).
  int32_t draw();

  SamplerParams params_;
  int64_t n_vocab_ = 0;
  bool greedy_ = false;
  std::vector<std::unique_ptr<LogitsProcessor>> chain_;  // run in order on row_
  // Sized when first needed (the constructor says why).
  std::vector<float> row_;       // logits after the processors [n_vocab]
  std::vector<int32_t> few_;     // ids the processors touch (greedy_few)
  std::vector<Candidate> cand_;  // [n_vocab] when sampling, [1] when greedy
  std::vector<TokenProb> dist_;  // [n_kept] of the largest distribution() so far
  std::vector<double> q_;        // [n_vocab] a draft's q scattered by id, zero between calls
  size_t n_kept_ = 0;
  size_t n_sorted_ = 0;
  double weight_sum_ = 0;
  uint64_t rng_[4] = {};
};

// exp(x) from basic IEEE operations only, so every platform rounds the same
// way (std::exp differs in the last bit between C libraries). Relative error
// below 1e-15; returns 0 for x < -700. Exposed for tests.
double deterministic_exp(double x);

}  // namespace slm::engine
