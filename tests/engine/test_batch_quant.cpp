// Batched decoding on quantized models whose matrices take the packed tiles
// (Q4_1, Q5_1, IQ4_NL: packed_legacy2.cpp where the CPU has AVX-512 VNNI):
// several greedy sequences stepped together, their prompts fed in chunks
// while others decode, give each the tokens it gives alone (a token's tile
// bits do not depend on how many tokens share the weight pass).
#include <gtest/gtest.h>

#include <limits>

#include "base/thread_pool.h"
#include "common/fixtures.h"
#include "common/loaded_model.h"
#include "common/run_requests.h"
#include "engine/batch.h"
#include "tokenizer/tokenizer.h"

namespace slm::engine {
namespace {

std::vector<std::vector<int32_t>> greedy_tokens(BatchEngine& engine,
                                                const std::vector<Request>& requests) {
  std::vector<std::vector<int32_t>> out(requests.size());
  test::run_requests(engine, requests, [&out](size_t i, Update&& u) {
    out[i].insert(out[i].end(), u.tokens.begin(), u.tokens.end());
  });
  return out;
}

class BatchQuant : public ::testing::TestWithParam<const char*> {};

TEST_P(BatchQuant, EachGreedySequenceInABatchMatchesItselfAlone) {
  const std::string rel = std::string("models/small-llama-") + GetParam() + ".gguf";
  SLM_REQUIRE_FIXTURE(rel);
  const test::LoadedModel l = test::load_model(rel);
  std::vector<Request> rs;
  for (const char* prompt : {"The quick brown fox", "Once upon a time there was a", "A",
                             "She went to the market and bought some bread and"}) {
    Request r;
    r.prompt.tokens = l.tok->encode(prompt, true, false);
    r.max_tokens = 12;
    r.sampling.temperature = 0;
    // End-of-generation tokens banned: every sequence runs its 12 steps
    // (this random model often picks one first).
    for (const int32_t id : l.tok->eog_ids())
      r.sampling.logit_bias[id] = -std::numeric_limits<float>::infinity();
    rs.push_back(r);
  }
  ThreadPool pool(2);
  std::vector<std::vector<int32_t>> alone;
  for (const Request& r : rs) {
    BatchOptions o;
    o.n_slots = 1;
    BatchEngine one(*l.model, *l.tok, o, pool);
    alone.push_back(greedy_tokens(one, {r}).front());
  }
  BatchOptions o;
  o.n_slots = 3;  // the fourth joins when one ends
  o.prefill_chunk = 5;
  BatchEngine together(*l.model, *l.tok, o, pool);
  const auto batched = greedy_tokens(together, rs);
  for (size_t i = 0; i < rs.size(); ++i) {
    EXPECT_EQ(alone[i].size(), 12u) << "request " << i;
    EXPECT_EQ(batched[i], alone[i]) << "request " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(SmallLlama, BatchQuant, ::testing::Values("Q4_1", "Q5_1", "IQ4_NL"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace slm::engine
