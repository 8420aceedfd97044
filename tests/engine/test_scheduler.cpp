// The engine's continuous-batching scheduler on the real stories260K model: batched
// results equal each request run alone (greedy), cancellation frees the slot,
// shared prefixes are reused (and the reused cache gives the same text), the
// queue is bounded, stop strings and limits end generation.
#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <thread>

#include "base/utf8.h"
#include "common/fixtures.h"
#include "common/loaded_model.h"
#include "engine/scheduler.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace slm::engine {
namespace {

using namespace std::chrono_literals;

using Loaded = test::LoadedModel;

Loaded load_stories() {
  return test::load_model("models/stories260K.gguf");
}

// Counts what the engine reports (the server's Metrics implements the same).
struct CountingObserver : EngineObserver {
  std::atomic<int64_t> prompt{0}, cached{0}, first_tokens{0}, intervals{0}, steps{0}, tokens{0};
  void on_prompt(int64_t n_prompt, int64_t n_cached) override {
    prompt += n_prompt;
    cached += n_cached;
  }
  void on_first_token(double) override { ++first_tokens; }
  void on_token_interval(double) override { ++intervals; }
  void on_step(double, int64_t n) override {
    ++steps;
    tokens += n;
  }
};

// The job's updates merged into one (finish kError if it never finishes).
Update wait_for(Job& job) {
  Update all, u;
  all.finish = FinishReason::kError;
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < give_up) {
    if (!job.take(u, 100ms)) continue;
    all.merge(std::move(u));
    if (all.done) return all;
  }
  ADD_FAILURE() << "job did not finish";
  return all;
}

Request greedy(std::vector<int32_t> prompt, int64_t max_tokens) {
  Request r;
  r.prompt.tokens = std::move(prompt);
  r.sampling.temperature = 0;
  r.max_tokens = max_tokens;
  return r;
}

void wait_until(const std::function<bool()>& cond) {
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (!cond() && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(cond());
}

const std::vector<std::string> kPrompts = {"Once upon a time", "Tom and Lily went to the park",
                                           "The cat sat",      "One day, a big dog",
                                           "She liked to",     "The sun was hot and"};

TEST(Scheduler, BatchedEqualsAlone) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load_stories();
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& p : kPrompts) prompts.push_back(l.tok->encode(p, true, false));
  const int64_t n_gen = 40;

  std::vector<Update> alone;
  {
    SchedulerOptions o;
    o.n_slots = 1;
    Scheduler s(*l.model, *l.tok, o);
    for (const auto& p : prompts) alone.push_back(wait_for(*s.submit(greedy(p, n_gen))));
  }
  // Small prompt chunks and more requests than slots: prompts are fed while
  // others decode, requests join and leave the batch between steps.
  SchedulerOptions o;
  o.n_slots = 4;
  o.prefill_chunk = 3;
  CountingObserver metrics;
  Scheduler s(*l.model, *l.tok, o, &metrics);
  std::vector<std::shared_ptr<Job>> jobs;
  for (size_t i = 0; i < prompts.size(); ++i)
    jobs.push_back(s.submit(greedy(prompts[i], n_gen - 5 * (i % 3))));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Update b = wait_for(*jobs[i]);
    ASSERT_EQ(b.finish, FinishReason::kLength) << b.error;
    EXPECT_EQ(b.n_generated, n_gen - 5 * static_cast<int64_t>(i % 3));
    // The shorter runs are prefixes of the solo text.
    EXPECT_EQ(alone[i].text.substr(0, b.text.size()), b.text) << kPrompts[i];
    if (i % 3 == 0) {
      EXPECT_EQ(alone[i].text, b.text);
    }
    EXPECT_FALSE(b.text.empty());
  }
  EXPECT_EQ(alone[0].text.substr(0, 30), ", there was a little girl name");
  wait_until([&] { return s.stats().active == 0; });
  // Every request's first token was reported before its end.
  EXPECT_EQ(metrics.first_tokens.load(), static_cast<int64_t>(prompts.size()));
  EXPECT_GT(metrics.intervals.load(), 0);
}

