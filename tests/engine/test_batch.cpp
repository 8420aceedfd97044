// The batch engine in-process, without a thread or a subprocess: sequences
// with different samplers (greedy, seeded temperature, penalties, logit bias)
// and different stop strings, stepped together in one engine, give each the
// tokens and text it gives alone; cache keys that differ in their non-token
// part never share a prefix; requests on different LoRA adapters and on the
// base share every forward step; a processor appended to a sampler's chain
// acts before the filters.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <random>
#include <utility>

#include "base/thread_pool.h"
#include "common/batch_outcomes.h"
#include "common/fixtures.h"
#include "common/loaded_model.h"
#include "engine/batch.h"
#include "engine/sampler.h"
#include "model/lora.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace slm::engine {
namespace {

using Loaded = test::LoadedModel;
using test::Outcome;
using test::run_all;

Loaded load(const std::string& rel) {
  return test::load_model(rel);
}

Request base(const tokenizer::Tokenizer& tok, const char* prompt, int64_t max_tokens) {
  Request r;
  r.prompt.tokens = tok.encode(prompt, true, false);
  r.max_tokens = max_tokens;
  r.sampling.seed = 1;
  return r;
}

TEST(BatchEngine, EachSequenceInABatchMatchesItselfAlone) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load("models/stories260K.gguf");
  const tokenizer::Tokenizer& tok = *l.tok;
  std::vector<Request> rs;
  {
    Request r = base(tok, "Once upon a time", 60);  // greedy, stops at a name
    r.sampling.temperature = 0;
    r.stops = {"Lily", "Tim"};
    rs.push_back(r);
  }
  {
    Request r = base(tok, "The cat sat", 70);  // seeded temperature sampling
    r.sampling.temperature = 1.1f;
    r.sampling.top_k = 0;
    r.sampling.top_p = 0.9f;
    r.sampling.seed = 1234;
    r.stops = {"park"};
    rs.push_back(r);
  }
  {
    Request r = base(tok, "Tom and Lily went to the park", 70);  // penalties
    r.sampling.temperature = 0.9f;
    r.sampling.seed = 77;
    r.sampling.repeat_penalty = 1.3f;
    r.sampling.repeat_last_n = 32;
    r.sampling.presence_penalty = 0.4f;
    r.sampling.frequency_penalty = 0.2f;
    r.stops = {"\n"};
    rs.push_back(r);
  }
  {
    Request r = base(tok, "One day, a big dog", 70);  // logit bias: a ban and a boost
    r.sampling.temperature = 0.7f;
    r.sampling.seed = 5;
    const int32_t the = tok.encode(" the", false, false).front();
    const int32_t dog = tok.encode(" dog", false, false).front();
    r.sampling.logit_bias = {{the, -std::numeric_limits<float>::infinity()}, {dog, 2.0f}};
    r.stops = {"!", "zz"};
    rs.push_back(r);
  }
  {
    Request r = base(tok, "She liked to", 50);  // greedy with a repetition penalty, min-p
    r.sampling.temperature = 0;
    r.sampling.repeat_penalty = 1.5f;
    r.sampling.min_p = 0.1f;
    rs.push_back(r);
  }
  {
    Request r = base(tok, "The sun was hot and", 40);  // seeded, from the same seed as another
    r.sampling.temperature = 1.0f;
    r.sampling.seed = 1234;
    r.top_logprobs = 2;
    rs.push_back(r);
  }

  ThreadPool pool(2);
  // Fewer slots than requests and small prompt chunks: prompts are fed while
  // others decode, sequences join and leave between steps.
  BatchOptions o;
  o.n_slots = 4;
  o.prefill_chunk = 5;
  const test::AloneAndTogether run = test::alone_and_together(l, rs, pool, o);
  test::expect_together_as_alone(run);
  const std::vector<Outcome>& alone = run.alone;

  int stopped = 0;
  for (size_t i = 0; i < rs.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    if (alone[i].finish == FinishReason::kStop) ++stopped;
    for (const std::string& s : rs[i].stops) EXPECT_EQ(alone[i].text.find(s), std::string::npos);
  }
  EXPECT_GE(stopped, 1);  // the stop strings were exercised
  EXPECT_EQ(alone[0].text, ", there was a little girl named ");
  // The ban held.
  const int32_t the = tok.encode(" the", false, false).front();
  for (const int32_t id : alone[3].tokens) EXPECT_NE(id, the);
}

