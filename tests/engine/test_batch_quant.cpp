// Batched decoding on quantized models whose matrices take the packed tiles
// (Q4_1, Q5_1, IQ4_NL: packed_legacy2.cpp where the CPU has AVX-512 VNNI):
// several greedy sequences stepped together, their prompts fed in chunks
// while others decode, give each the tokens it gives alone (a token's tile
// bits do not depend on how many tokens share the weight pass).
#include <gtest/gtest.h>

#include <limits>

#include "base/thread_pool.h"
#include "common/batch_outcomes.h"
#include "common/fixtures.h"
#include "common/loaded_model.h"
#include "engine/batch.h"
#include "tokenizer/tokenizer.h"

namespace slm::engine {
namespace {

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
  BatchOptions o;
  o.n_slots = 3;  // the fourth joins when one ends
  o.prefill_chunk = 5;
  const test::AloneAndTogether run = test::alone_and_together(l, rs, pool, o);
  test::expect_together_as_alone(run, 12);
  for (size_t i = 0; i < rs.size(); ++i)
    EXPECT_EQ(run.alone[i].tokens.size(), 12u) << "request " << i;
}

INSTANTIATE_TEST_SUITE_P(SmallLlama, BatchQuant, ::testing::Values("Q4_1", "Q5_1", "IQ4_NL"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace slm::engine
