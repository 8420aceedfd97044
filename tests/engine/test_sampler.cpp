// Sampler stages against hand-computed distributions, greedy decoding, seed
// determinism (including a pinned sequence that must match on every
// platform) and the statistics of the draws.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <vector>

#include "base/error.h"
#include "engine/logits_processor.h"
#include "engine/sampler.h"

namespace slm::engine {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Parameters with every filter off and temperature 1: the distribution is
// plain softmax of the (biased, penalised) logits.
SamplerParams plain() {
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  return p;
}

std::vector<float> log_probs(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::map<int32_t, double> as_map(std::span<const TokenProb> d) {
  std::map<int32_t, double> m;
  for (const TokenProb& t : d) m[t.id] = t.p;
  return m;
}

// softmax of logits in double, for expected values.
std::vector<double> softmax(const std::vector<double>& l) {
  const double mx = *std::max_element(l.begin(), l.end());
  std::vector<double> e;
  for (double x : l) e.push_back(std::exp(x - mx));
  const double s = std::accumulate(e.begin(), e.end(), 0.0);
  for (double& x : e) x /= s;
  return e;
}

void expect_dist(std::span<const TokenProb> got, const std::map<int32_t, double>& want) {
  ASSERT_EQ(got.size(), want.size());
  const auto m = as_map(got);
  for (const auto& [id, p] : want) {
    ASSERT_TRUE(m.count(id)) << "token " << id << " missing";
    EXPECT_NEAR(m.at(id), p, 1e-6) << "token " << id;
  }
}

TEST(Sampler, DeterministicExpMatchesStdExp) {
  for (double x = -699.0; x <= 0.0; x += 0.0137) {
    const double want = std::exp(x);
    EXPECT_NEAR(deterministic_exp(x), want, want * 2e-15) << x;
  }
  EXPECT_EQ(deterministic_exp(0.0), 1.0);
  EXPECT_EQ(deterministic_exp(-1000.0), 0.0);
  EXPECT_NEAR(deterministic_exp(3.5), std::exp(3.5), std::exp(3.5) * 2e-15);
}

TEST(Sampler, GreedyIsArgmaxWithTiesToLowestId) {
  SamplerParams p;
  p.temperature = 0.0f;
  Sampler s(p, 5);
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f};
  EXPECT_EQ(s.sample(logits, {}), 1);
  p.temperature = -1.0f;  // negative is greedy too
  Sampler neg(p, 5);
  EXPECT_EQ(neg.sample(logits, {}), 1);
  const auto d = neg.distribution(logits, {});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].id, 1);
  EXPECT_EQ(d[0].p, 1.0);
}

TEST(Sampler, LogitBiasComesFirst) {
  SamplerParams p;
  p.temperature = 0.0f;
  p.logit_bias = {{1, -kInf}, {3, -kInf}};
  Sampler ban(p, 5);
  EXPECT_EQ(ban.sample(std::vector<float>{1, 3, 2, 3, -1}, {}), 2);
  p.logit_bias = {{4, 4.5f}};
  Sampler boost(p, 5);
  EXPECT_EQ(boost.sample(std::vector<float>{1, 3, 2, 3, -1}, {}), 4);

  SamplerParams q = plain();
  q.logit_bias = {{0, 1.0f}};
  Sampler s(q, 3);
  const auto want = softmax({1.0, 0.0, 0.0});
  expect_dist(s.distribution(std::vector<float>{0, 0, 0}, {}), {{0, want[0]}, {1, want[1]}, {2, want[2]}});
}

TEST(Sampler, RepeatPenaltyDividesPositiveAndMultipliesNegative) {
  SamplerParams p = plain();
  p.repeat_penalty = 2.0f;
  Sampler s(p, 3);
  const std::vector<int32_t> history = {0, 1, 0};
  // 2 -> 1, -2 -> -4, 1 untouched; each token penalised once however often it occurs.
  const auto want = softmax({1.0, -4.0, 1.0});
  expect_dist(s.distribution(std::vector<float>{2, -2, 1}, history),
              {{0, want[0]}, {1, want[1]}, {2, want[2]}});
}

