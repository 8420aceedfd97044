#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "base/error.h"
#include "ops/ops.h"

namespace slm::engine {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void require(bool ok, const char* field, const std::string& rule, double got) {
  if (!ok) throw Error(std::string("sampler: ") + field + " " + rule + " (got " + num(got) + ")");
}

// Strict total order: higher logit first, then lower id. Every sort and
// partition uses it so the kept set and its order never depend on the
// standard library's algorithm.
bool better(float la, int32_t ia, float lb, int32_t ib) {
  return la > lb || (la == lb && ia < ib);
}

float sanitize(float l) {
  return sanitize_logit(l);
}

uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

}  // namespace

double deterministic_exp(double x) {
  if (!(x >= -700.0)) return 0.0;  // keeps 2^k below a normal number (and maps NaN to 0)
  if (x > 700.0) return std::numeric_limits<double>::infinity();
  // x = k ln2 + r with |r| <= ln2/2; ln2 split so k * kLn2Hi is exact.
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kInvLn2 = 1.44269504088896338700e+00;
  // Adding and removing 1.5 * 2^52 rounds to the nearest integer in two
  // exact IEEE operations (no libm call, same on every target).
  constexpr double kRound = 0x1.8p52;
  const double k = (x * kInvLn2 + kRound) - kRound;
  const double r = (x - k * kLn2Hi) - k * kLn2Lo;
  // Taylor series to r^13: the truncation error is below 5e-18 for |r| <= 0.35.
  double p = 1.0 / 6227020800.0;  // 1/13!
  const double inv_fact[] = {1.0 / 479001600.0,
                             1.0 / 39916800.0,
                             1.0 / 3628800.0,
                             1.0 / 362880.0,
                             1.0 / 40320.0,
                             1.0 / 5040.0,
                             1.0 / 720.0,
                             1.0 / 120.0,
                             1.0 / 24.0,
                             1.0 / 6.0,
                             1.0 / 2.0,
                             1.0,
                             1.0};
  for (double c : inv_fact) p = p * r + c;
  // Multiplying by 2^k, built from its exponent bits, is exact (|k| <= 1010).
  const uint64_t bits = static_cast<uint64_t>(static_cast<int64_t>(k) + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

void validate(const SamplerParams& p, int64_t n_vocab) {
  if (n_vocab <= 0 || n_vocab > std::numeric_limits<int32_t>::max())
    throw Error("sampler: vocabulary size " + std::to_string(n_vocab) + " is out of range");
  require(std::isfinite(p.temperature), "temperature", "must be a finite number", p.temperature);
  require(p.top_p >= 0.0f && p.top_p <= 1.0f, "top_p", "must be in [0, 1]", p.top_p);
  require(p.min_p >= 0.0f && p.min_p <= 1.0f, "min_p", "must be in [0, 1]", p.min_p);
  require(std::isfinite(p.repeat_penalty) && p.repeat_penalty > 0.0f, "repeat_penalty",
          "must be a finite number > 0", p.repeat_penalty);
  require(p.repeat_last_n >= -1, "repeat_last_n", "must be >= -1 (-1: the whole history)",
          p.repeat_last_n);
  require(std::isfinite(p.presence_penalty), "presence_penalty", "must be a finite number",
          p.presence_penalty);
  require(std::isfinite(p.frequency_penalty), "frequency_penalty", "must be a finite number",
          p.frequency_penalty);
  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0 || id >= n_vocab)
      throw Error("sampler: logit_bias token id " + std::to_string(id) + " is outside [0, " +
                  std::to_string(n_vocab) + ")");
    // -inf bans a token; +inf or NaN would make every probability undefined.
    if (std::isnan(bias) || bias == std::numeric_limits<float>::infinity())
      throw Error("sampler: logit_bias for token " + std::to_string(id) +
                  " must be a number or -inf (got " + num(bias) + ")");
  }
}