TEST(BatchEngine, CacheKeysWithDifferentAdaptersShareNoPrefix) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load("models/stories260K.gguf");
  ThreadPool pool(1);
  BatchOptions o;
  o.n_slots = 2;
  BatchEngine engine(*l.model, *l.tok, o, pool);
  Request plain = base(*l.tok, "Once upon a time, there was a little dog", 4);
  plain.sampling.temperature = 0;
  Request adapted = plain;
  // A rank-1 adapter on one matrix: the engine keys the cache by its id.
  const backend::Linear& wq = l.model->weights().layers[0].wq;
  model::LoraAdapter::Tensors t;
  t.name = "blk.0.attn_q.weight";
  t.rank = 1;
  t.a.assign(static_cast<size_t>(wq.cols()), 0.01f);
  t.b.assign(static_cast<size_t>(wq.rows()), 0.01f);
  adapted.adapter = model::LoraAdapter::from_tensors(*l.model, {t}, "test");
  const int64_t n = static_cast<int64_t>(plain.prompt.tokens.size());

  EXPECT_EQ(run_all(engine, {plain})[0].n_cached, 0);
  // Same tokens, another adapter: neither the idle slot's cache nor a copy of it.
  EXPECT_EQ(run_all(engine, {adapted})[0].n_cached, 0);
  // Each finds its own again.
  EXPECT_EQ(run_all(engine, {plain})[0].n_cached, n - 1);
  EXPECT_EQ(run_all(engine, {adapted})[0].n_cached, n - 1);

  CacheKey a{{1, 2, 3}, 0}, b{{1, 2, 3}, 9};
  EXPECT_EQ(shared_prefix(a, 3, a), 3u);
  EXPECT_EQ(shared_prefix(a, 3, b), 0u);
  EXPECT_EQ(shared_prefix(a, 2, a), 2u);
}

// Counts the engine's forward steps and the tokens each produced.
struct StepCounter : EngineObserver {
  std::vector<int64_t> tokens;  // per step
  void on_step(double, int64_t n_tokens) override { tokens.push_back(n_tokens); }
};

// Requests on the base and on two adapters run in the same forward steps
// (one batch, each sequence with its own delta), not one adapter after
// another, and each gives the tokens it gives alone.
TEST(BatchEngine, SequencesOnDifferentAdaptersShareEachStep) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load("models/stories260K.gguf");
  ThreadPool pool(2);
  // Random rank-2 adapters on every layer's q, o and up matrices, strong
  // enough to change greedy text.
  auto adapter = [&](uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 0.5f);
    std::vector<model::LoraAdapter::Tensors> ts;
    for (int64_t i = 0; i < l.model->config().n_layer; ++i) {
      const model::LayerWeights& lw = l.model->weights().layers[static_cast<size_t>(i)];
      const std::pair<const char*, const backend::Linear*> ws[] = {
          {"attn_q", &lw.wq}, {"attn_output", &lw.wo}, {"ffn_up", &lw.ffn_up}};
      for (const auto& [name, w] : ws) {
        model::LoraAdapter::Tensors t;
        t.name = "blk." + std::to_string(i) + "." + name + ".weight";
        t.rank = 2;
        t.a.resize(static_cast<size_t>(2 * w->cols()));
        t.b.resize(static_cast<size_t>(2 * w->rows()));
        for (float& x : t.a) x = dist(rng);
        for (float& x : t.b) x = dist(rng);
        ts.push_back(std::move(t));
      }
    }
    return model::LoraAdapter::from_tensors(*l.model, std::move(ts), "a" + std::to_string(seed));
  };
  std::vector<Request> rs(3, base(*l.tok, "Once upon a time", 12));
  rs[1].adapter = adapter(1);
  rs[2].adapter = adapter(2);
  for (Request& r : rs) r.sampling.temperature = 0;

  StepCounter steps;
  BatchOptions o;
  o.n_slots = 3;
  const test::AloneAndTogether run = test::alone_and_together(l, rs, pool, o, &steps);
  const std::vector<Outcome>& alone = run.alone;
  EXPECT_NE(alone[0].text, alone[1].text);  // the adapters matter
  EXPECT_NE(alone[0].text, alone[2].text);
  EXPECT_NE(alone[1].text, alone[2].text);
  test::expect_together_as_alone(run);
  size_t longest = 0;
  int64_t total = 0;
  for (size_t i = 0; i < rs.size(); ++i) {
    longest = std::max(longest, alone[i].tokens.size());
    total += static_cast<int64_t>(alone[i].tokens.size());
  }
  // One step per token of the longest (plus the prompts' step), each with
  // every sequence still running: three at once.
  EXPECT_LE(steps.tokens.size(), longest + 1);
  EXPECT_EQ(*std::max_element(steps.tokens.begin(), steps.tokens.end()), 3);
  int64_t sum = 0;
  for (const int64_t n : steps.tokens) sum += n;
  EXPECT_EQ(sum, total);
}

