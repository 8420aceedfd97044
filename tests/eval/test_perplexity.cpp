// Perplexity: window plans and statistics by hand, and stories260K against an
// independent direct computation from Session::feed logits in long double.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "eval/logprob.h"
#include "eval/perplexity.h"
#include "eval_fixtures.h"
#include "model/session.h"

namespace slm::eval {
namespace {

TEST(EvalPlan, LlamaCppChunksScoreTheSecondHalf) {
  PerplexityOptions o;
  o.n_ctx = 4;
  const std::vector<Window> w = plan_windows(11, o);  // 2 full chunks, 3 tokens left over
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].begin, 0);
  EXPECT_EQ(w[0].end, 4);
  EXPECT_EQ(w[1].begin, 4);
  EXPECT_EQ(w[1].end, 8);
  for (const Window& x : w) {
    EXPECT_TRUE(x.bos_first);
    EXPECT_EQ(x.first_row, 2);   // n_ctx / 2
    EXPECT_EQ(x.n_scored(), 1);  // n_ctx - n_ctx/2 - 1, as llama-perplexity counts
  }
  o.n_ctx = 5;
  EXPECT_EQ(plan_windows(10, o)[0].n_scored(), 2);  // rows 2, 3 predict tokens 3, 4
  o.max_chunks = 1;
  EXPECT_EQ(plan_windows(100, o).size(), 1u);
}

TEST(EvalPlan, StrideScoresEveryTokenOnce) {
  PerplexityOptions o;
  o.n_ctx = 4;
  o.stride = 2;
  const std::vector<Window> w = plan_windows(10, o);
  ASSERT_EQ(w.size(), 4u);
  const int64_t begin[] = {0, 2, 4, 6}, first[] = {0, 1, 1, 1}, scored[] = {3, 2, 2, 2};
  std::vector<int> seen(10, 0);
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(w[i].begin, begin[i]);
    EXPECT_EQ(w[i].end, begin[i] + 4);
    EXPECT_EQ(w[i].first_row, first[i]);
    EXPECT_EQ(w[i].n_scored(), scored[i]);
    EXPECT_FALSE(w[i].bos_first);
    for (int64_t r = w[i].first_row; r < w[i].end - w[i].begin - 1; ++r) ++seen[w[i].begin + r + 1];
  }
  EXPECT_EQ(seen[0], 0);
  for (int t = 1; t < 10; ++t) EXPECT_EQ(seen[t], 1) << "token " << t;
  o.stride =
      4;  // stride = n_ctx: disjoint windows; a window's first token has no context to score it
  int64_t total = 0;
  for (const Window& x : plan_windows(10, o)) total += x.n_scored();
  EXPECT_EQ(total, 3 + 3 + 1);
}

TEST(EvalPlan, RefusesBadOptions) {
  PerplexityOptions o;
  o.n_ctx = 8;
  EXPECT_THROW(plan_windows(7, o), Error);  // shorter than one chunk
  o.stride = 9;
  EXPECT_THROW(plan_windows(100, o), Error);
  o.n_ctx = 1;
  o.stride = 0;
  EXPECT_THROW(plan_windows(100, o), Error);
}

TEST(EvalLogprob, HandComputedRow) {
  const std::vector<float> row = {0.0f, 0.0f,
                                  static_cast<float>(std::log(2.0))};  // probs 1/4, 1/4, 1/2
  const double log_z = log_normalizer(row);
  EXPECT_NEAR(log_z, std::log(4.0), 1e-7);
  EXPECT_NEAR(row[2] - log_z, -std::log(2.0), 1e-7);
  EXPECT_EQ(argmax(row), 2);
  std::vector<int32_t> top;
  top_k(row, 2, top);
  EXPECT_EQ(top, (std::vector<int32_t>{2, 0}));       // tie between 0 and 1: lower id first
  const std::vector<float> big = {1000.0f, 1000.0f};  // no overflow
  EXPECT_NEAR(log_normalizer(big), 1000.0 + std::log(2.0), 1e-9);
}

