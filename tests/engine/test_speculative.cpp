// Speculative decoding with a draft model (engine/draft_model.h): the
// rejection rule keeps the target's distribution for any proposal q (sampler
// level, exact probabilities), greedy output equals plain decoding, sampled
// output is distributed as plain sampling (a two-sample chi-square test over
// thousands of tokens of a real fixture model drafted by its Q2_K twin), and
// a draft model with another tokenizer is refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include "base/error.h"
#include "base/thread_pool.h"
#include "common/fixtures.h"
#include "common/loaded_model.h"
#include "common/run_requests.h"
#include "engine/batch.h"
#include "engine/draft_model.h"
#include "engine/sampler.h"
#include "model/model.h"
#include "model/session.h"
#include "tokenizer/tokenizer.h"

namespace slm::engine {
namespace {

using Loaded = test::LoadedModel;

Loaded load(const std::string& rel) {
  return test::load_model(rel);
}

struct Outcomes {
  std::vector<std::vector<int32_t>> tokens;  // per request
  int64_t drafted = 0, accepted = 0;
};

// Runs every request through engine (admitted as slots free up) to the end.
Outcomes run_all(BatchEngine& engine, const std::vector<Request>& requests) {
  Outcomes run;
  run.tokens.resize(requests.size());
  test::run_requests(engine, requests, [&run](size_t i, Update&& u) {
    run.tokens[i].insert(run.tokens[i].end(), u.tokens.begin(), u.tokens.end());
    if (u.done) {
      EXPECT_NE(u.finish, FinishReason::kError) << u.error;
      run.drafted += u.n_drafted;
      run.accepted += u.n_accepted;
    }
  });
  return run;
}

// For a proposal q unlike p (mass on a token p's filters drop, none on
// tokens p keeps), drafts drawn from q and verified with sample_draft are
// distributed as p, and are accepted at the rate sum_x min(p(x), q(x)) that
// min(1, p/q) gives (the point-mass rule would accept at sum_x q(x) p(x)).
TEST(Sampler, DraftModelRejectionKeepsTheDistribution) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, 3.0f, -1.0f, 2.5f, 0.0f, 1.5f};
  SamplerParams p;
  p.temperature = 0.9f;
  p.top_k = 6;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 7;
  const size_t V = logits.size();
  Sampler ref(p, static_cast<int64_t>(V));
  std::vector<double> want(V, 0.0);
  for (const TokenProb& t : ref.distribution(logits, {})) want[static_cast<size_t>(t.id)] = t.p;
  ASSERT_EQ(want[4], 0.0);  // dropped by top-k
  // q: too much on 0 and 4 (outside p's support), too little on 3, none on 5.
  const std::vector<TokenProb> q = {{0, 0.3}, {1, 0.2},  {2, 0.05}, {3, 0.15},
                                    {4, 0.2}, {6, 0.05}, {7, 0.05}};
  std::vector<double> qw(V, 0.0);
  for (const TokenProb& t : q) qw[static_cast<size_t>(t.id)] = t.p;
  double want_accept = 0;
  for (size_t i = 0; i < V; ++i) want_accept += std::min(want[i], qw[i]);

  Sampler s(p, static_cast<int64_t>(V));
  std::mt19937_64 rng(123);
  std::discrete_distribution<int32_t> draw_q(qw.begin(), qw.end());
  std::vector<double> got(V, 0.0);
  const int n = 400000;
  int accepted = 0;
  for (int i = 0; i < n; ++i) {
    const int32_t d = draw_q(rng);
    const int32_t id = s.sample_draft(logits, {}, d, q);
    got[static_cast<size_t>(id)] += 1.0 / n;
    accepted += id == d;
  }
  double tv = 0;
  for (size_t id = 0; id < V; ++id) {
    EXPECT_NEAR(got[id], want[id], 0.004) << "id " << id;
    tv += 0.5 * std::fabs(got[id] - want[id]);
  }
  EXPECT_LT(tv, 0.006);
  // A kept draft can also come from the residual draw, which never draws a
  // token where q >= p; the accepted share is min(p, q) summed.
  EXPECT_NEAR(static_cast<double>(accepted) / n, want_accept, 0.005);

  // A draft model's proposal is its own distribution: q = p accepts everything.
  Sampler same(p, static_cast<int64_t>(V));
  std::vector<TokenProb> pq;
  for (size_t i = 0; i < V; ++i)
    if (want[i] > 0) pq.push_back({static_cast<int32_t>(i), want[i]});
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(same.sample_draft(logits, {}, 3, pq), 3);
}