// Prefill order: a short prompt admitted behind a long one is fed first (its
// first token comes in the next step, not after the whole long prompt), the
// long one still advances with the rest of each step's budget and finishes
// its prompt within its own length's worth of steps, and both give the tokens
// they give alone.
TEST(BatchEngine, ShortPromptIsNotStuckBehindALongOne) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load("models/stories260K.gguf");
  ThreadPool pool(2);
  Request longer = base(*l.tok,
                        "Once upon a time, there was a little girl named Lily. She loved to play "
                        "outside in the park with her friends and her big brown dog.",
                        6);
  Request shorter = base(*l.tok, "The cat", 6);
  for (Request* r : {&longer, &shorter}) r->sampling.temperature = 0;
  const int64_t chunk = 8;
  const auto n_long = static_cast<int64_t>(longer.prompt.tokens.size());
  ASSERT_GT(n_long, 4 * chunk);  // several steps of prompt
  ASSERT_LT(static_cast<int64_t>(shorter.prompt.tokens.size()), chunk);

  BatchOptions o;
  o.prefill_chunk = chunk;
  const std::vector<Outcome> alone = test::run_each_alone(l, {longer, shorter}, pool, o);

  o.n_slots = 2;
  BatchEngine engine(*l.model, *l.tok, o, pool);
  std::vector<Outcome> out(2);
  int64_t step = 0;
  int64_t first[2] = {-1, -1};  // the step that gave each request its first token
  int done = 0;
  auto sink = [&](size_t i) {
    return [&, i](Update&& u) {
      if (first[i] < 0 && !u.tokens.empty()) first[i] = step;
      out[i].tokens.insert(out[i].tokens.end(), u.tokens.begin(), u.tokens.end());
      if (u.done) {
        out[i].finish = u.finish;
        ++done;
      }
    };
  };
  engine.admit(engine.make_sequence(longer, sink(0)));
  step = 1;
  engine.step();  // the long prompt's first chunk
  engine.admit(engine.make_sequence(shorter, sink(1)));
  while (done < 2 && step < 100) {
    ++step;
    engine.step();
  }
  ASSERT_EQ(done, 2);
  EXPECT_EQ(first[1],
            2);  // in the step after its arrival (first in, first out: after the long prompt)
  EXPECT_LE(first[0],
            (n_long + chunk - 1) / chunk + 1);  // delayed by at most the short prompt's step
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_NE(alone[i].finish, FinishReason::kError);
    EXPECT_EQ(out[i].tokens, alone[i].tokens) << "request " << i;
  }
}

TEST(BatchEngine, RefusesWhatCannotRunAtSubmission) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load("models/stories260K.gguf");
  ThreadPool pool(1);
  BatchOptions o;
  o.n_slots = 1;
  o.n_ctx = 16;
  BatchEngine engine(*l.model, *l.tok, o, pool);
  auto problem = [&](Request r) {
    try {
      engine.make_sequence(std::move(r), [](Update&&) {});
    } catch (const RequestError& e) {
      return e.problem();
    }
    ADD_FAILURE() << "accepted";
    return RequestError::Problem::kBadMaxTokens;
  };
  using P = RequestError::Problem;
  Request r;
  r.max_tokens = 4;
  EXPECT_EQ(problem(r), P::kEmptyPrompt);
  r.prompt.tokens = {1, 99999};
  EXPECT_EQ(problem(r), P::kBadToken);
  r.prompt.tokens.assign(16, 1);
  EXPECT_EQ(problem(r), P::kPromptTooLong);  // no room for a token
  r.prompt.tokens.assign(14, 1);
  EXPECT_EQ(problem(r), P::kNoRoomForTokens);
  r.context = ContextPolicy::kStop;  // the CLI's policy: runs until the context is full
  EXPECT_NO_THROW(engine.make_sequence(r, [](Update&&) {}));
  r.prompt.tokens.assign(17, 1);
  EXPECT_EQ(problem(r), P::kPromptTooLong);
  r.prompt.tokens = {1};
  r.sampling.top_p = 2;
  EXPECT_EQ(problem(r), P::kBadSampling);
}