TEST(Scheduler, CancelFreesTheSlot) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load_stories();
  SchedulerOptions o;
  o.n_slots = 1;
  Scheduler s(*l.model, *l.tok, o);
  const auto p = l.tok->encode("Once upon a time", true, false);
  auto job = s.submit(greedy(p, 100));
  Update u;
  ASSERT_TRUE(job->take(u, 10s));  // running
  EXPECT_EQ(s.stats().active, 1);
  job->cancel();
  const Update c = wait_for(*job);
  EXPECT_EQ(c.finish, FinishReason::kCancelled);
  EXPECT_LT(c.n_generated, 100);
  EXPECT_EQ(s.stats().active, 0);
  // The one slot serves the next request.
  const Update next = wait_for(*s.submit(greedy(p, 5)));
  EXPECT_EQ(next.finish, FinishReason::kLength);
  EXPECT_EQ(next.n_generated, 5);
  // A request cancelled while queued never runs.
  auto blocker = s.submit(greedy(p, 100));
  auto queued = s.submit(greedy(p, 5));
  queued->cancel();
  EXPECT_EQ(wait_for(*queued).n_generated, 0);
  blocker->cancel();
  wait_for(*blocker);
  wait_until([&] { return s.stats().active == 0 && s.stats().queued == 0; });
}

TEST(Scheduler, SharedPrefixIsReused) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load_stories();
  const std::vector<int32_t> system =
      l.tok->encode("Once upon a time, there was a little dog named Max.", true, false);
  auto with = [&](const char* tail) {
    std::vector<int32_t> p = system;
    const auto t = l.tok->encode(tail, false, false);
    p.insert(p.end(), t.begin(), t.end());
    return p;
  };
  const auto p1 = with(" He liked to"), p2 = with(" One day"), p3 = with(" Max saw");
  // SentencePiece may start each tail with the same piece (a lone space), so
  // the shared part can be a little longer than the system prompt.
  auto common = [](const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
    int64_t n = 0;
    while (n < static_cast<int64_t>(std::min(a.size(), b.size())) && a[n] == b[n]) ++n;
    return n;
  };
  ASSERT_GE(common(p1, p2), static_cast<int64_t>(system.size()));

  // Reference: each prompt alone in a fresh scheduler.
  std::vector<std::string> fresh;
  for (const auto& p : {p1, p2, p3}) {
    SchedulerOptions o;
    o.n_slots = 1;
    Scheduler s(*l.model, *l.tok, o);
    fresh.push_back(wait_for(*s.submit(greedy(p, 20))).text);
  }

  SchedulerOptions o;
  o.n_slots = 2;
  CountingObserver metrics;
  Scheduler s(*l.model, *l.tok, o, &metrics);
  const Update a = wait_for(*s.submit(greedy(p1, 20)));
  EXPECT_EQ(a.n_cached, 0);
  EXPECT_EQ(a.text, fresh[0]);
  // Same slot, truncated to the common prefix.
  const Update b = wait_for(*s.submit(greedy(p2, 20)));
  EXPECT_EQ(b.n_cached, common(p1, p2));
  EXPECT_EQ(b.text, fresh[1]);
  // Keep one slot busy with p1 so the next request lands in the other slot
  // and must copy the prefix from a running sequence.
  auto busy = s.submit(greedy(p1, 80));
  Update u;
  ASSERT_TRUE(busy->take(u, 10s));
  const Update c = wait_for(*s.submit(greedy(p3, 20)));
  EXPECT_EQ(c.n_cached, common(p1, p3));
  EXPECT_EQ(c.text, fresh[2]);
  busy->cancel();
  // On a fast machine the 80 tokens may all be done before the take above
  // returned: that update already ends the job.
  Update busy_out = std::move(u);
  if (!busy_out.done) busy_out.merge(wait_for(*busy));
  // The identical prompt again: all but the last token come from the cache.
  const Update d = wait_for(*s.submit(greedy(p3, 20)));
  EXPECT_EQ(d.n_cached, static_cast<int64_t>(p3.size()) - 1);
  EXPECT_EQ(d.text, fresh[2]);
  EXPECT_EQ(metrics.cached.load(), b.n_cached + busy_out.n_cached + c.n_cached + d.n_cached);
}

TEST(Scheduler, QueueIsBounded) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load_stories();
  SchedulerOptions o;
  o.n_slots = 1;
  o.max_queue = 1;
  Scheduler s(*l.model, *l.tok, o);
  const auto p = l.tok->encode("Once upon a time", true, false);
  // A job that runs until cancelled (no token limit, the context shifting,
  // no end of text): a limited one could end, on a fast or a busy machine,
  // before the poll below sees it active.
  Request forever = greedy(p, -1);
  forever.context = ContextPolicy::kShift;
  for (const int32_t id : l.tok->eog_ids())
    forever.sampling.logit_bias[id] = -std::numeric_limits<float>::infinity();
  auto running = s.submit(std::move(forever));
  wait_until([&] { return s.stats().active == 1; });
  auto waiting = s.submit(greedy(p, 5));
  EXPECT_EQ(s.stats().queued, 1);
  EXPECT_THROW(s.submit(greedy(p, 5)), QueueFullError);
  running->cancel();
  EXPECT_EQ(wait_for(*waiting).n_generated, 5);
}