Sampler::Sampler(const SamplerParams& params, int64_t n_vocab)
    : params_(params), n_vocab_(n_vocab) {
  validate(params_, n_vocab_);
  greedy_ = params_.temperature <= 0.0f;
  // The vocabulary-sized buffers (5-7 MB for a 150k vocabulary) are sized
  // where they are first needed: a greedy request without processors needs
  // none, and building them here put 16 x 6 MB of page faults on the
  // request threads of a 16-client burst, delaying its last arrivals by
  // about 0.1 s. A sampling request always needs row_ and cand_.
  cand_.resize(1);
  if (!greedy_) {
    row_.resize(static_cast<size_t>(n_vocab_));
    cand_.resize(static_cast<size_t>(n_vocab_));
  }
  reseed(params_.seed);
  const SamplerParams& p = params_;
  if (!p.logit_bias.empty()) chain_.push_back(std::make_unique<LogitBias>(p.logit_bias));
  const bool penalised =
      p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (p.repeat_last_n != 0 && penalised)
    chain_.push_back(std::make_unique<Penalties>(
        p.repeat_penalty, p.repeat_last_n, p.presence_penalty, p.frequency_penalty, n_vocab_));
}

void Sampler::reseed(uint64_t seed) {
  // splitmix64 expands the seed into the four xoshiro256** state words.
  uint64_t x = seed;
  for (uint64_t& s : rng_) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s = z ^ (z >> 31);
  }
}

uint64_t Sampler::next_random() {
  const uint64_t result = rotl(rng_[1] * 5, 7) * 9;
  const uint64_t t = rng_[1] << 17;
  rng_[2] ^= rng_[0];
  rng_[3] ^= rng_[1];
  rng_[1] ^= rng_[2];
  rng_[0] ^= rng_[3];
  rng_[2] ^= t;
  rng_[3] = rotl(rng_[3], 45);
  return result;
}

double Sampler::uniform() {
  return static_cast<double>(next_random() >> 11) * 0x1.0p-53;
}

int32_t Sampler::greedy_pick(std::span<const float> row) {
  // The first id of the largest logit (ties keep the lower id; NaN never
  // wins), vectorised for the CPU at run time (this library is built for
  // baseline x86-64).
  const int64_t best = ops::argmax(row.data(), static_cast<int64_t>(row.size()));
  if (best < 0) throw Error("sampler: no token has a finite logit (all are -inf or NaN)");
  return static_cast<int32_t>(best);
}

bool Sampler::greedy_few(std::span<const float> logits, std::span<const int32_t> history) {
  few_.clear();
  for (const auto& p : chain_)
    if (!p->few_ids(history, few_)) return false;
  for (const int32_t id : few_)
    if (id < 0 || id >= n_vocab_) return false;  // apply() names the bad id
  // The row's first maximum, if no processor touches it, is also the first
  // maximum of the untouched ids; the pick is then it or a touched id.
  const int64_t best = ops::argmax(logits.data(), static_cast<int64_t>(logits.size()));
  for (const int32_t id : few_)
    if (id == best) return false;
  // The processors read and write only these ids of row_, so only they are copied.
  if (row_.size() != static_cast<size_t>(n_vocab_)) row_.resize(static_cast<size_t>(n_vocab_));
  for (const int32_t id : few_) row_[static_cast<size_t>(id)] = logits[static_cast<size_t>(id)];
  for (const auto& p : chain_) p->apply(row_, history);
  int64_t pick = best;
  float value = best >= 0 ? logits[static_cast<size_t>(best)] : 0.0f;
  for (const int32_t id : few_) {
    const float v = row_[static_cast<size_t>(id)];
    // greedy_pick's rule: the largest (NaN and -inf never win), then the lowest id.
    if (!(v > -std::numeric_limits<float>::infinity())) continue;
    if (pick < 0 || v > value || (v == value && id < pick)) {
      pick = id;
      value = v;
    }
  }
  if (pick < 0) throw Error("sampler: no token has a finite logit (all are -inf or NaN)");
  cand_[0] = {static_cast<int32_t>(pick), 0.0f, 1.0};
  n_kept_ = 1;
  weight_sum_ = 1.0;
  return true;
}

void Sampler::select_top_k(size_t k) {
  // One pass over the row with a k-entry heap whose root is the worst kept
  // candidate: almost every token costs one well-predicted comparison.
  auto cmp = [](const Candidate& a, const Candidate& b) {
    return better(a.logit, a.id, b.logit, b.id);
  };
  const auto first = cand_.begin();
  const auto last = first + static_cast<ptrdiff_t>(k);
  for (size_t i = 0; i < k; ++i) cand_[i] = {static_cast<int32_t>(i), sanitize(row_[i]), 0.0};
  std::make_heap(first, last, cmp);
  for (size_t i = k; i < row_.size(); ++i) {
    // Ids only grow, so a tie with the root loses; NaN compares false.
    if (!(row_[i] > cand_[0].logit)) continue;
    std::pop_heap(first, last, cmp);
    cand_[k - 1] = {static_cast<int32_t>(i), sanitize(row_[i]), 0.0};
    std::push_heap(first, last, cmp);
  }
  std::sort(first, last, cmp);
  n_sorted_ = k;
}

