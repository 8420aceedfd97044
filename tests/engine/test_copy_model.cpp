// The copy model (bench/copy_model.h) at small dimensions, with the
// Llama 2 tokenizer (tiny-llama.gguf): greedy decoding continues a passage it has seen
// verbatim (the induction head works through RoPE, RMSNorm, GQA and Q8_0 /
// Q4_0 / Q6_K weights), prompt-lookup drafting gives the same tokens, is
// mostly accepted, and needs fewer forward passes than tokens. This is what
// lets bench/spec_bench.sh time drafting on a TinyLlama-sized copy model.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "common/fixtures.h"
#include "copy_model.h"
#include "engine/batch.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace slm::engine {
namespace {

constexpr const char* kTokenizerFixture = "models/tiny-llama.gguf";

// No two-token sequence repeats in it, so "the token that followed the
// latest occurrence of the current two" is always the passage's next token.
constexpr const char* kPassage =
    "Once upon a time, a small girl named Lily found a shiny red ball under an old tree. She ran "
    "home "
    "quickly and showed it to her mom, who smiled. Later they played together until dark.";

struct Outcome {
  std::vector<int32_t> tokens;
  int64_t drafted = 0, accepted = 0;
  int steps = 0;  // forward passes, the prompt's one included
};

Outcome generate(const model::Model& m, const tokenizer::Tokenizer& tok, ThreadPool& pool,
                 const std::vector<int32_t>& prompt, int64_t n, int draft_max) {
  BatchOptions o;
  o.n_slots = 1;
  o.prefill_chunk = 512;  // the prompt in one step
  o.draft_max = draft_max;
  o.draft_by_speed = false;  // drafts whenever found, whatever the machine's load
  BatchEngine engine(m, tok, o, pool);
  Request r;
  r.prompt.tokens = prompt;
  r.sampling.temperature = 0;
  r.max_tokens = n;
  Outcome run;
  engine.admit(engine.make_sequence(std::move(r), [&run](Update&& u) {
    run.tokens.insert(run.tokens.end(), u.tokens.begin(), u.tokens.end());
    if (u.done) {
      EXPECT_NE(u.finish, FinishReason::kError) << u.error;
      run.drafted = u.n_drafted;
      run.accepted = u.n_accepted;
    }
  }));
  while (engine.n_active() > 0) {
    engine.step();
    ++run.steps;
  }
  return run;
}

TEST(CopyModel, ContinuesAPassageAndDraftsAreAccepted) {
  SLM_REQUIRE_FIXTURE(kTokenizerFixture);
  const auto tok_file = gguf::File::open(test::fixture(kTokenizerFixture));
  bench::CopyModelShape s;  // one value head; a filler layer; every type the big model uses
  s.n_embd = 256;
  s.n_layer = 3;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_ff = 256;
  s.n_ctx = 512;
  ThreadPool pool(2);
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("slm_copy_model_" + std::to_string(::getpid()) + ".gguf"))
                               .string();
  bench::copy_model_writer(s, *tok_file, pool).write(path);
  const auto m = model::Model::load(path);  // mapped: the name can go now
  std::filesystem::remove(path);
  const auto tok = tokenizer::Tokenizer::from_gguf(m->file());

  const std::vector<int32_t> passage = tok.encode(kPassage, false, false);
  ASSERT_GT(passage.size(), 40u);
  std::map<std::pair<int32_t, int32_t>, int> bigrams;
  for (size_t i = 0; i + 1 < passage.size(); ++i)
    ASSERT_EQ(++bigrams[std::make_pair(passage[i], passage[i + 1])], 1)
        << "a repeated pair at " << i;
  // BOS, the passage, other text, then the passage's first cue tokens.
  const size_t cue = 6;
  std::vector<int32_t> prompt = {*tok.bos()};
  prompt.insert(prompt.end(), passage.begin(), passage.end());
  const std::vector<int32_t> gap = tok.encode(" The end. Now again:", false, false);
  prompt.insert(prompt.end(), gap.begin(), gap.end());
  prompt.insert(prompt.end(), passage.begin(), passage.begin() + cue);
  const std::vector<int32_t> want(passage.begin() + cue, passage.end());
  const auto n = static_cast<int64_t>(want.size());

  const Outcome plain = generate(*m, tok, pool, prompt, n, 0);
  EXPECT_EQ(plain.tokens, want) << "got: " << tok.decode(plain.tokens);
  EXPECT_EQ(plain.steps, n);  // the prompt's step gives the first token, then one per token

  const Outcome drafted = generate(*m, tok, pool, prompt, n, 8);
  EXPECT_EQ(drafted.tokens, plain.tokens);
  // Measured: every draft after the cue is the passage, and accepted (a
  // floor below 1 leaves room for a changed draft-length rule).
  ASSERT_GT(drafted.drafted, 0);
  const double acceptance =
      static_cast<double>(drafted.accepted) / static_cast<double>(drafted.drafted);
  EXPECT_GE(acceptance, 0.9) << drafted.accepted << "/" << drafted.drafted;
  EXPECT_LT(drafted.steps, n / 3) << "forward passes for " << n << " tokens";
  std::printf(
      "copy model: %lld tokens, acceptance %lld/%lld, %d forward passes drafted, %d plain\n",
      static_cast<long long>(n), static_cast<long long>(drafted.accepted),
      static_cast<long long>(drafted.drafted), drafted.steps, plain.steps);

  // permute: the same model emitting pi(copied token) quotes nothing; drafts
  // (from the prompt's own pairs) are rejected and greedy output is unchanged.
  s.permute = true;
  bench::copy_model_writer(s, *tok_file, pool).write(path);
  const auto pm = model::Model::load(path);
  std::filesystem::remove(path);
  const Outcome pplain = generate(*pm, tok, pool, prompt, n, 0);
  const Outcome pdrafted = generate(*pm, tok, pool, prompt, n, 8);
  EXPECT_EQ(pdrafted.tokens, pplain.tokens);
  EXPECT_NE(pplain.tokens[0], want[0]);
  EXPECT_EQ(pdrafted.accepted, 0) << pdrafted.drafted << " drafted";
  std::printf("permuted: acceptance %lld/%lld, %d forward passes drafted\n",
              static_cast<long long>(pdrafted.accepted), static_cast<long long>(pdrafted.drafted),
              pdrafted.steps);
}

TEST(CopyModel, RefusesAShapeThatCannotHoldIt) {
  SLM_REQUIRE_FIXTURE(kTokenizerFixture);
  const auto tok_file = gguf::File::open(test::fixture(kTokenizerFixture));
  ThreadPool pool(1);
  bench::CopyModelShape s;
  s.n_embd = 128;  // < 1 + 2 * 24 + 2 * 64
  EXPECT_THROW(bench::copy_model_writer(s, *tok_file, pool), Error);
  s = {};
  s.n_layer = 1;
  EXPECT_THROW(bench::copy_model_writer(s, *tok_file, pool), Error);
}

}  // namespace
}  // namespace slm::engine
