// End-to-end tests of slm run, logits and info: exact greedy text of the real
// stories260K model, seeded sampling across thread counts, stop strings, and
// the one-line error of every bad-input case.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/run_cmd.h"
#include "common/fixtures.h"
#include "gguf/writer.h"

namespace slm::test {
namespace {

std::string stories() {
  return sh_quote(fixture("models/stories260K.gguf"));
}

TEST(Run, Stories260KGreedyMatchesExpectedTextByteForByte) {
  SLM_REQUIRE_FIXTURE("stories260K/expected_greedy_t0_256.txt");
  const CmdResult r = run_slm("run --model " + stories() +
                              " -p '' --temp 0 -n 256 -c 512 --allow-long-context -t 2");
  ASSERT_EQ(r.code, 0) << r.err;
  // The generated text byte for byte, then the newline slm run ends its output with.
  EXPECT_EQ(r.out, slurp(fixture("stories260K/expected_greedy_t0_256.txt")) + "\n");
  EXPECT_NE(r.err.find("tok/s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("peak memory"), std::string::npos) << r.err;
}

TEST(Run, SeededSamplingIsTheSameAtOneAndTwoThreads) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string cmd =
      "run --model " + stories() + " -p 'Once upon a time' --temp 0.8 --seed 42 -n 100";
  const CmdResult a = run_slm(cmd + " -t 1");
  const CmdResult b = run_slm(cmd + " -t 2");
  const CmdResult c = run_slm(cmd + " -t 2");
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_GT(a.out.size(), 100u);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(b.out, c.out);
  const CmdResult other =
      run_slm("run --model " + stories() + " -p 'Once upon a time' --temp 0.8 --seed 43 -n 100");
  EXPECT_NE(a.out, other.out);  // the seed matters
}

TEST(Run, StopStringEndsTheTextAndIsNotPrinted) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const CmdResult r =
      run_slm("run --model " + stories() + " -p '' --temp 0 -n 100 --stop 'Lily' --stop 'zzz'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Once upon a time, there was a little girl named \n");
}

// A context beyond the training length names the switch that allows it, on
// every command that takes a context.
TEST(Run, LongContextErrorNamesTheFlag) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  for (const std::string& cmd :
       {"run " + stories() + " -p hi -c 512", "serve " + stories() + " -c 512 --port 0"}) {
    const CmdResult r = run_slm(cmd);
    EXPECT_EQ(r.code, 1) << cmd;
    EXPECT_NE(r.err.find("--allow-long-context"), std::string::npos) << cmd << ": " << r.err;
  }
  EXPECT_EQ(run_slm("run " + stories() + " -p hi -c 256 -n 4 --allow-long-context").code, 0);
}

TEST(Run, JsonOutput) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const CmdResult r = run_slm("run --model " + stories() + " -p 'Once upon' --temp 0 -n 12 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tokens"].size(), 12u);
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 1);
  EXPECT_FALSE(j["text"].get<std::string>().empty());
  EXPECT_TRUE(j["timings"].contains("ttft_ms"));
  // Byte counts are integers, not 12075008.0.
  EXPECT_TRUE(j["timings"]["peak_rss_bytes"].is_number_integer()) << j["timings"].dump();
  EXPECT_GT(j["timings"]["peak_rss_bytes"].get<int64_t>(), 0);
}

TEST(Run, FullContextIsReportedNotTruncated) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const CmdResult r = run_slm("run --model " + stories() + " -p '' --temp 0 -c 32");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("context of 32 tokens is full"), std::string::npos) << r.err;
  const CmdResult s =
      run_slm("run --model " + stories() + " -p '' --temp 0 -c 32 -n 80 --context-shift --json");
  ASSERT_EQ(s.code, 0) << s.err;
  EXPECT_EQ(nlohmann::json::parse(s.out)["tokens"].size(), 80u);
}

// Every error: one line naming the file or field, exit code 1.
void expect_error(const CmdResult& r, const std::string& fragment) {
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(RunErrors, MissingFile) {
  expect_error(run_slm("run --model /nonexistent/model.gguf -p hi"), "/nonexistent/model.gguf");
}

TEST(RunErrors, NotAGgufFile) {
  const std::string p = temp_dir() + "/notes.gguf";
  std::ofstream(p) << "this is not a model at all";
  expect_error(run_slm("run --model " + sh_quote(p) + " -p hi"), "not a GGUF file");
}

TEST(RunErrors, TruncatedFile) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string whole = slurp(fixture("models/stories260K.gguf"));
  const std::string p = temp_dir() + "/cut.gguf";
  std::ofstream(p, std::ios::binary) << whole.substr(0, whole.size() / 2);
  expect_error(run_slm("run --model " + sh_quote(p) + " -p hi"), "runs past the end of the file");
  const std::string q = temp_dir() + "/cut2.gguf";
  std::ofstream(q, std::ios::binary) << whole.substr(0, 100);
  expect_error(run_slm("run --model " + sh_quote(q) + " -p hi"), "truncated");
}