TEST(Sampler, PresenceAndFrequencyPenalties) {
  SamplerParams p = plain();
  p.presence_penalty = 1.0f;
  p.frequency_penalty = 0.5f;
  Sampler s(p, 3);
  const std::vector<int32_t> history = {0, 1, 0};
  // token 0: 0 - 2*0.5 - 1 = -2; token 1: 0 - 0.5 - 1 = -1.5; token 2 untouched.
  const auto want = softmax({-2.0, -1.5, 0.0});
  expect_dist(s.distribution(std::vector<float>{0, 0, 0}, history),
              {{0, want[0]}, {1, want[1]}, {2, want[2]}});
}

TEST(Sampler, PenaltyWindowIsTheLastNTokens) {
  SamplerParams p = plain();
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 2;
  Sampler s(p, 4);
  const std::vector<int32_t> history = {0, 1, 2};  // only 1 and 2 are in the window
  const auto want = softmax({2.0, 1.0, 1.0, 2.0});
  expect_dist(s.distribution(std::vector<float>{2, 2, 2, 2}, history),
              {{0, want[0]}, {1, want[1]}, {2, want[2]}, {3, want[3]}});
  p.repeat_last_n = 0;  // off
  Sampler off(p, 4);
  expect_dist(off.distribution(std::vector<float>{2, 2, 2, 2}, history),
              {{0, 0.25}, {1, 0.25}, {2, 0.25}, {3, 0.25}});
  p.repeat_last_n = -1;  // the whole history
  Sampler all(p, 4);
  const auto want_all = softmax({1.0, 1.0, 1.0, 2.0});
  expect_dist(all.distribution(std::vector<float>{2, 2, 2, 2}, history),
              {{0, want_all[0]}, {1, want_all[1]}, {2, want_all[2]}, {3, want_all[3]}});
}

TEST(Sampler, TopK) {
  SamplerParams p = plain();
  p.top_k = 2;
  Sampler s(p, 4);
  const auto d = s.distribution(log_probs({0.1, 0.4, 0.2, 0.3}), {});
  expect_dist(d, {{1, 0.4 / 0.7}, {3, 0.3 / 0.7}});
  EXPECT_EQ(d[0].id, 1);  // most likely first
  // Ties at the cut keep the lower id.
  Sampler t(p, 4);
  expect_dist(t.distribution(std::vector<float>{0, 1, 1, 1}, {}), {{1, 0.5}, {2, 0.5}});
}

TEST(Sampler, TopP) {
  SamplerParams p = plain();
  p.top_p = 0.6f;
  Sampler s(p, 4);
  // sorted: 0.4 (id 1), 0.3 (id 3) -> 0.7 >= 0.6, stop.
  expect_dist(s.distribution(log_probs({0.1, 0.4, 0.2, 0.3}), {}), {{1, 0.4 / 0.7}, {3, 0.3 / 0.7}});
  p.top_p = 0.35f;
  Sampler one(p, 4);
  expect_dist(one.distribution(log_probs({0.1, 0.4, 0.2, 0.3}), {}), {{1, 1.0}});
  p.top_p = 0.0f;  // keeps at least one token
  Sampler zero(p, 4);
  expect_dist(zero.distribution(log_probs({0.1, 0.4, 0.2, 0.3}), {}), {{1, 1.0}});
  p.top_p = 0.75f;
  Sampler three(p, 4);
  expect_dist(three.distribution(log_probs({0.1, 0.4, 0.2, 0.3}), {}),
              {{1, 0.4 / 0.9}, {3, 0.3 / 0.9}, {2, 0.2 / 0.9}});
}

TEST(Sampler, MinP) {
  SamplerParams p = plain();
  p.min_p = 0.2f;  // keep p >= 0.2 * 0.5 = 0.1
  Sampler s(p, 4);
  expect_dist(s.distribution(log_probs({0.5, 0.3, 0.15, 0.05}), {}),
              {{0, 0.5 / 0.95}, {1, 0.3 / 0.95}, {2, 0.15 / 0.95}});
  p.min_p = 1.0f;  // only the most likely
  Sampler top(p, 4);
  expect_dist(top.distribution(log_probs({0.5, 0.3, 0.15, 0.05}), {}), {{0, 1.0}});
}