void Sampler::ensure_sorted(size_t m, size_t n) {
  if (m <= n_sorted_) return;
  // Grow the sorted prefix geometrically: top-p usually stops within a few
  // dozen tokens, so the full vocabulary is almost never sorted.
  const size_t target = std::min(n, std::max({m, n_sorted_ * 2, size_t{64}}));
  auto cmp = [](const Candidate& a, const Candidate& b) {
    return better(a.logit, a.id, b.logit, b.id);
  };
  const auto first = cand_.begin() + static_cast<ptrdiff_t>(n_sorted_);
  const auto mid = cand_.begin() + static_cast<ptrdiff_t>(target);
  // Selection in linear time, then a sort of the few selected. Under a strict
  // total order both results are unique, whatever the library's algorithm.
  if (target < n) std::nth_element(first, mid, cand_.begin() + static_cast<ptrdiff_t>(n), cmp);
  std::sort(first, mid, cmp);
  n_sorted_ = target;
}

void Sampler::prepare(std::span<const float> logits, std::span<const int32_t> history) {
  if (static_cast<int64_t>(logits.size()) != n_vocab_)
    throw Error("sampler: logits row has " + std::to_string(logits.size()) + " entries, expected " +
                std::to_string(n_vocab_));
  const auto n = static_cast<size_t>(n_vocab_);
  n_sorted_ = 0;
  if (greedy_ && chain_.empty()) {  // nothing changes the row: pick from it in place
    cand_[0] = {greedy_pick(logits), 0.0f, 1.0};
    n_kept_ = 1;
    weight_sum_ = 1.0;
    return;
  }
  if (greedy_ && greedy_few(logits, history)) return;
  if (row_.size() != n) row_.resize(n);  // greedy with processors: on the first call
  std::copy(logits.begin(), logits.end(), row_.begin());
  for (const auto& p : chain_) p->apply(row_, history);

  if (greedy_) {
    cand_[0] = {greedy_pick(row_), 0.0f, 1.0};
    n_kept_ = 1;
    weight_sum_ = 1.0;
    return;
  }

  size_t size = n;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    size = static_cast<size_t>(params_.top_k);
    select_top_k(size);
  } else {
    for (size_t i = 0; i < n; ++i) cand_[i] = {static_cast<int32_t>(i), sanitize(row_[i]), 0.0};
  }
  float l_max = kNegInf;
  if (n_sorted_ > 0) {
    l_max = cand_[0].logit;
  } else {
    for (size_t i = 0; i < size; ++i) l_max = std::max(l_max, cand_[i].logit);
  }
  if (l_max == kNegInf) throw Error("sampler: no token has a finite logit (all are -inf or NaN)");

  // top-p then min-p, on temperature-1 weights summed in a canonical order
  // (id order, or sorted order after top-k) so the total rounds identically
  // everywhere. Both filters keep a prefix of the sorted candidates, and min-p
  // compares p / p_max = weight (the most likely token has weight 1), which
  // renormalisation after top-p does not change; so one walk applies both.
  const bool use_top_p = params_.top_p < 1.0f;
  const bool use_min_p = params_.min_p > 0.0f;
  const bool filtered = use_top_p || use_min_p;
  size_t kept = size;
  if (filtered) {
    double sum = 0;
    for (size_t i = 0; i < size; ++i) {
      Candidate& c = cand_[i];
      c.weight = deterministic_exp(static_cast<double>(c.logit) - l_max);  // -inf -> 0
      sum += c.weight;
    }
    const double target = static_cast<double>(params_.top_p) * sum;
    double cum = 0;
    kept = 0;
    for (size_t i = 0; i < size; ++i) {
      ensure_sorted(i + 1, size);
      const double w = cand_[i].weight;
      if (i > 0 && (w == 0.0 || (use_min_p && w < static_cast<double>(params_.min_p)))) break;
      kept = i + 1;
      cum += w;
      if (use_top_p && cum >= target) break;
    }
  }

  // Temperature reshapes only what survived; the most likely token is among
  // the kept ones, so l_max still normalises.
  weight_sum_ = 0;
  const double temp = params_.temperature;
  const bool reweigh = !filtered || temp != 1.0;
  for (size_t i = 0; i < kept; ++i) {
    Candidate& c = cand_[i];
    if (reweigh) c.weight = deterministic_exp((static_cast<double>(c.logit) - l_max) / temp);
    weight_sum_ += c.weight;
  }
  n_kept_ = kept;
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  prepare(logits, history);
  return draw();
}

