// slm eval end to end: perplexity, the save/compare round trip through files,
// multiple choice from JSONL and the bzip2 HellaSwag fixture, and clear
// refusals of bad input.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "base/thread_pool.h"
#include "cli/run_cmd.h"
#include "eval/perplexity.h"
#include "eval_fixtures.h"

namespace slm::test {
namespace {

std::string model_arg() {
  return " --model " + sh_quote(fixture(kStoriesModel));
}
std::string text_arg() {
  return " --file " + sh_quote(fixture(kStoriesText));
}

nlohmann::json json_of(const CmdResult& r) {
  EXPECT_EQ(r.code, 0) << r.err;
  return nlohmann::json::parse(r.out);
}

TEST(EvalCli, PerplexityAgreesWithTheLibrary) {
  SLM_REQUIRE_STORIES();
  const nlohmann::json j =
      json_of(run_slm("eval" + model_arg() + text_arg() + " -c 128 -t 2 --json"));
  const auto& st = stories();
  eval::PerplexityOptions o;
  o.n_ctx = 128;
  ThreadPool pool(1);
  const auto r =
      eval::perplexity(*st.model, st.tok.encode(st.text, true, false), st.tok.bos(), o, pool);
  EXPECT_NEAR(j["perplexity"].get<double>(), r.nll.ppl(), 1e-6 * r.nll.ppl());
  EXPECT_EQ(j["scored"].get<int64_t>(), r.nll.n);
  EXPECT_GT(j["perplexity_stderr"].get<double>(), 0.0);
  EXPECT_GT(j["tokens_per_second"].get<double>(), 0.0);
  const CmdResult text = run_slm("eval" + model_arg() + text_arg() + " -c 128");
  EXPECT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("perplexity: "), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(" +/- "), std::string::npos) << text.out;
  const CmdResult long_ctx = run_slm("eval" + model_arg() + text_arg() + " -c 256");
  EXPECT_NE(long_ctx.code, 0);
  EXPECT_NE(long_ctx.err.find("--allow-long-context"), std::string::npos) << long_ctx.err;
}

TEST(EvalCli, SaveThenCompareLogits) {
  SLM_REQUIRE_STORIES();
  const std::string dir = temp_dir(), saved = dir + "/base.topk";
  const CmdResult s =
      run_slm("eval" + model_arg() + text_arg() + " -c 64 --save-logits " + saved + " --top-k 8");
  ASSERT_EQ(s.code, 0) << s.err;
  const nlohmann::json j = json_of(
      run_slm("eval" + model_arg() + text_arg() + " -c 64 --compare-logits " + saved + " --json"));
  EXPECT_LT(j["compare"]["kl_max"].get<double>(), 1e-5);
  EXPECT_EQ(j["compare"]["same_top1"].get<double>(), 1.0);
  EXPECT_NEAR(j["compare"]["perplexity_ratio"].get<double>(), 1.0, 1e-5);
  const CmdResult other_ctx =
      run_slm("eval" + model_arg() + text_arg() + " -c 128 --compare-logits " + saved);
  EXPECT_NE(other_ctx.code, 0);
  EXPECT_NE(other_ctx.err.find("saved with -c 64"), std::string::npos) << other_ctx.err;
  std::ofstream(dir + "/garbage.topk") << "SLMTOPK but not really a logits file at all, just text";
  const CmdResult bad = run_slm("eval" + model_arg() + text_arg() + " -c 64 --compare-logits " +
                                dir + "/garbage.topk");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("not a valid slm logits file"), std::string::npos) << bad.err;
}

TEST(EvalCli, MultipleChoice) {
  SLM_REQUIRE_STORIES();
  const std::string dir = temp_dir();
  std::ofstream(dir + "/c.jsonl") << "{\"context\": \"Once upon a time, there was a little girl "
                                     "named\", \"endings\": [\"Lily.\", "
                                     "\"Xq7 zzv plmk.\"], \"label\": 0}\n"
                                     "{\"context\": \"She loved to play outside in the\", "
                                     "\"endings\": [\"qqq zzz.\", \"park.\"], \"label\": 1}\n";
  const nlohmann::json j =
      json_of(run_slm("eval" + model_arg() + " --choices " + dir + "/c.jsonl --json"));
  EXPECT_EQ(j["tasks"].get<int>(), 2);
  EXPECT_EQ(j["acc"]["value"].get<double>(), 1.0);
  EXPECT_EQ(j["acc_norm_tokens"]["value"].get<double>(), 1.0);
  EXPECT_EQ(j["acc_norm_chars"]["value"].get<double>(), 1.0);

  std::ofstream(dir + "/bad.txt") << "ctx\n1\na\nb\nc\nd\nctx\n7\na\nb\nc\nd\n";
  const CmdResult bad = run_slm("eval" + model_arg() + " --hellaswag " + dir + "/bad.txt");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("bad.txt:8:"), std::string::npos) << bad.err;
  const CmdResult two = run_slm("eval" + model_arg() + " --choices " + dir + "/c.jsonl --file x");
  EXPECT_NE(two.code, 0);
}

TEST(EvalCli, HellaSwagFixtureReadCompressed) {
  SLM_REQUIRE_STORIES();
  SLM_REQUIRE_FIXTURE("eval/hellaswag_val_full.txt.bz2");
  const nlohmann::json j =
      json_of(run_slm("eval" + model_arg() + " --hellaswag " +
                      sh_quote(fixture("eval/hellaswag_val_full.txt.bz2")) +
                      " --tasks 40 --json --allow-long-context"));  // some tasks exceed the
                                                                    // 128-token training context
  EXPECT_EQ(j["tasks"].get<int>(), 40);
  for (const char* m : {"acc", "acc_norm_tokens", "acc_norm_chars"}) {
    EXPECT_GE(j[m]["value"].get<double>(), 0.0);
    EXPECT_LE(j[m]["value"].get<double>(), 1.0);
    EXPECT_GT(j[m]["stderr"].get<double>(), 0.0);
  }
}

}  // namespace
}  // namespace slm::test