TEST(RunErrors, UnsupportedArchitectureAndType) {
  gguf::Writer w;
  w.add_string("general.architecture", "rwkv6");
  const std::string p = temp_dir() + "/rwkv.gguf";
  w.write(p);
  expect_error(run_slm("run --model " + sh_quote(p) + " -p hi"),
               "unsupported architecture 'rwkv6'");
  // A Q8_1 tensor: a ggml activation type no model file should carry.
  gguf::Writer t;
  t.add_string("general.architecture", "llama");
  t.add_tensor("token_embd.weight", DType::F32, {1}, std::vector<uint8_t>(4));
  std::string bytes;
  {
    const auto v = t.to_bytes();
    bytes.assign(v.begin(), v.end());
  }
  // Rewrite the tensor's type id (F32 = 0) to Q8_1 = 9 in place.
  const size_t at = bytes.find("token_embd.weight") + 17 + 4 + 8;
  bytes[at] = 9;
  const std::string q = temp_dir() + "/q81.gguf";
  std::ofstream(q, std::ios::binary) << bytes;
  expect_error(run_slm("run --model " + sh_quote(q) + " -p hi"),
               "unsupported tensor type 9 (Q8_1)");
}

TEST(RunErrors, PromptLongerThanContext) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  std::string prompt;
  for (int i = 0; i < 60; ++i) prompt += "Once upon a time there was a cat. ";
  expect_error(run_slm("run --model " + stories() + " -c 64 -p " + sh_quote(prompt)),
               "longer than the context of 64");
}

// A usage error: one line naming the option as typed, pointing at --help, exit code 2.
void expect_usage_error(const CmdResult& r, const std::string& fragment) {
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("; see `slm run --help`\n"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(RunErrors, BadOptionValues) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  expect_usage_error(run_slm("run --model " + stories() + " -p hi --temp abc"), "--temp");
  // Values out of range are usage errors too, named as typed.
  expect_usage_error(run_slm("run --model " + stories() + " -p hi --top-p -1"),
                     "--top-p must be in [0, 1]");
  expect_usage_error(run_slm("run --model " + stories() + " -p hi --min-p 2"),
                     "--min-p must be in [0, 1]");
  expect_usage_error(run_slm("run --model " + stories() + " -p hi --logit-bias 99999=1"),
                     "--logit-bias");
  expect_usage_error(run_slm("run --model " + stories() + " -p hi --kv-type q4"),
                     "--kv-type: expected f32, f16 or q8_0");
  expect_usage_error(run_slm("run --model " + stories() + " -p hi --draft tree"),
                     "--draft: expected none, ngram or model");
  expect_usage_error(run_slm("run --model " + stories() + " -p hi --draft model"),
                     "--draft model needs --draft-model M");
  expect_usage_error(
      run_slm("run --model " + stories() + " -p hi --draft ngram --draft-model " + stories()),
      "it cannot go with --draft ngram");
  expect_usage_error(run_slm("run --model " + stories() + " -p hi --bogus"),
                     "unknown option --bogus");
}

// --draft-model: greedy output is plain decoding's, the drafts are counted in
// the statistics line, and a draft model of another vocabulary is refused.
TEST(Run, DraftModelKeepsGreedyOutput) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const std::string cmd = "run --model " + stories() + " -p 'Once upon a time' -n 60 --temp 0 -t 2";
  const CmdResult plain = run_slm(cmd);
  ASSERT_EQ(plain.code, 0) << plain.err;
  const CmdResult drafted = run_slm(cmd + " --draft-model " + stories() + " --draft-max 4");
  ASSERT_EQ(drafted.code, 0) << drafted.err;
  EXPECT_EQ(drafted.out, plain.out);
  EXPECT_NE(drafted.err.find(" accepted"), std::string::npos) << drafted.err;
  expect_error(run_slm(cmd + " --draft-model " + sh_quote(fixture("models/tiny-llama.gguf"))),
               "the draft model's tokenizer differs from the model's: 32000 tokens against 512");
}