// The draft's own draw: the distribution it reports is distribution()'s and
// its draws follow it.
TEST(Sampler, SampleWithDistributionReportsWhatItDrawsFrom) {
  const std::vector<float> logits = {0.5f, 1.5f, -0.5f, 1.0f, 2.0f};
  SamplerParams p;
  p.temperature = 1.1f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 3;
  Sampler a(p, 5), b(p, 5);
  std::vector<TokenProb> dist;
  std::vector<double> got(5, 0.0);
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const int32_t id = a.sample_with_distribution(logits, {}, dist);
    EXPECT_EQ(id, b.sample(logits, {}));  // the same draw as sample()
    got[static_cast<size_t>(id)] += 1.0 / n;
  }
  ASSERT_EQ(dist.size(), 5u);
  for (const TokenProb& t : dist) EXPECT_NEAR(got[static_cast<size_t>(t.id)], t.p, 0.004) << t.id;
}

Request request(const tokenizer::Tokenizer& tok, const char* prompt, int64_t max_tokens) {
  Request r;
  r.prompt.tokens = tok.encode(prompt, true, false);
  r.max_tokens = max_tokens;
  return r;
}

// Greedy decoding with a draft model (a quantized twin, and the model itself)
// gives exactly the tokens plain decoding gives, alone and in a batch.
TEST(BatchEngine, DraftModelGreedyEqualsPlainDecoding) {
  SLM_REQUIRE_FIXTURE("models/small-llama-Q2_K.gguf");
  const Loaded target = load("models/small-llama-F32.gguf");
  const Loaded q2 = load("models/small-llama-Q2_K.gguf");
  const tokenizer::Tokenizer& tok = *target.tok;
  std::vector<Request> rs;
  for (const char* p : {"Once upon a time", "The cat sat on the mat. The cat", "1 2 3 4 5"}) {
    Request r = request(tok, p, 40);
    r.sampling.temperature = 0;
    rs.push_back(r);
  }
  rs[2].sampling.repeat_penalty = 1.3f;
  ThreadPool pool(2);
  BatchOptions plain;
  plain.n_slots = 1;
  BatchEngine alone(*target.model, tok, plain, pool);
  const Outcomes want = run_all(alone, rs);
  for (const model::Model* draft : {q2.model.get(), target.model.get()}) {
    for (int slots : {1, 3}) {
      BatchOptions o;
      o.n_slots = slots;
      o.draft_max = 5;
      o.draft_model = draft;
      o.draft_by_speed = false;  // drafts in every step, whatever the machine's load
      BatchEngine drafted(*target.model, tok, o, pool);
      const Outcomes got = run_all(drafted, rs);
      for (size_t i = 0; i < rs.size(); ++i)
        EXPECT_EQ(got.tokens[i], want.tokens[i]) << "request " << i << ", " << slots << " slots";
      EXPECT_GT(got.accepted, 0) << "no draft was taken: the test checks nothing";
      if (draft == target.model.get()) {
        EXPECT_EQ(got.accepted, got.drafted);  // its own argmax
      }
    }
  }
}

// Pearson's chi-square of sampled sequences against the target's exact
// next-token distributions: for every prefix h of generated tokens seen at
// least 60 times, the counts of the token after h against n_h p(. | prompt h)
// (the target alone, one Session, the sampler's own distribution()). Cells
// with an expectation below 10 are pooled. Returns {chi2, df}; a token outside
// p's support is a failure.
std::pair<double, int> goodness_of_fit(const model::Model& model, const SamplerParams& params,
                                       const std::vector<int32_t>& prompt,
                                       const std::vector<std::vector<int32_t>>& runs, size_t len) {
  std::map<std::vector<int32_t>, std::map<int32_t, double>> seen;  // prefix -> next token -> count
  for (const auto& t : runs)
    for (size_t pos = 1; pos < std::min(len, t.size()); ++pos)
      seen[std::vector<int32_t>(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(pos))][t[pos]] +=
          1;
  ThreadPool pool(2);
  Sampler sampler(params, model.config().n_vocab);
  double chi2 = 0;
  int df = 0;
  for (const auto& [prefix, next] : seen) {
    double n_h = 0;
    for (const auto& [id, c] : next) n_h += c;
    if (n_h < 60) continue;
    std::vector<int32_t> h = prompt;
    h.insert(h.end(), prefix.begin(), prefix.end());
    model::SessionOptions so;
    so.n_ctx = 64;
    model::Session session(model, so);
    session.feed(h, pool);
    std::map<int32_t, double> p;
    for (const TokenProb& t : sampler.distribution(session.last_logits(), h)) p[t.id] = t.p;
    for (const auto& [id, c] : next) {
      EXPECT_TRUE(p.count(id)) << "token " << id << " is outside the target's distribution";
      if (!p.count(id)) return {1e30, 1};
    }
    double pooled_o = 0, pooled_e = 0;
    int cells = 0;
    for (const auto& [id, pr] : p) {
      const double e = n_h * pr;
      const double o = next.count(id) ? next.at(id) : 0.0;
      if (e < 10) {
        pooled_o += o;
        pooled_e += e;
        continue;
      }
      chi2 += (o - e) * (o - e) / e;
      ++cells;
    }
    if (pooled_e > 0) {
      chi2 += (pooled_o - pooled_e) * (pooled_o - pooled_e) / pooled_e;
      ++cells;
    }
    df += cells - 1;
  }
  return {chi2, df};
}

