// slm train end to end: a tiny model trained from scratch on a generated
// corpus (stories260K's tokenizer) brings its loss, and that on held-out text
// of the same pattern, far below the corpus's unigram entropy (computed here
// from `slm tokenize`), and the model it writes loads in `slm run` and
// continues a prompt in the corpus's pattern.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/run_cmd.h"
#include "common/fixtures.h"

namespace slm::test {
namespace {

// Sentences of one pattern with random names, places, animals and
// adjectives (an LCG from seed, so the corpus is the same on every run).
std::string corpus(uint64_t seed, int n_sentences) {
  const std::vector<std::string> names = {"Lily", "Tom", "Ben", "Sue", "Max", "Anna", "Sam", "Mia"};
  const std::vector<std::string> places = {"park", "shop", "lake", "school", "garden", "beach"};
  const std::vector<std::string> animals = {"dog", "cat", "bird", "fish", "frog"};
  const std::vector<std::string> adjs = {"big", "small", "happy", "red", "funny", "soft"};
  uint64_t s = seed;
  const auto pick = [&](const std::vector<std::string>& v) -> const std::string& {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return v[(s >> 33) % v.size()];
  };
  std::string out;
  for (int i = 0; i < n_sentences; ++i) {
    const std::string& n = pick(names);
    const std::string& p = pick(places);
    const std::string& a = pick(animals);
    const std::string& d = pick(adjs);
    out += n + " went to the " + p + " with the " + a + ". The " + a + " was " + d + ". " + n +
           " was happy.\n";
  }
  return out;
}

TEST(CliTrain, FromScratchBeatsUnigramEntropyAndRuns) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string tok_model = sh_quote(fixture("models/stories260K.gguf"));
  const std::string dir = temp_dir();
  const std::string data = dir + "/corpus.txt";
  std::ofstream(data, std::ios::binary) << corpus(12345, 300);
  const std::string held_out = dir + "/held_out.txt";
  std::ofstream(held_out, std::ios::binary) << corpus(777, 40);

  // Unigram entropy (nats per token) of the corpus as training tokenizes it.
  const CmdResult ids = run_slm("tokenize " + tok_model + " --bos --ids --file " + data);
  ASSERT_EQ(ids.code, 0) << ids.err;
  std::map<int, int64_t> counts;
  int64_t n = 0;
  std::istringstream in(ids.out);
  for (int id; in >> id; ++n) ++counts[id];
  ASSERT_GT(n, 5000);
  double unigram = 0;
  for (const auto& [id, k] : counts) {
    const double p = static_cast<double>(k) / static_cast<double>(n);
    unigram -= p * std::log(p);
  }

  const std::string out = dir + "/scratch.gguf";
  const CmdResult r = run_slm("train --shape tiny --tokenizer-from " + tok_model + " --data " +
                              data + " -o " + out + " --eval-data " + held_out +
                              " -c 64 --batch-tokens 512 --epochs 15 --seed 3 -t 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<double> losses;
  double eval_loss = -1;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    ASSERT_TRUE(j.contains("step") && j.contains("loss")) << line;
    losses.push_back(j["loss"]);
    if (j.contains("eval_loss")) eval_loss = j["eval_loss"];
  }
  ASSERT_GT(losses.size(), 50u);
  double last = 0;
  for (size_t i = losses.size() - 5; i < losses.size(); ++i) last += losses[i] / 5;
  std::printf(
      "[ train    ] unigram entropy %.3f nats/token; loss %.3f at the start, %.3f at the end, "
      "%.3f on held-out text\n",
      unigram, losses.front(), last, eval_loss);
  EXPECT_GT(losses.front(), unigram);  // random init: about ln(vocab)
  EXPECT_LT(last, 0.3 * unigram) << r.err;
  EXPECT_GT(eval_loss, 0);
  EXPECT_LT(eval_loss, 0.3 * unigram) << r.err;  // the pattern, not the sentences, was learnt
  EXPECT_NE(r.err.find("tok/s"), std::string::npos) << r.err;

  const CmdResult run = run_slm("run " + sh_quote(out) + " -p 'Tom went to the' --temp 0 -n 24");
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_NE(run.out.find(" with the "), std::string::npos) << run.out;
  std::filesystem::remove_all(dir);
}

TEST(CliTrain, RefusesBadShapes) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string dir = temp_dir();
  const std::string data = dir + "/corpus.txt";
  std::ofstream(data, std::ios::binary) << corpus(12345, 300);
  const std::string common = " --tokenizer-from " + sh_quote(fixture("models/stories260K.gguf")) +
                             " --data " + data + " -o " + dir + "/m.gguf";
  CmdResult r = run_slm("train --n-embd 64" + common);  // no --shape and too few dimensions
  EXPECT_EQ(r.code, 2) << r.err;
  r = run_slm("train --n-embd 60 --n-layer 1 --n-head 8 --n-ff 32" + common);  // 60 / 8 heads
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--n-head"), std::string::npos) << r.err;
  r = run_slm("train --shape tiny --n-head-kv 3" + common);  // 4 heads over 3 KV heads
  EXPECT_EQ(r.code, 2) << r.err;
  r = run_slm("train --n-embd 16384 --n-layer 256 --n-head 128 --n-ff 1048576" +
              common);  // refused before allocating
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("too large"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/m.gguf"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace slm::test
