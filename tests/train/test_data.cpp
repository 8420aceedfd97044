// JSONL training data: which tokens carry the loss in each shape, and the
// refusals (FILE:LINE: field ...), on fixture tokenizers and templates.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "base/error.h"
#include "chat/template.h"
#include "common/fixtures.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

namespace slm::train {
namespace {

std::string targets_text(const Example& ex, const tokenizer::Tokenizer& tok) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < ex.tokens.size(); ++i)
    if (ex.target[i] != 0) ids.push_back(ex.tokens[i]);
  return tok.decode(ids);
}

std::string error_of(const std::string& text, const tokenizer::Tokenizer& tok, const chat::Template* tmpl,
                     DataOptions opt = {}) {
  try {
    parse_jsonl(text, "d.jsonl", tok, tmpl, opt);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TrainData, PromptCompletionAndText) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const auto f = gguf::File::open(test::fixture("models/stories260K.gguf"));
  const auto tok = tokenizer::Tokenizer::from_gguf(*f);
  const auto ex = parse_jsonl(
      "{\"prompt\": \"Lily had a dog named\", \"completion\": \" Biscuit.\"}\n\n{\"text\": \"The sun was hot.\"}\n",
      "d.jsonl", tok, nullptr, {});
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(targets_text(ex[0], tok), "Biscuit.</s>");  // the completion and EOS
  EXPECT_EQ(ex[0].tokens.back(), *tok.eos());
  EXPECT_EQ(ex[1].n_targets(), static_cast<int64_t>(ex[1].tokens.size()) - 1);
}

TEST(TrainData, MessagesTrainOnAssistantTurnsOnly) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen3.gguf");
  const auto f = gguf::File::open(test::fixture("models/tiny-qwen3.gguf"));
  const auto tok = tokenizer::Tokenizer::from_gguf(*f);
  const chat::Template tmpl(*f->get_string("tokenizer.chat_template"));
  const auto ex = parse_jsonl(
      R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, )"
      R"({"role": "assistant", "content": "Hello there."}, {"role": "user", "content": "Bye"}, )"
      R"({"role": "assistant", "content": "Goodbye."}]})",
      "d.jsonl", tok, &tmpl, {});
  ASSERT_EQ(ex.size(), 1u);
  const std::string t = targets_text(ex[0], tok);
  EXPECT_NE(t.find("Hello there."), std::string::npos) << t;
  EXPECT_NE(t.find("Goodbye."), std::string::npos) << t;
  EXPECT_EQ(t.find("Hi"), std::string::npos) << t;
  EXPECT_EQ(t.find("Bye"), std::string::npos) << t;
  EXPECT_EQ(t.find("Be brief"), std::string::npos) << t;
  EXPECT_NE(t.find("<|im_end|>"), std::string::npos) << t;  // the end of turn is learned
}

TEST(TrainData, RefusesBadLinesWithFileAndLine) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const auto f = gguf::File::open(test::fixture("models/stories260K.gguf"));
  const auto tok = tokenizer::Tokenizer::from_gguf(*f);
  const std::string ok = "{\"text\": \"a b\"}\n";
  EXPECT_EQ(error_of(ok + ok + "{\"prompt\": \"x\", \"completion\": 3}\n", tok, nullptr),
            "d.jsonl:3: field 'completion' must be a string");
  EXPECT_EQ(error_of(ok + "{\"prompt\": \"x\"}\n", tok, nullptr), "d.jsonl:2: field 'completion' is missing");
  EXPECT_EQ(error_of("{not json\n", tok, nullptr), "d.jsonl:1: not valid JSON");
  EXPECT_EQ(error_of("[1]\n", tok, nullptr), "d.jsonl:1: a line must be a JSON object");
  EXPECT_EQ(error_of("{\"foo\": 1}\n", tok, nullptr),
            "d.jsonl:1: field 'messages', 'prompt'/'completion' or 'text' is required");
  EXPECT_EQ(error_of(R"({"messages": [{"role": "user", "content": "x"}]})", tok, nullptr),
            "d.jsonl:1: field 'messages' has no assistant turn to train on");
  EXPECT_EQ(error_of(R"({"messages": [{"role": "assistant"}]})", tok, nullptr),
            "d.jsonl:1: field 'messages[0].content' must be a string");
  EXPECT_NE(error_of(R"({"messages": [{"role": "assistant", "content": "x"}]})", tok, nullptr).find("chat template"),
            std::string::npos);
  EXPECT_EQ(error_of("", tok, nullptr), "d.jsonl: no examples");
  const std::string long_line = "{\"text\": \"the cat sat on the mat and the dog sat on the log\"}\n";
  EXPECT_NE(error_of(ok + long_line, tok, nullptr, {6, false}).find("d.jsonl:2: the example is"), std::string::npos);
  const auto cut = parse_jsonl(long_line, "d.jsonl", tok, nullptr, {6, true});
  EXPECT_EQ(cut[0].tokens.size(), 6u);
}

}  // namespace
}  // namespace slm::train
