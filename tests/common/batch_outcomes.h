// What the engine tests compare between runs of a BatchEngine: each request's
// whole output (Outcome), and the "alone or together" set-up: every request
// run alone in a one-slot engine, then all of them stepped together in one
// engine, each expected to give exactly what it gave alone.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/thread_pool.h"
#include "common/loaded_model.h"
#include "common/run_requests.h"
#include "engine/batch.h"

namespace slm::test {

// One request's output: its text and tokens as streamed, and its final update's fields.
struct Outcome {
  std::string text;
  std::vector<int32_t> tokens;
  engine::FinishReason finish = engine::FinishReason::kError;
  int64_t n_cached = -1;
  std::string error;
};

// Runs requests through engine (each admitted as a slot frees up) until all
// are done; [i] is requests[i]'s outcome.
inline std::vector<Outcome> run_all(engine::BatchEngine& engine,
                                    const std::vector<engine::Request>& requests) {
  std::vector<Outcome> out(requests.size());
  run_requests(engine, requests, [&out](size_t i, engine::Update&& u) {
    out[i].text += u.text;
    out[i].tokens.insert(out[i].tokens.end(), u.tokens.begin(), u.tokens.end());
    if (u.done) {
      out[i].finish = u.finish;
      out[i].n_cached = u.n_cached;
      out[i].error = u.error;
    }
  });
  return out;
}

// Each request alone, in a fresh engine of its own with options o but one
// slot (no prefix shared with another request's cache).
inline std::vector<Outcome> run_each_alone(const LoadedModel& l,
                                           const std::vector<engine::Request>& requests,
                                           ThreadPool& pool, engine::BatchOptions o = {}) {
  o.n_slots = 1;
  std::vector<Outcome> alone;
  for (const engine::Request& r : requests) {
    engine::BatchEngine one(*l.model, *l.tok, o, pool);
    alone.push_back(run_all(one, {r}).front());
  }
  return alone;
}

struct AloneAndTogether {
  std::vector<Outcome> alone;     // run_each_alone with default options
  std::vector<Outcome> together;  // all requests through one engine
};

// The requests alone (run_each_alone, default options), then together
// through one engine with options `together` (observer: its EngineObserver).
inline AloneAndTogether alone_and_together(const LoadedModel& l,
                                           const std::vector<engine::Request>& requests,
                                           ThreadPool& pool, const engine::BatchOptions& together,
                                           engine::EngineObserver* observer = nullptr) {
  AloneAndTogether r;
  r.alone = run_each_alone(l, requests, pool);
  engine::BatchEngine engine(*l.model, *l.tok, together, pool, observer);
  r.together = run_all(engine, requests);
  return r;
}

// Every request ran alone without an error and gave at least min_tokens
// tokens, and together gave the same tokens, text and finish reason.
inline void expect_together_as_alone(const AloneAndTogether& r, size_t min_tokens = 1) {
  ASSERT_EQ(r.alone.size(), r.together.size());
  for (size_t i = 0; i < r.alone.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    const Outcome& a = r.alone[i];
    const Outcome& t = r.together[i];
    if (a.finish == engine::FinishReason::kError) {
      ADD_FAILURE() << "alone: " << a.error;
      continue;
    }
    EXPECT_GE(a.tokens.size(), min_tokens);
    EXPECT_EQ(t.tokens, a.tokens);
    EXPECT_EQ(t.text, a.text);
    EXPECT_EQ(t.finish, a.finish);
  }
}

}  // namespace slm::test