TEST(Sampler, TopKThenTopPThenMinP) {
  SamplerParams p = plain();
  p.top_k = 3;     // {0.4, 0.3, 0.2} -> renormalised {4/9, 3/9, 2/9}
  p.top_p = 0.75f; // 4/9 + 3/9 = 0.778 >= 0.75 -> {0, 1}
  p.min_p = 0.8f;  // 0.3/0.4 = 0.75 < 0.8 -> {0}
  Sampler s(p, 5);
  expect_dist(s.distribution(log_probs({0.4, 0.3, 0.2, 0.06, 0.04}), {}), {{0, 1.0}});
  p.min_p = 0.7f;
  Sampler keep2(p, 5);
  expect_dist(keep2.distribution(log_probs({0.4, 0.3, 0.2, 0.06, 0.04}), {}),
              {{0, 4.0 / 7.0}, {1, 3.0 / 7.0}});
}

TEST(Sampler, TemperatureAppliesAfterTheFilters) {
  SamplerParams p = plain();
  p.temperature = 2.0f;
  Sampler s(p, 2);
  const auto want = softmax({0.0, 0.5});
  expect_dist(s.distribution(std::vector<float>{0, 1}, {}), {{0, want[0]}, {1, want[1]}});

  // At temperature 1, top-p 0.55 keeps only the 0.6 token. Had temperature 2
  // flattened the distribution first, it would have kept two.
  p.top_p = 0.55f;
  Sampler order(p, 3);
  expect_dist(order.distribution(log_probs({0.6, 0.25, 0.15}), {}), {{0, 1.0}});

  // And the kept tokens are reshaped: p ~ q^(1/T).
  p.top_p = 0.7f;
  p.temperature = 0.5f;
  Sampler sharp(p, 3);
  expect_dist(sharp.distribution(log_probs({0.6, 0.25, 0.15}), {}),
              {{0, 0.36 / (0.36 + 0.0625)}, {1, 0.0625 / (0.36 + 0.0625)}});
}

TEST(Sampler, LargeVocabularyFiltersMatchAFullSort) {
  // Top-k selects with a heap and top-p sorts lazily; both must equal the
  // reference computed with a full sort, ties included.
  const int n = 50000;
  std::vector<float> logits(n);
  uint64_t x = 12345;
  for (float& l : logits) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    l = static_cast<float>((x >> 40) % 100000) / 4000.0f;  // 0..25, with ties
  }
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  struct Case {
    int32_t top_k;
    float top_p;
  };
  for (const Case c : {Case{0, 0.5f}, Case{0, 0.9f}, Case{0, 0.99f}, Case{1000, 0.9f}, Case{40, 1.0f},
                       Case{5000, 1.0f}, Case{1, 1.0f}}) {
    SamplerParams p = plain();
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    Sampler s(p, n);
    const auto d = s.distribution(logits, {});

    const size_t pool = c.top_k > 0 ? static_cast<size_t>(c.top_k) : order.size();
    std::vector<double> e(n);
    double sum = 0;
    for (size_t i = 0; i < pool; ++i) sum += e[order[i]] = std::exp(double(logits[order[i]]) - logits[order[0]]);
    size_t kept = 0;
    double cum = 0, kept_sum = 0;
    while (kept < pool) {
      cum += e[order[kept]] / sum;
      kept_sum += e[order[kept]];
      ++kept;
      if (c.top_p < 1.0f && cum >= c.top_p) break;
    }
    ASSERT_EQ(d.size(), kept) << "top_k " << c.top_k << " top_p " << c.top_p;
    if (c.top_k == 0 && c.top_p >= 1.0f) continue;
    for (size_t i = 0; i < kept; ++i) {
      ASSERT_EQ(d[i].id, order[i]) << i;
      EXPECT_NEAR(d[i].p, e[order[i]] / kept_sum, 1e-12);
    }
  }
}