TEST(EvalLogprob, PerplexityAndDeltaMethodStderr) {
  NllStats s;
  for (double v : {1.0, 2.0, 3.0}) s.add(v);
  EXPECT_DOUBLE_EQ(s.mean(), 2.0);
  EXPECT_NEAR(s.ppl(), std::exp(2.0), 1e-12);
  // var = E[v^2] - E[v]^2 = 14/3 - 4 = 2/3; se = ppl * sqrt(var / (n - 1)).
  EXPECT_NEAR(s.ppl_stderr(), std::exp(2.0) * std::sqrt((2.0 / 3.0) / 2.0), 1e-12);
  NllStats one;
  one.add(1.0);
  EXPECT_EQ(one.ppl_stderr(), 0.0);
}

// The reference: each window fed in one Session::feed call, log-softmax in long double.
NllStats direct(const model::Model& m, const std::vector<int32_t>& toks, int32_t bos,
                const PerplexityOptions& o) {
  NllStats s;
  ThreadPool pool(1);
  const int64_t n_vocab = m.config().n_vocab;
  for (const Window& w : plan_windows(static_cast<int64_t>(toks.size()), o)) {
    std::vector<int32_t> in(toks.begin() + w.begin, toks.begin() + w.end);
    if (w.bos_first) in[0] = bos;
    model::SessionOptions so;
    so.n_ctx = o.n_ctx;
    model::Session session(m, so);
    std::vector<float> logits;
    session.feed(in, pool, &logits);
    for (int64_t r = w.first_row; r + 1 < static_cast<int64_t>(in.size()); ++r) {
      const float* row = logits.data() + r * n_vocab;
      long double z = 0;
      for (int64_t v = 0; v < n_vocab; ++v) z += std::exp(static_cast<long double>(row[v]));
      s.add(static_cast<double>(std::log(z) - static_cast<long double>(row[in[r + 1]])));
    }
  }
  return s;
}

TEST(EvalPerplexity, Stories260KMatchesDirectComputation) {
  SLM_REQUIRE_STORIES();
  const auto& st = test::stories();
  const std::vector<int32_t> toks = st.tok.encode(st.text, true, false);
  ASSERT_GE(toks.size(), 256u);
  ASSERT_EQ(toks[0], *st.tok.bos());
  for (int64_t stride : {int64_t{0}, int64_t{48}}) {
    PerplexityOptions o;
    o.n_ctx = 128;
    o.stride = stride;
    const NllStats ref = direct(*st.model, toks, *st.tok.bos(), o);
    for (int64_t n_batch : {int64_t{512}, int64_t{7}}) {  // one piece, and many pieces per window
      o.n_batch = n_batch;
      ThreadPool pool(2);
      int64_t rows = 0;
      const PerplexityResult r =
          perplexity(*st.model, toks, st.tok.bos(), o, pool, [&](int64_t i, auto, int32_t, double) {
            EXPECT_EQ(i, rows);
            ++rows;
          });
      EXPECT_EQ(r.nll.n, ref.n);
      EXPECT_EQ(rows, ref.n);
      EXPECT_NEAR(r.nll.ppl(), ref.ppl(), 1e-4 * ref.ppl())
          << "stride " << stride << " batch " << n_batch;
      EXPECT_NEAR(r.nll.ppl_stderr(), ref.ppl_stderr(), 1e-3 * ref.ppl_stderr());
      // A trained model on its own greedy text: low perplexity, far below the 512-token vocabulary.
      EXPECT_GT(r.nll.ppl(), 1.0);
      EXPECT_LT(r.nll.ppl(), 10.0);
    }
  }
  PerplexityOptions o;
  o.n_ctx = 128;
  ThreadPool pool(1);
  const PerplexityResult r = perplexity(*st.model, toks, st.tok.bos(), o, pool);
  EXPECT_EQ(r.n_windows, static_cast<int64_t>(toks.size()) / 128);
  EXPECT_EQ(r.nll.n, r.n_windows * (128 - 64 - 1));
  EXPECT_EQ(r.n_fed, r.n_windows * 128);
}

TEST(EvalPerplexity, RefusesTokensOutsideTheVocabulary) {
  SLM_REQUIRE_STORIES();
  const auto& st = test::stories();
  std::vector<int32_t> toks(16, 5);
  toks[9] = 100000;
  PerplexityOptions o;
  o.n_ctx = 16;
  ThreadPool pool(1);
  EXPECT_THROW(perplexity(*st.model, toks, 1, o, pool), Error);
}

}  // namespace
}  // namespace slm::eval
