// JSONL training data: which tokens carry the loss in each shape, and the
// refusals (FILE:LINE: field ...), on fixture tokenizers and templates.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "base/error.h"
#include "chat/template.h"
#include "common/fixtures.h"
#include "engine/prompt.h"
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

std::vector<int32_t> engine_tokens(const tokenizer::Tokenizer& tok, const std::string& text) {
  return engine::tokenize_prompt(tok, text);
}

std::string error_of(const std::string& text, const tokenizer::Tokenizer& tok,
                     const chat::Template* tmpl, DataOptions opt = {}) {
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
      "{\"prompt\": \"Lily had a dog named\", \"completion\": \" Biscuit.\"}\n\n{\"text\": \"The "
      "sun was hot.\"}\n",
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
  EXPECT_EQ(error_of(ok + "{\"prompt\": \"x\"}\n", tok, nullptr),
            "d.jsonl:2: field 'completion' is missing");
  EXPECT_EQ(error_of("{not json\n", tok, nullptr), "d.jsonl:1: not valid JSON");
  EXPECT_EQ(error_of("[1]\n", tok, nullptr), "d.jsonl:1: a line must be a JSON object");
  EXPECT_EQ(error_of("{\"foo\": 1}\n", tok, nullptr),
            "d.jsonl:1: field 'messages', 'prompt'/'completion' or 'text' is required");
  EXPECT_EQ(error_of(R"({"messages": [{"role": "user", "content": "x"}]})", tok, nullptr),
            "d.jsonl:1: field 'messages' has no assistant turn to train on");
  EXPECT_EQ(error_of(R"({"messages": [{"role": "assistant"}]})", tok, nullptr),
            "d.jsonl:1: field 'messages[0].content' must be a string");
  EXPECT_NE(error_of(R"({"messages": [{"role": "assistant", "content": "x"}]})", tok, nullptr)
                .find("chat template"),
            std::string::npos);
  EXPECT_EQ(error_of("", tok, nullptr), "d.jsonl: no examples");
  const std::string long_line =
      "{\"text\": \"the cat sat on the mat and the dog sat on the log\"}\n";
  EXPECT_NE(error_of(ok + long_line, tok, nullptr, {6, false}).find("d.jsonl:2: the example is"),
            std::string::npos);
  const auto cut = parse_jsonl(long_line, "d.jsonl", tok, nullptr, {6, true});
  EXPECT_EQ(cut[0].tokens.size(), 6u);
}

TEST(TrainData, PreferencePairsMaskThePrompt) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const auto f = gguf::File::open(test::fixture("models/stories260K.gguf"));
  const auto tok = tokenizer::Tokenizer::from_gguf(*f);
  const auto p = parse_preference_jsonl(
      "\n{\"prompt\": \"Tom saw a big\", \"chosen\": \" dog.\", \"rejected\": \" red cat.\"}\n",
      "d.jsonl", tok, nullptr, {});
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(targets_text(p[0].chosen, tok), "dog.</s>");
  EXPECT_EQ(targets_text(p[0].rejected, tok), "red cat.</s>");
  EXPECT_EQ(tok.decode(p[0].chosen.tokens),
            tok.decode(engine_tokens(tok, "Tom saw a big dog.")) + "</s>");
}

TEST(TrainData, PreferencePairsWithMessages) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen3.gguf");
  const auto f = gguf::File::open(test::fixture("models/tiny-qwen3.gguf"));
  const auto tok = tokenizer::Tokenizer::from_gguf(*f);
  const chat::Template tmpl(*f->get_string("tokenizer.chat_template"));
  const auto p = parse_preference_jsonl(
      R"({"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], )"
      R"("chosen": "Hello there.", "rejected": [{"role": "assistant", "content": "Go away."}]})",
      "d.jsonl", tok, &tmpl, {});
  ASSERT_EQ(p.size(), 1u);
  const std::string c = targets_text(p[0].chosen, tok), r = targets_text(p[0].rejected, tok);
  EXPECT_NE(c.find("Hello there."), std::string::npos) << c;
  EXPECT_NE(r.find("Go away."), std::string::npos) << r;
  for (const std::string& t : {c, r}) {
    EXPECT_EQ(t.find("Hi"), std::string::npos) << t;
    EXPECT_EQ(t.find("Be brief"), std::string::npos) << t;
    EXPECT_NE(t.find("<|im_end|>"), std::string::npos) << t;
  }
  EXPECT_EQ(p[0].chosen.tokens.size() - static_cast<size_t>(p[0].chosen.n_targets()),
            p[0].rejected.tokens.size() -
                static_cast<size_t>(p[0].rejected.n_targets()));  // the same prompt
}