// Sampled decoding with a draft model keeps the target's distribution: the
// tokens after the first (all verified against drafts) of thousands of
// sequences fit the target's exact conditional distributions (chi-square,
// 4-sigma bound df + 4 sqrt(2 df), deterministic with these seeds), as
// plain sampling does, while the Q2_K draft's proposals are rejected often
// enough that the residual draw max(0, p - q) decides many tokens. (Drawing
// the residual from p instead, or accepting with p alone, fails this.)
TEST(BatchEngine, DraftModelSampledOutputKeepsTheDistribution) {
  SLM_REQUIRE_FIXTURE("models/small-llama-Q2_K.gguf");
  const Loaded target = load("models/small-llama-F32.gguf");
  const Loaded q2 = load("models/small-llama-Q2_K.gguf");
  const tokenizer::Tokenizer& tok = *target.tok;
  const int n = 3000;
  const int64_t len = 4;  // the first token, then 3 from one drafted step
  SamplerParams params;
  params.temperature = 1.0f;
  params.top_k = 6;
  params.top_p = 1.0f;
  params.min_p = 0.0f;
  const Request proto = request(tok, "Once upon a time", len);
  auto requests = [&](uint64_t seed0) {
    std::vector<Request> rs;
    for (int i = 0; i < n; ++i) {
      Request r = proto;
      r.sampling = params;
      r.sampling.seed = seed0 + static_cast<uint64_t>(i);
      rs.push_back(r);
    }
    return rs;
  };
  ThreadPool pool(2);
  BatchOptions plain;
  plain.n_slots = 16;
  BatchEngine a(*target.model, tok, plain, pool);
  const Outcomes want = run_all(a, requests(1));
  BatchOptions o = plain;
  o.draft_max = 3;
  o.draft_model = q2.model.get();
  o.draft_by_speed = false;  // every sequence drafts its tokens 2-4
  BatchEngine b(*target.model, tok, o, pool);
  const Outcomes got = run_all(b, requests(1000001));
  ASSERT_GT(got.drafted, n);
  const double rate = static_cast<double>(got.accepted) / static_cast<double>(got.drafted);
  EXPECT_GT(rate, 0.1);
  EXPECT_LT(rate, 0.9);  // rejections happen: the residual is exercised

  for (const Outcomes* run : {&want, &got}) {
    const auto [chi2, df] =
        goodness_of_fit(*target.model, params, proto.prompt.tokens, run->tokens, len);
    ASSERT_GT(df, 20);
    EXPECT_LT(chi2, df + 4 * std::sqrt(2.0 * df))
        << (run == &got ? "drafted" : "plain") << ": df " << df << ", acceptance " << rate;
    std::printf("%s: chi2 %.1f, df %d, acceptance %.3f\n", run == &got ? "drafted" : "plain", chi2,
                df, rate);
  }
}

TEST(DraftModel, AnotherTokenizerIsRefusedByName) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const Loaded target = load("models/stories260K.gguf");
  const Loaded other = load("models/tiny-llama.gguf");
  ThreadPool pool(1);
  BatchOptions o;
  o.n_slots = 1;
  o.draft_max = 4;
  o.draft_model = other.model.get();
  try {
    BatchEngine e(*target.model, *target.tok, o, pool);
    FAIL() << "a draft model with another vocabulary was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("draft model's tokenizer differs"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("32000 tokens against 512"), std::string::npos)
        << e.what();
  }
  // The same size but one token changed is named by id and text.
  EXPECT_NO_THROW(check_same_vocabulary(*target.tok, *target.tok));
}

}  // namespace
}  // namespace slm::engine