// A processor that changes nothing but may touch any id, so a greedy
// sampler with it in the chain takes the full path: copy the row, process it, pick.
struct AnyIds final : LogitsProcessor {
  void apply(std::span<float>, std::span<const int32_t>) override {}
};

// Greedy decoding with only a bias and penalties picks without copying the
// row (Sampler::greedy_few); it must pick what the full path picks, also
// when a processed id ties with, beats or bans the row's own maximum, when
// NaN and -inf are about, and when nothing is left.
TEST(Sampler, GreedyWithFewProcessedIdsPicksAsTheFullRow) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  constexpr int64_t kVocab = 40;
  uint64_t state = 12345;
  auto next = [&](int n) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<int>((state >> 33) % static_cast<uint64_t>(n));
  };
  int picked = 0;
  for (int round = 0; round < 3000; ++round) {
    std::vector<float> logits(kVocab);
    // Few distinct values, so ties are common.
    for (float& l : logits) l = static_cast<float>(next(5)) - 2.0f;
    if (next(4) == 0) logits[static_cast<size_t>(next(kVocab))] = nan;
    if (next(4) == 0) logits[static_cast<size_t>(next(kVocab))] = -kInf;
    if (next(8) == 0) std::fill(logits.begin(), logits.end(), -kInf);
    SamplerParams p;
    p.temperature = 0.0f;
    for (int i = next(4); i > 0; --i)
      p.logit_bias[next(kVocab)] = next(3) == 0 ? -kInf : static_cast<float>(next(5)) - 2.0f;
    if (next(2) == 0) p.repeat_penalty = next(2) == 0 ? 2.0f : 0.5f;
    if (next(2) == 0) p.presence_penalty = static_cast<float>(next(3)) - 1.0f;
    p.repeat_last_n = next(3) - 1;
    std::vector<int32_t> history;
    for (int i = next(6); i > 0; --i) history.push_back(next(kVocab));
    Sampler few(p, kVocab), full(p, kVocab);
    full.add_processor(std::make_unique<AnyIds>());
    int32_t want = -1;
    try {
      want = full.sample(logits, history);
    } catch (const Error&) {
      EXPECT_THROW(few.sample(logits, history), Error) << "round " << round;
      continue;
    }
    EXPECT_EQ(few.sample(logits, history), want) << "round " << round;
    ++picked;
  }
  EXPECT_GT(picked, 2000);
}

TEST(Sampler, GreedyTakesAnInfiniteLogit) {
  SamplerParams p;
  p.temperature = 0.0f;
  Sampler s(p, 3);
  EXPECT_EQ(s.sample(std::vector<float>{1.0f, kInf, 2.0f}, {}), 1);
  Sampler t(plain(), 3);
  expect_dist(t.distribution(std::vector<float>{1.0f, kInf, 2.0f}, {}),
              {{0, 0.0}, {1, 1.0}, {2, 0.0}});
}

TEST(Sampler, SameSeedSameTokens) {
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 1234;
  const std::vector<float> logits = {0.5f, 1.0f, 0.1f, 0.9f, 0.7f, 0.2f, 0.3f, 0.8f};
  auto run = [&](Sampler& s) {
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.sample(logits, out));
    return out;
  };
  Sampler a(p, 8), b(p, 8);
  const auto ra = run(a);
  EXPECT_EQ(ra, run(b));
  a.reseed(1234);
  EXPECT_EQ(ra, run(a));
  p.seed = 1235;
  Sampler c(p, 8);
  EXPECT_NE(ra, run(c));

  // Pinned: these are the tokens every platform, compiler and standard
  // library must produce for this seed (the sampler uses no libm or
  // std::*_distribution on the draw path).
  const std::vector<int32_t> pinned = {0, 6, 5, 7, 0, 7, 3, 1, 4, 4, 3, 1, 1, 4, 3, 6, 4, 7, 7, 6, 6, 1, 3, 0};
  EXPECT_EQ(std::vector<int32_t>(ra.begin(), ra.begin() + 24), pinned);
}