TEST(RunErrors, NoModelAnywhereSaysWhatToRun) {
  // A clean environment: no SLM_MODEL and an empty store.
  const std::string home = temp_dir();
  setenv("SLM_HOME", home.c_str(), 1);
  unsetenv("SLM_MODEL");
  const CmdResult r = run_slm("run -p hi");
  unsetenv("SLM_HOME");
  expect_error(r, "slm pull");
}

TEST(Logits, WritesEveryRowAndRefusesBadInput) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string out = temp_dir() + "/logits.f32";
  const CmdResult r = run_slm("logits --model " + stories() + " --tokens '1 403 407' --out " +
                              sh_quote(out) + " -t 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(out).size(), 3u * 512u * 4u);
  const CmdResult top = run_slm("logits --model " + stories() + " --tokens '1 403'");
  ASSERT_EQ(top.code, 0) << top.err;
  EXPECT_NE(top.out.find("pos 1 (token 403):"), std::string::npos) << top.out;
  expect_error(run_slm("logits --model " + stories() + " --tokens '1 512'"), "token id 512");
  expect_error(run_slm("logits --model " + stories() + " --tokens ''"), "empty");
  expect_error(run_slm("logits --model " + stories() + " --tokens '1 x'"), "not a token id");
  std::string many;
  for (int i = 0; i < 129; ++i) many += "1 ";
  expect_error(run_slm("logits --model " + stories() + " --tokens " + sh_quote(many)),
               "exceed the context of 128");
}

TEST(Info, DescribesTheModel) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen3moe.gguf");
  const CmdResult r =
      run_slm("info --model " + sh_quote(fixture("models/tiny-qwen3moe.gguf")) + " -c 4096");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("architecture:  qwen3moe"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("experts:       8, 2 used"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("blk.0.ffn_gate_exps.weight"), std::string::npos);
  EXPECT_NE(r.out.find("[32, 24, 8]"), std::string::npos);
  EXPECT_NE(r.out.find("memory @ 4096 ctx"), std::string::npos);
}

// --json-schema / --grammar / --json-object constrain the output; a schema or
// grammar that does not compile is a usage error naming the file and place.
TEST(Run, OutputConstraints) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  const std::string model = fixture("models/tiny-qwen2.gguf");
  const std::string dir = temp_dir();
  {
    std::ofstream(dir + "/s.json")
        << R"({"type":"object","properties":{"n":{"type":"integer","minimum":1,"maximum":9},
      "c":{"enum":["red","blue"]}},"required":["n","c"],"additionalProperties":false})";
    std::ofstream(dir + "/g.gbnf") << "root ::= (\"yes\" | \"no\") \".\"\n";
    std::ofstream(dir + "/bad.json")
        << R"({"type":"object","properties":{"x":{"propertyNames":{}}}})";
    std::ofstream(dir + "/bad.gbnf") << "root ::= \"a\" b\n";
  }
  for (int seed = 1; seed <= 5; ++seed) {
    const CmdResult r = run_slm("run --model " + model + " -p hi -n 200 --seed " +
                                std::to_string(seed) + " --json --json-schema " + dir + "/s.json");
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    if (j["finish_reason"] != "stop") continue;
    const auto doc = nlohmann::json::parse(j["text"].get<std::string>());
    EXPECT_TRUE(doc["n"].is_number_integer() && doc["n"] >= 1 && doc["n"] <= 9) << doc;
    EXPECT_TRUE(doc["c"] == "red" || doc["c"] == "blue") << doc;
    EXPECT_EQ(doc.size(), 2u);
  }
  const CmdResult g = run_slm("run --model " + model + " -p hi -n 20 --grammar " + dir + "/g.gbnf");
  ASSERT_EQ(g.code, 0) << g.err;
  EXPECT_TRUE(g.out == "yes.\n" || g.out == "no.\n") << g.out;
  const CmdResult o =
      run_slm("run --model " + model + " -p hi -n 300 --seed 2 --json --json-object");
  ASSERT_EQ(o.code, 0) << o.err;
  const auto oj = nlohmann::json::parse(o.out);
  if (oj["finish_reason"] == "stop") {
    EXPECT_TRUE(nlohmann::json::parse(oj["text"].get<std::string>()).is_object());
  }

  const CmdResult bs =
      run_slm("run --model " + model + " -p hi --json-schema " + dir + "/bad.json");
  EXPECT_EQ(bs.code, 2);
  EXPECT_NE(bs.err.find("bad.json: json schema: /properties/x/propertyNames"), std::string::npos)
      << bs.err;
  const CmdResult bg = run_slm("run --model " + model + " -p hi --grammar " + dir + "/bad.gbnf");
  EXPECT_EQ(bg.code, 2);
  EXPECT_NE(bg.err.find("bad.gbnf:1:"), std::string::npos) << bg.err;
  const CmdResult both =
      run_slm("run --model " + model + " -p hi --json-object --grammar " + dir + "/g.gbnf");
  EXPECT_EQ(both.code, 2);
  const CmdResult missing =
      run_slm("run --model " + model + " -p hi --json-schema " + dir + "/none.json");
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("none.json"), std::string::npos) << missing.err;
}

