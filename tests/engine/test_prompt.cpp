// engine/prompt: one BOS/EOS rule for chat and plain prompts, over the
// fixture chat templates and vocabularies (a Qwen2.5 template gets no BOS; a
// Llama-style SentencePiece vocabulary gets exactly one, also when the
// template writes {{ bos_token }}).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "common/fixtures.h"
#include "engine/prompt.h"
#include "gguf/gguf.h"

namespace slm::engine {
namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kTemplates = "templates/src/";
constexpr const char* kQwenModel = "models/tiny-qwen2.gguf";
constexpr const char* kSpmVocab = "tokenizer/gguf-vocab/ggml-vocab-llama-spm.gguf";
constexpr const char* kGpt2Vocab = "tokenizer/gguf-vocab/ggml-vocab-gpt-2.gguf";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

tokenizer::Tokenizer gguf_tokenizer(const std::string& rel) {
  return tokenizer::Tokenizer::from_gguf(*gguf::File::open(test::fixture(rel)));
}

chat::Template fixture_template(const std::string& name) {
  return chat::Template(read_file(test::fixture(kTemplates + name + ".jinja")));
}

chat::ChatInput conversation() {
  chat::ChatInput in;
  in.messages = Json::array({{{"role", "system"}, {"content", "You are terse."}},
                             {{"role", "user"}, {"content", "Hello! How are you?"}}});
  in.add_generation_prompt = true;
  return in;
}

size_t count(const std::vector<int32_t>& ids, int32_t id) {
  return static_cast<size_t>(std::count(ids.begin(), ids.end(), id));
}

TEST(Prompt, QwenTemplateGetsNoBos) {
  SLM_REQUIRE_FIXTURE(kQwenModel);
  const tokenizer::Tokenizer tok = gguf_tokenizer(kQwenModel);
  ASSERT_FALSE(tok.add_bos());
  const Prompt p =
      build_chat_prompt(tok, fixture_template("Qwen-Qwen2.5-7B-Instruct"), conversation());
  const int32_t im_start = tok.find_token("<|im_start|>").value();
  EXPECT_EQ(p.text.rfind("<|im_start|>system\nYou are terse.<|im_end|>\n", 0), 0u) << p.text;
  EXPECT_TRUE(p.text.ends_with("<|im_start|>assistant\n"));
  ASSERT_FALSE(p.tokens.empty());
  EXPECT_EQ(p.tokens.front(), im_start);  // special text parsed, nothing in front
  EXPECT_EQ(count(p.tokens, im_start), 3u);
  EXPECT_EQ(count(p.tokens, *tok.bos()), 0u);
  EXPECT_EQ(p.tokens, tok.encode(p.text, false, true));
}

TEST(Prompt, SpmVocabGetsExactlyOneBosWhetherOrNotTheTemplateWritesIt) {
  SLM_REQUIRE_FIXTURE(kSpmVocab);
  const tokenizer::Tokenizer tok = gguf_tokenizer(kSpmVocab);
  ASSERT_TRUE(tok.add_bos());
  const int32_t bos = *tok.bos();
  // Templates that write {{ bos_token }} themselves, and ones that do not.
  for (const char* name :
       {"meta-llama-Llama-3.1-8B-Instruct", "mistralai-Mistral-Nemo-Instruct-2407",
        "microsoft-Phi-3.5-mini-instruct", "Qwen-Qwen2.5-7B-Instruct"}) {
    SCOPED_TRACE(name);
    chat::ChatInput in = conversation();
    if (std::string(name).find("Mistral") != std::string::npos)
      in.messages.erase(0);  // no system role there
    const Prompt p = build_chat_prompt(tok, fixture_template(name), in);
    ASSERT_GE(p.tokens.size(), 2u);
    EXPECT_EQ(p.tokens[0], bos);
    EXPECT_NE(p.tokens[1], bos);
    EXPECT_EQ(count(p.tokens, bos), 1u);
  }
  // The template saw the tokenizer's BOS text.
  const Prompt llama =
      build_chat_prompt(tok, fixture_template("meta-llama-Llama-3.1-8B-Instruct"), conversation());
  EXPECT_EQ(llama.text.rfind("<s>", 0), 0u);
}

TEST(Prompt, AllowBosFalseAddsNoneButKeepsTheTemplates) {
  SLM_REQUIRE_FIXTURE(kSpmVocab);
  const tokenizer::Tokenizer tok = gguf_tokenizer(kSpmVocab);
  const int32_t bos = *tok.bos();
  const Prompt written =
      build_chat_prompt(tok, fixture_template("meta-llama-Llama-3.1-8B-Instruct"), conversation(),
                        {.allow_bos = false});
  EXPECT_EQ(written.tokens.front(), bos);  // the template's own, as text
  EXPECT_EQ(count(written.tokens, bos), 1u);
  const Prompt none = build_chat_prompt(tok, fixture_template("Qwen-Qwen2.5-7B-Instruct"),
                                        conversation(), {.allow_bos = false});
  EXPECT_EQ(count(none.tokens, bos), 0u);
}

TEST(Prompt, PlainTextFollowsTheSameRule) {
  SLM_REQUIRE_FIXTURE(kSpmVocab);
  const tokenizer::Tokenizer spm = gguf_tokenizer(kSpmVocab);
  const int32_t bos = *spm.bos();
  const Prompt p = build_text_prompt(spm, "Once upon a time");
  EXPECT_EQ(p.text, "Once upon a time");
  ASSERT_GE(p.tokens.size(), 2u);
  EXPECT_EQ(p.tokens[0], bos);
  std::vector<int32_t> body = spm.encode("Once upon a time", false, true);
  body.insert(body.begin(), bos);
  EXPECT_EQ(p.tokens, body);
  // Text that already starts with BOS is not given a second one.
  const std::vector<int32_t> written = tokenize_prompt(spm, "<s>Once upon a time");
  EXPECT_EQ(written.front(), bos);
  EXPECT_EQ(count(written, bos), 1u);
  EXPECT_EQ(tokenize_prompt(spm, ""), std::vector<int32_t>{bos});
  EXPECT_TRUE(tokenize_prompt(spm, "", {.allow_bos = false}).empty());

  SLM_REQUIRE_FIXTURE(kGpt2Vocab);
  const tokenizer::Tokenizer gpt2 = gguf_tokenizer(kGpt2Vocab);
  ASSERT_FALSE(gpt2.add_bos());
  EXPECT_EQ(tokenize_prompt(gpt2, "Hello world"), gpt2.encode("Hello world", false, true));
}

TEST(Prompt, EosOnlyWhenTheVocabularyAsksAndNeverTwice) {
  SLM_REQUIRE_FIXTURE("tokenizer/hf-qwen3/tokenizer.json");
  const std::string json = read_file(test::fixture("tokenizer/hf-qwen3/tokenizer.json"));
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_hf_json_text(
      json, R"({"add_bos_token": false, "add_eos_token": true, "eos_token": "<|im_end|>"})",
      "qwen3-eos");
  ASSERT_TRUE(tok.add_eos());
  const int32_t eos = *tok.eos();
  const std::vector<int32_t> p = tokenize_prompt(tok, "hi");
  EXPECT_EQ(p.back(), eos);
  EXPECT_EQ(count(p, eos), 1u);
  const std::vector<int32_t> written = tokenize_prompt(tok, "hi<|im_end|>");
  EXPECT_EQ(written.back(), eos);
  EXPECT_EQ(count(written, eos), 1u);
  // The same vocabulary without add_eos_token adds nothing.
  const tokenizer::Tokenizer plain = tokenizer::Tokenizer::from_hf_json_text(json, "", "qwen3");
  EXPECT_EQ(tokenize_prompt(plain, "hi"), plain.encode("hi", false, true));
}

TEST(Prompt, ErrorsSayWhetherTheMessagesOrTheTemplateFailed) {
  SLM_REQUIRE_FIXTURE(kQwenModel);
  const tokenizer::Tokenizer tok = gguf_tokenizer(kQwenModel);
  chat::ChatInput bad;
  bad.messages = Json::array({{{"content", "no role"}}});
  const chat::Template qwen = fixture_template("Qwen-Qwen2.5-7B-Instruct");
  try {
    build_chat_prompt(tok, qwen, bad);
    FAIL() << "malformed messages were accepted";
  } catch (const chat::TemplateError&) {
    FAIL() << "a message error must not be a TemplateError";
  } catch (const Error&) {
  }
  const chat::Template raising("{{ raise_exception('no thanks') }}");
  EXPECT_THROW(build_chat_prompt(tok, raising, conversation()), chat::TemplateError);
}

}  // namespace
}  // namespace slm::engine