std::string preference_error(const std::string& text, const tokenizer::Tokenizer& tok,
                             const chat::Template* tmpl, DataOptions opt = {}) {
  try {
    parse_preference_jsonl(text, "d.jsonl", tok, tmpl, opt);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TrainData, RefusesBadPreferenceLines) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const auto f = gguf::File::open(test::fixture("models/stories260K.gguf"));
  const auto tok = tokenizer::Tokenizer::from_gguf(*f);
  const std::string ok = R"({"prompt": "a", "chosen": " b", "rejected": " c"})"
                         "\n";
  EXPECT_EQ(preference_error(ok + R"({"prompt": "a", "chosen": " b"})", tok, nullptr),
            "d.jsonl:2: field 'rejected' is missing");
  EXPECT_EQ(preference_error(R"({"prompt": "a", "chosen": [], "rejected": " c"})", tok, nullptr),
            "d.jsonl:1: field 'chosen' must be a string, as 'prompt' is");
  EXPECT_EQ(preference_error(R"({"prompt": "a", "chosen": " b", "rejected": ""})", tok, nullptr),
            "d.jsonl:1: field 'rejected' is empty");
  EXPECT_EQ(preference_error(R"({"prompt": 3, "chosen": " b", "rejected": " c"})", tok, nullptr),
            "d.jsonl:1: field 'prompt' must be a string or an array of messages");
  EXPECT_EQ(preference_error(R"({"prompt": [{"role": "user"}], "chosen": " b", "rejected": " c"})",
                             tok, nullptr),
            "d.jsonl:1: field 'prompt[0].content' must be a string");
  EXPECT_EQ(preference_error(
                R"({"prompt": [{"role": "user", "content": "x"}], "chosen": " b", "rejected": 4})",
                tok, nullptr),
            "d.jsonl:1: field 'rejected' must be a string or an array of messages");
  EXPECT_EQ(
      preference_error(
          R"({"prompt": [{"role": "user", "content": "x"}], "chosen": [{"role": "user", "content": "y"}], "rejected": " c"})",
          tok, nullptr),
      "d.jsonl:1: field 'chosen' has no assistant turn");
  EXPECT_EQ(
      preference_error(
          R"({"prompt": [{"role": "assistant", "content": "x"}], "chosen": " b", "rejected": " c"})",
          tok, nullptr),
      "d.jsonl:1: field 'prompt' must not end with an assistant turn");
  EXPECT_NE(
      preference_error(
          R"({"prompt": [{"role": "user", "content": "x"}], "chosen": " b", "rejected": " c"})",
          tok, nullptr)
          .find("d.jsonl:1: field 'chosen' needs a chat template"),
      std::string::npos);
  EXPECT_EQ(
      preference_error("{\"text\": \"a b\"}\n", tok, nullptr),
      "d.jsonl:1: field 'prompt' is missing (a preference line is {prompt, chosen, rejected})");
  EXPECT_EQ(
      error_of(ok, tok, nullptr),
      "d.jsonl:1: field 'chosen'/'rejected' makes a preference line, which trains with DPO only");
  const std::string long_rejected =
      R"({"prompt": "a", "chosen": " b", "rejected": " the cat sat on the mat and the dog sat on the log"})";
  EXPECT_EQ(preference_error(long_rejected, tok, nullptr, {8, false}).substr(0, 35),
            "d.jsonl:1: the rejected example is ");
  EXPECT_EQ(parse_preference_jsonl(long_rejected, "d.jsonl", tok, nullptr, {8, true})[0]
                .rejected.tokens.size(),
            8u);
}

}  // namespace
}  // namespace slm::train