int32_t Sampler::draw() {
  if (n_kept_ == 1) return cand_[0].id;
  const double target = uniform() * weight_sum_;
  double acc = 0;
  size_t last_positive = 0;
  for (size_t i = 0; i < n_kept_; ++i) {
    const double w = cand_[i].weight;
    if (w == 0.0) continue;
    acc += w;
    last_positive = i;
    if (target < acc) return cand_[i].id;
  }
  return cand_[last_positive].id;  // target == sum after rounding
}

int32_t Sampler::sample_draft(std::span<const float> logits, std::span<const int32_t> history,
                              int32_t draft) {
  const TokenProb point{draft, 1.0};
  return sample_draft(logits, history, draft, std::span<const TokenProb>(&point, 1));
}

int32_t Sampler::sample_draft(std::span<const float> logits, std::span<const int32_t> history,
                              int32_t draft, std::span<const TokenProb> q) {
  prepare(logits, history);
  if (n_kept_ == 1) return cand_[0].id;
  // Everything below is in the target's weight units: p(i) = w_i / weight_sum_,
  // so q(i) scales to q(i) * weight_sum_.
  if (q_.empty()) q_.assign(static_cast<size_t>(n_vocab_), 0.0);
  for (const TokenProb& t : q)
    if (t.id >= 0 && t.id < n_vocab_) q_[static_cast<size_t>(t.id)] += t.p;
  size_t at = n_kept_;
  for (size_t i = 0; i < n_kept_; ++i)
    if (cand_[i].id == draft) {
      at = i;
      break;
    }
  const double w_draft = at < n_kept_ ? cand_[at].weight : 0.0;
  const double q_draft = draft >= 0 && draft < n_vocab_ ? q_[static_cast<size_t>(draft)] : 0.0;
  // Accept with min(1, p / q): u < p / q (a q of 0 cannot have been drawn; treat as a point mass).
  const double q_scaled = (q_draft > 0 ? q_draft : 1.0) * weight_sum_;
  int32_t result = -1;
  if (w_draft > 0 && uniform() * q_scaled < w_draft) result = draft;
  if (result < 0) {
    // Rejected: draw from the residual max(0, p - q) over the kept tokens
    // (p is zero elsewhere, so the residual is too).
    double rest = 0;
    for (size_t i = 0; i < n_kept_; ++i)
      rest += std::max(0.0, cand_[i].weight - q_[static_cast<size_t>(cand_[i].id)] * weight_sum_);
    if (!(rest > 0)) {
      result = draft;  // p == q up to rounding: the draft was taken with probability 1
    } else {
      const double target = uniform() * rest;
      double acc = 0;
      size_t last_positive = n_kept_;
      for (size_t i = 0; i < n_kept_ && result < 0; ++i) {
        const double r =
            std::max(0.0, cand_[i].weight - q_[static_cast<size_t>(cand_[i].id)] * weight_sum_);
        if (r == 0.0) continue;
        acc += r;
        last_positive = i;
        if (target < acc) result = cand_[i].id;
      }
      if (result < 0) result = last_positive < n_kept_ ? cand_[last_positive].id : draft;
    }
  }
  for (const TokenProb& t : q)  // leave q_ zero for the next call
    if (t.id >= 0 && t.id < n_vocab_) q_[static_cast<size_t>(t.id)] = 0.0;
  return result;
}

int32_t Sampler::sample_with_distribution(std::span<const float> logits,
                                          std::span<const int32_t> history,
                                          std::vector<TokenProb>& dist) {
  prepare(logits, history);
  dist.clear();
  for (size_t i = 0; i < n_kept_; ++i) dist.push_back({cand_[i].id, cand_[i].weight / weight_sum_});
  return draw();
}

std::span<const TokenProb> Sampler::distribution(std::span<const float> logits,
                                                 std::span<const int32_t> history) {
  prepare(logits, history);
  if (dist_.size() < n_kept_) dist_.resize(n_kept_);
  for (size_t i = 0; i < n_kept_; ++i) dist_[i] = {cand_[i].id, cand_[i].weight / weight_sum_};
  return {dist_.data(), n_kept_};
}

}  // namespace slm::engine