TEST(Sampler, DrawsFollowTheDistribution) {
  SamplerParams p = plain();
  p.seed = 7;
  const std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  Sampler s(p, 4);
  const auto logits = log_probs(probs);
  const int n = 40000;
  std::vector<int> counts(4, 0);
  for (int i = 0; i < n; ++i) ++counts[static_cast<size_t>(s.sample(logits, {}))];
  double chi2 = 0;
  for (size_t i = 0; i < 4; ++i) {
    const double expected = n * probs[i];
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  EXPECT_LT(chi2, 16.27);  // 3 degrees of freedom, p = 0.001

  // With filters: top-k 2 leaves {0.3, 0.4} -> 3/7, 4/7.
  p.top_k = 2;
  Sampler k(p, 4);
  std::vector<int> kc(4, 0);
  for (int i = 0; i < n; ++i) ++kc[static_cast<size_t>(k.sample(logits, {}))];
  EXPECT_EQ(kc[0] + kc[1], 0);
  const double e2 = n * 3.0 / 7.0, e3 = n * 4.0 / 7.0;
  EXPECT_LT((kc[2] - e2) * (kc[2] - e2) / e2 + (kc[3] - e3) * (kc[3] - e3) / e3, 10.83);  // 1 dof
}

TEST(Sampler, NanLogitsAreNeverChosenAndAllInfIsAnError) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  SamplerParams p = plain();
  Sampler s(p, 3);
  for (int i = 0; i < 100; ++i) EXPECT_NE(s.sample(std::vector<float>{nan, 0.0f, 0.0f}, {}), 0);
  EXPECT_THROW(s.sample(std::vector<float>{-kInf, nan, -kInf}, {}), Error);
  p.temperature = 0.0f;
  Sampler g(p, 3);
  EXPECT_THROW(g.sample(std::vector<float>{-kInf, nan, -kInf}, {}), Error);
}

TEST(Sampler, RejectsBadInputs) {
  Sampler s(plain(), 3);
  EXPECT_THROW(s.sample(std::vector<float>{0, 0}, {}), Error);
  SamplerParams p = plain();
  p.repeat_penalty = 1.5f;
  Sampler pen(p, 3);
  EXPECT_THROW(pen.sample(std::vector<float>{0, 0, 0}, std::vector<int32_t>{5}), Error);
  // The failed call left no residue: the next one penalises nothing.
  const auto d = pen.distribution(std::vector<float>{0, 0, 0}, {});
  EXPECT_NEAR(d[0].p, 1.0 / 3, 1e-12);
}

void expect_invalid(const SamplerParams& p, const std::string& field) {
  try {
    Sampler s(p, 10);
    ADD_FAILURE() << "no error for " << field;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

TEST(Sampler, ValidationNamesTheField) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  SamplerParams p;
  p.temperature = nan;
  expect_invalid(p, "temperature");
  p = {};
  p.temperature = kInf;
  expect_invalid(p, "temperature");
  p = {};
  p.top_p = -0.1f;
  expect_invalid(p, "top_p");
  p = {};
  p.top_p = 1.5f;
  expect_invalid(p, "top_p");
  p = {};
  p.top_p = nan;
  expect_invalid(p, "top_p");
  p = {};
  p.min_p = -1.0f;
  expect_invalid(p, "min_p");
  p = {};
  p.repeat_penalty = 0.0f;
  expect_invalid(p, "repeat_penalty");
  p = {};
  p.repeat_last_n = -2;
  expect_invalid(p, "repeat_last_n");
  p = {};
  p.presence_penalty = nan;
  expect_invalid(p, "presence_penalty");
  p = {};
  p.frequency_penalty = -kInf;
  expect_invalid(p, "frequency_penalty");
  p = {};
  p.logit_bias = {{10, 1.0f}};
  expect_invalid(p, "logit_bias");
  p = {};
  p.logit_bias = {{1, kInf}};
  expect_invalid(p, "logit_bias");
  EXPECT_NO_THROW(Sampler(SamplerParams{}, 10));
}

}  // namespace
}  // namespace slm::engine