TEST(Scheduler, RejectsWhatCannotRun) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load_stories();
  SchedulerOptions o;
  o.n_slots = 1;
  o.n_ctx = 64;
  Scheduler s(*l.model, *l.tok, o);
  EXPECT_EQ(s.n_ctx(), 64);
  EXPECT_THROW(s.submit(greedy({}, 5)), Error);
  EXPECT_THROW(s.submit(greedy(std::vector<int32_t>(64, 1), 1)), Error);
  EXPECT_THROW(s.submit(greedy(std::vector<int32_t>(60, 1), 5)), Error);
  EXPECT_THROW(s.submit(greedy({1, 512}, 5)), Error);
  EXPECT_THROW(s.submit(greedy({1, -1}, 5)), Error);
  EXPECT_THROW(s.submit(greedy({1}, 0)), Error);
  Request bad = greedy({1}, 5);
  bad.sampling.top_p = 2;
  EXPECT_THROW(s.submit(bad), Error);
  // The largest request that fits runs to the end of the context.
  const Update full = wait_for(*s.submit(greedy(std::vector<int32_t>(60, 1), 4)));
  EXPECT_EQ(full.n_generated + full.n_prompt <= 64, true);
}

TEST(Scheduler, StopStringsAndDeadlines) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load_stories();
  SchedulerOptions o;
  o.n_slots = 2;
  Scheduler s(*l.model, *l.tok, o);
  Request r = greedy(l.tok->encode("Once upon a time", true, false), 60);
  r.stops = {"Lily", "zzz"};
  const Update a = wait_for(*s.submit(r));
  EXPECT_EQ(a.finish, FinishReason::kStop);
  EXPECT_EQ(a.text, ", there was a little girl named ");
  Request late = greedy(l.tok->encode("Once upon a time", true, false), 60);
  late.deadline = std::chrono::steady_clock::now() - 1s;
  const Update b = wait_for(*s.submit(late));
  EXPECT_EQ(b.finish, FinishReason::kError);
  EXPECT_EQ(b.n_generated, 0);
}

TEST(Scheduler, LogprobsAreReported) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const Loaded l = load_stories();
  Scheduler s(*l.model, *l.tok, SchedulerOptions{});
  Request r = greedy(l.tok->encode("Once upon a time", true, false), 5);
  r.top_logprobs = 3;
  auto job = s.submit(r);
  std::vector<TokenLogprob> lp;
  Update u;
  for (;;) {
    if (!job->take(u, 100ms)) continue;
    lp.insert(lp.end(), u.logprobs.begin(), u.logprobs.end());
    if (u.done) break;
  }
  ASSERT_EQ(lp.size(), 5u);
  for (const TokenLogprob& t : lp) {
    EXPECT_LE(t.logprob, 0.0f);
    ASSERT_EQ(t.top.size(), 3u);
    EXPECT_EQ(t.top[0].first, t.id);  // greedy picks the most likely
    EXPECT_FLOAT_EQ(t.top[0].second, t.logprob);
    EXPECT_GE(t.top[0].second, t.top[1].second);
  }
}

}  // namespace
}  // namespace slm::engine

namespace slm::engine {
namespace {

// Byte-level BPE with random weights emits token pieces that split UTF-8
// characters all the time: every update must still be whole characters.
TEST(Scheduler, StreamedPiecesAreWholeUtf8) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  const auto model = model::Model::load(test::fixture("models/tiny-qwen2.gguf"));
  const auto tok = tokenizer::Tokenizer::from_gguf(model->file());
  SchedulerOptions o;
  o.n_slots = 2;
  o.n_ctx = 1024;
  Scheduler s(*model, tok, o);
  std::vector<std::shared_ptr<Job>> jobs;
  for (uint64_t seed = 1; seed <= 2; ++seed) {
    Request r;
    r.prompt.tokens = tok.encode("你好, 世界! Ünïcödé ✓", false, false);
    r.sampling.temperature = 1.5f;
    r.sampling.top_k = 0;
    r.sampling.top_p = 1;
    r.sampling.min_p = 0;
    r.sampling.seed = seed;
    r.max_tokens = 300;
    r.stops = {"\xE4\xB8"};  // half of a CJK character: must never match inside one
    jobs.push_back(s.submit(r));
  }
  for (auto& job : jobs) {
    Update u;
    int64_t pieces = 0;
    for (;;) {
      if (!job->take(u, 100ms)) continue;
      EXPECT_TRUE(utf8::is_valid(u.text)) << "piece " << pieces;
      ++pieces;
      if (u.done) break;
    }
    EXPECT_NE(u.finish, FinishReason::kError) << u.error;
  }
}

}  // namespace
}  // namespace slm::engine