// slm prune calibrate, then --sparsity: a zero level is the dense greedy
// text byte for byte, 0.25 still runs, another model is refused in one line.
TEST(Run, PruneCalibrateThenSparsity) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string text = sh_quote(fixture("stories260K/expected_greedy_t0_256.txt"));
  const std::string s0 = temp_dir() + "/s0.gguf", s25 = temp_dir() + "/s25.gguf";
  for (const auto& [level, out] : {std::pair<std::string, std::string>{"0", s0}, {"0.25", s25}}) {
    const CmdResult c = run_slm("prune calibrate --model " + stories() + " --data " + text +
                                " --sparsity " + level + " -o " + sh_quote(out) + " -t 1");
    ASSERT_EQ(c.code, 0) << c.err;
    EXPECT_NE(c.err.find("wrote"), std::string::npos) << c.err;
  }
  const std::string cmd = "run --model " + stories() + " -p 'Once upon a time' --temp 0 -n 40 -t 1";
  const CmdResult dense = run_slm(cmd);
  const CmdResult zero = run_slm(cmd + " --sparsity " + sh_quote(s0));
  ASSERT_EQ(dense.code, 0) << dense.err;
  ASSERT_EQ(zero.code, 0) << zero.err;
  EXPECT_EQ(zero.out, dense.out);
  EXPECT_EQ(run_slm(cmd + " --sparsity " + sh_quote(s25)).code, 0);
  // --head-sparsity prunes the output matrix's input too: a file with the
  // head's threshold runs and decodes differently; out of range is a usage error.
  const std::string sh = temp_dir() + "/sh.gguf";
  const CmdResult ch = run_slm("prune calibrate --model " + stories() + " --data " + text +
                               " --sparsity 0 --head-sparsity 0.5 -o " + sh_quote(sh) + " -t 1");
  ASSERT_EQ(ch.code, 0) << ch.err;
  EXPECT_NE(ch.err.find("head 0.50"), std::string::npos) << ch.err;
  const CmdResult head = run_slm(cmd + " --sparsity " + sh_quote(sh));
  ASSERT_EQ(head.code, 0) << head.err;
  EXPECT_NE(head.out, dense.out);
  EXPECT_EQ(run_slm("prune calibrate --model " + stories() + " --data " + text +
                    " --head-sparsity 1 -o " + sh_quote(sh) + " -t 1")
                .code,
            2);
  const CmdResult other = run_slm("run --model " + sh_quote(fixture("models/tiny-llama.gguf")) +
                                  " -p hi -n 2 --sparsity " + sh_quote(s25));
  EXPECT_EQ(other.code, 1);
  EXPECT_NE(other.err.find("s25.gguf"), std::string::npos) << other.err;

  // The model may follow the sub-command as a positional argument, and the
  // same file results; a chunk beyond the training context is refused naming
  // the switch that allows it.
  const std::string s0b = temp_dir() + "/s0b.gguf";
  const CmdResult pos = run_slm("prune calibrate " + stories() + " --data " + text +
                                " --sparsity 0 -o " + sh_quote(s0b) + " -t 1");
  ASSERT_EQ(pos.code, 0) << pos.err;
  EXPECT_EQ(slurp(s0b), slurp(s0));
  const CmdResult longer = run_slm("prune calibrate " + stories() + " --data " + text +
                                   " -c 100000 -o " + sh_quote(s0b) + " -t 1");
  EXPECT_EQ(longer.code, 1);
  EXPECT_NE(longer.err.find("--allow-long-context"), std::string::npos) << longer.err;
  EXPECT_EQ(run_slm("prune calibrate " + stories() + " extra --data " + text + " -o x").code, 2);
}

}  // namespace
}  // namespace slm::test