// A step's draws run in parallel before any token is emitted: a sequence
// whose draw fails (every token banned) ends with the sampler's error, and
// the sequences drawn beside it in the same steps keep their own tokens.
TEST(BatchEngine, AFailedDrawEndsOnlyItsOwnSequence) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load("models/stories260K.gguf");
  const tokenizer::Tokenizer& tok = *l.tok;
  std::vector<Request> rs;
  for (const char* p : {"Once upon a time", "The cat sat", "One day", "Tom had a"}) {
    Request r = base(tok, p, 12);
    r.sampling.temperature = 0;
    rs.push_back(r);
  }
  rs[1].sampling.temperature = 0.8f;  // a seeded draw among the greedy ones
  rs[1].sampling.seed = 99;
  Request banned = base(tok, "She liked to", 12);
  for (int32_t id = 0; id < tok.n_vocab(); ++id)
    banned.sampling.logit_bias[id] = -std::numeric_limits<float>::infinity();
  rs.insert(rs.begin() + 2, banned);

  ThreadPool pool(2);
  BatchOptions o;
  o.n_slots = static_cast<int>(rs.size());
  const test::AloneAndTogether run = test::alone_and_together(l, rs, pool, o);
  const std::vector<Outcome>& alone = run.alone;
  const std::vector<Outcome>& batched = run.together;
  for (size_t i = 0; i < rs.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    if (i == 2) {
      EXPECT_EQ(batched[i].finish, FinishReason::kError);
      EXPECT_NE(batched[i].error.find("sampling failed: sampler: no token has a finite logit"),
                std::string::npos)
          << batched[i].error;
      EXPECT_TRUE(batched[i].tokens.empty());
      continue;
    }
    EXPECT_EQ(batched[i].finish, FinishReason::kLength) << batched[i].error;
    EXPECT_EQ(batched[i].tokens.size(), 12u);
    EXPECT_EQ(batched[i].tokens, alone[i].tokens);
  }
}

// A processor appended to the chain runs after the built-in ones and before
// the filters: banning the greedy choice makes greedy pick something else.
struct Ban : LogitsProcessor {
  explicit Ban(int32_t id) : id(id) {}
  void apply(std::span<float> logits, std::span<const int32_t>) override {
    logits[static_cast<size_t>(id)] = -std::numeric_limits<float>::infinity();
  }
  int32_t id;
};

TEST(BatchEngine, AppendedLogitsProcessorActsBeforeTheFilters) {
  std::vector<float> logits = {0.0f, 3.0f, 2.0f, 1.0f};
  SamplerParams p;
  p.temperature = 0;
  Sampler plain(p, 4);
  EXPECT_EQ(plain.sample(logits, {}), 1);
  Sampler masked(p, 4);
  masked.add_processor(std::make_unique<Ban>(1));
  EXPECT_EQ(masked.sample(logits, {}), 2);
  p.logit_bias = {{2, -10.0f}};
  Sampler both(p, 4);
  both.add_processor(std::make_unique<Ban>(1));
  EXPECT_EQ(both.sample(logits, {}), 3);
}

// Speculative decoding by prompt lookup: greedy sequences drafted and
// verified in batched steps (stop strings, limits, penalties and logprobs
// included) give exactly the tokens plain decoding gives, alone or together.
TEST(BatchEngine, DraftedGreedyDecodingEqualsPlainDecoding) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load("models/stories260K.gguf");
  const tokenizer::Tokenizer& tok = *l.tok;
  std::vector<Request> rs;
  for (const char* p :
       {"Once upon a time", "Lily and Tom went to the park. Lily and Tom went to the",
        "The dog ran and ran and ran and"}) {
    Request r = base(tok, p, 90);
    r.sampling.temperature = 0;
    rs.push_back(r);
  }
  rs[1].stops = {"happy"};
  rs[2].sampling.repeat_penalty = 1.2f;
  rs[2].top_logprobs = 2;
  ThreadPool pool(2);
  BatchOptions plain;
  plain.n_slots = 1;
  BatchEngine alone(*l.model, tok, plain, pool);
  std::vector<Outcome> want;
  for (const Request& r : rs) want.push_back(run_all(alone, {r})[0]);
  for (int slots : {1, 3}) {
    BatchOptions o;
    o.n_slots = slots;
    o.draft_max = 6;
    o.draft_by_speed = false;  // drafts whenever found, whatever the machine's load
    BatchEngine drafted(*l.model, tok, o, pool);
    int64_t accepted = 0;
    std::vector<Outcome> got(rs.size());
    for (size_t i = 0; i < rs.size(); ++i) {
      if (slots == 1) got[i] = run_all(drafted, {rs[i]})[0];
    }
    if (slots > 1) got = run_all(drafted, rs);
    for (size_t i = 0; i < rs.size(); ++i) {
      EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i << ", " << slots << " slots";
      EXPECT_EQ(got[i].text, want[i].text) << "request " << i;
      EXPECT_EQ(got[i].finish, want[i].finish) << "request " << i;
    }
    // Drafts must actually have been taken for this to test anything.
    Request probe = rs[1];
    probe.max_tokens = 60;
    std::vector<Update> ends;
    drafted.admit(drafted.make_sequence(probe, [&](Update&& u) {
      if (u.done) ends.push_back(std::move(u));
    }));
    while (drafted.n_active() > 0) drafted.step();
    ASSERT_EQ(ends.size(), 1u);
    accepted = ends[0].n_accepted;
    EXPECT_GT(ends[0].n_drafted, 0);
    EXPECT_GT(accepted, 0);
  }
}

// The smallest-device quantizations (packed Q3_K / Q2_K tiles where the ISA
// has them): several sequences decoded in one batch, with prompts fed in
// small chunks between decode steps, give each the tokens it gives alone
// (every weight pass takes 1..4 rows and a token's sums do not depend on
// how many share the pass).
TEST(BatchEngine, SmallQuantizationsDecodeInABatchAsAlone) {
  for (const char* file : {"models/small-llama-Q3_K.gguf", "models/small-llama-Q2_K.gguf"}) {
    SCOPED_TRACE(file);
    SLM_REQUIRE_FIXTURE(file);
    const Loaded l = load(file);
    const tokenizer::Tokenizer& tok = *l.tok;
    std::vector<Request> rs;
    const char* prompts[] = {"Once upon a time", "The cat sat on the mat and", "Tom and Lily",
                             "One day, a big dog ran", "She liked to"};
    for (size_t i = 0; i < std::size(prompts); ++i) {
      Request r = base(tok, prompts[i], 24 + 3 * static_cast<int64_t>(i));
      r.sampling.temperature = i % 2 == 0 ? 0.0f : 0.8f;
      r.sampling.seed = 10 + i;
      rs.push_back(r);
    }
    ThreadPool pool(2);
    BatchOptions o;
    o.n_slots = 4;
    o.prefill_chunk = 5;
    test::expect_together_as_alone(test::alone_and_together(l, rs, pool, o), 10);
  }
}

// Rejection sampling against a deterministic draft keeps the distribution:
// draws with any draft token are distributed as the sampler's own.
TEST(Sampler, DraftedDrawsKeepTheDistribution) {
  std::vector<float> logits = {1.0f, 2.0f, 0.5f, 3.0f, -1.0f, 2.5f, 0.0f, 1.5f};
  SamplerParams p;
  p.temperature = 0.9f;
  p.top_k = 6;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 42;
  Sampler ref(p, static_cast<int64_t>(logits.size()));
  std::vector<double> want(logits.size(), 0.0);
  for (const TokenProb& t : ref.distribution(logits, {})) want[static_cast<size_t>(t.id)] = t.p;
  for (int32_t draft : {3, 0, 4}) {  // likely, unlikely, outside the top-k
    Sampler s(p, static_cast<int64_t>(logits.size()));
    std::vector<double> got(logits.size(), 0.0);
    const int n = 200000;
    for (int i = 0; i < n; ++i)
      got[static_cast<size_t>(s.sample_draft(logits, {}, draft))] += 1.0 / n;
    for (size_t id = 0; id < logits.size(); ++id)
      EXPECT_NEAR(got[id], want[id], 0.005) << "draft " << draft << " id " << id;
  }
}

}  // namespace
}  // namespace slm::engine
