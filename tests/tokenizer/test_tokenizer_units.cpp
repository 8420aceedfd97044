// Behaviour beyond the fixture ids: special-token switches, BOS/EOS, EOG,
// rendering options, thread safety and long inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "tok_fixtures.h"
#include "tokenizer/pretokenizer.h"

namespace slm::test {
namespace {

using tokenizer::Tokenizer;

const Tokenizer& qwen() {
  static const Tokenizer tok = load_gguf_tokenizer("models/tiny-qwen2.gguf");
  return tok;
}
const Tokenizer& llama() {
  static const Tokenizer tok = load_gguf_tokenizer("models/tiny-llama.gguf");
  return tok;
}

TEST(Tokenizer, SpecialTokenParsingCanBeSwitchedOff) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  const auto& tok = qwen();
  const std::string text = "<|im_start|>user<think>";
  const auto parsed = tok.encode(text, false, true);
  ASSERT_EQ(parsed.size(), 3u);
  EXPECT_EQ(parsed[0], 151644);
  EXPECT_EQ(parsed[2], *tok.find_token("<think>"));
  const auto plain = tok.encode(text, false, false);
  EXPECT_GT(plain.size(), 3u);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 151644), 0);
  EXPECT_EQ(plain.back(), *tok.find_token("<think>"));  // user-defined: always a token
  EXPECT_EQ(tok.decode(plain), text);
}

TEST(Tokenizer, BosEosFollowMetadata) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  EXPECT_EQ(llama().bos(), 1);
  EXPECT_EQ(llama().eos(), 2);
  EXPECT_TRUE(llama().add_bos());
  EXPECT_EQ(llama().encode("Hello", true, true), (std::vector<int32_t>{1, 15043}));
  EXPECT_EQ(llama().encode("Hello", false, true), (std::vector<int32_t>{15043}));
  EXPECT_EQ(llama().encode("", true, true), (std::vector<int32_t>{1}));
  EXPECT_FALSE(qwen().add_bos());
  EXPECT_EQ(qwen().encode("Hello", true, true), qwen().encode("Hello", false, true));
  EXPECT_EQ(qwen().n_vocab(), 151936);
  EXPECT_EQ(llama().kind(), "spm");
  EXPECT_EQ(qwen().pre(), "qwen2");
}

TEST(Tokenizer, EndOfGeneration) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  EXPECT_TRUE(qwen().is_eog(151645));  // <|im_end|> (eos)
  EXPECT_TRUE(qwen().is_eog(151643));  // <|endoftext|>
  EXPECT_FALSE(qwen().is_eog(151644));
  EXPECT_FALSE(qwen().is_eog(872));
  EXPECT_TRUE(llama().is_eog(2));
  EXPECT_FALSE(llama().is_eog(1));
  SLM_REQUIRE_FIXTURE("tokenizer/hf-qwen3/tokenizer.json");
  const Tokenizer hf = Tokenizer::from_hf_json(fixture("tokenizer/hf-qwen3"));
  EXPECT_EQ(hf.eos(), 151645);  // from tokenizer_config.json
  EXPECT_TRUE(hf.is_eog(151643));
  EXPECT_FALSE(hf.add_bos());
  EXPECT_EQ(hf.pad(), 151643);
}

TEST(Tokenizer, DecodeOptions) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const auto& tok = llama();
  const auto ids = tok.encode("<s>Hello world</s>", false, true);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(tok.decode(ids), "<s>Hello world</s>");
  tokenizer::DecodeOptions opt;
  opt.render_special = false;
  EXPECT_EQ(tok.decode(ids, opt), "Hello world");
  opt.strip_space_prefix = false;
  EXPECT_EQ(tok.decode(ids, opt), " Hello world");
  EXPECT_EQ(tok.token_to_piece(ids[1]), " Hello");
  EXPECT_EQ(tok.token_to_piece(1, false), "");
  EXPECT_EQ(tok.token_to_piece(13), "\n");  // <0x0A>
  EXPECT_EQ(tok.token_type(13), tokenizer::TokenType::kByte);
}

TEST(Tokenizer, ConcurrentEncodeIsSafe) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  const auto& tok = qwen();
  const std::string text =
      "Guten Tag! Die Größe des Äquators 東京の病院 <|im_end|> 👍🏽 don't";
  const auto expected = tok.encode(text, false, true);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i)
        if (tok.encode(text, false, true) != expected) ++bad;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// One 200k-character word: the heap-based merge stays fast (an O(n^2)
// rescan would take minutes).
TEST(Tokenizer, LongWordsAreFast) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  const std::string word(200000, 'a');
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = qwen().encode(word, false, true);
  const auto spm = llama().encode(word, false, true);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(qwen().decode(ids), word);
  EXPECT_EQ(llama().decode(spm), word);
  EXPECT_LT(s, 5.0);
  const std::string spaces(100000, ' ');
  EXPECT_EQ(qwen().decode(qwen().encode(spaces + "x" + spaces, false, true)),
            spaces + "x" + spaces);
}

TEST(Tokenizer, InvalidUtf8RoundTripsThroughByteLevel) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  const std::string text = "ok \xFF\xFE bad \xE3\x81 cut \xC0\xAF";
  EXPECT_EQ(qwen().decode(qwen().encode(text, false, true)), text);
  EXPECT_EQ(llama().decode(llama().encode(text, false, true)), text);  // <0xNN> byte fallback
}

// The split regexes of a tokenizer.ggml.pre value, without the byte mapping,
// so the words stay readable.
std::vector<std::string> split(const std::string& pre, const std::string& text) {
  bool add_bos = false, ignore_merges = false;
  tokenizer::detail::PreTokenizer p;
  for (const auto& re : tokenizer::detail::gguf_pre_regexes(pre, &add_bos, &ignore_merges)) {
    tokenizer::detail::PreStep step;
    step.regex = std::make_shared<tokenizer::detail::Regex>(re, false, pre);
    p.steps.push_back(std::move(step));
  }
  std::vector<std::string> words;
  p.run(text, true, words);
  return words;
}

using Words = std::vector<std::string>;

TEST(PreTokenizer, SplitsLikeTheReference) {
  const std::string t = "Hello world  123456 DON'T";
  EXPECT_EQ(split("gpt-2", t), (Words{"Hello", " world", " ", " 123456", " DON", "'", "T"}));
  EXPECT_EQ(split("llama-bpe", t),
            (Words{"Hello", " world", " ", " ", "123", "456", " DON", "'T"}));
  EXPECT_EQ(split("qwen2", t),
            (Words{"Hello", " world", " ", " ", "1", "2", "3", "4", "5", "6", " DON", "'T"}));
  EXPECT_EQ(split("default", "a+b=c 1234"), (Words{"a", "+", "b", "=", "c", " ", "123", "4"}));
  EXPECT_EQ(split("starcoder", "x 12"), (Words{"x", " ", "1", "2"}));
  // \s+(?!\S) leaves the last space to the next word; newlines group.
  EXPECT_EQ(split("llama3", "a   b\n\n  c"), (Words{"a", "  ", " b", "\n\n", " ", " c"}));
  // Unicode classes: letters of any script, digits of any script.
  EXPECT_EQ(split("qwen2", "Größe ٣٤ 東京"), (Words{"Größe", " ", "٣", "٤", " 東京"}));
  // Invalid UTF-8 never matches and stays as its own piece.
  EXPECT_EQ(split("gpt-2", "ab\xFF cd"), (Words{"ab", "\xFF", " cd"}));
  EXPECT_THROW(split("no-such-pre", "x"), Error);
}

// Every tokenizer.ggml.pre value llama.cpp's vocabulary loader knows compiles
// (PCRE2, UTF mode) and splits text, not only the ones the fixtures carry.
TEST(PreTokenizer, EveryLlamaCppPreTokenizerCompiles) {
  for (const char* pre :
       {"default", "llama3", "llama-v3", "llama-bpe", "falcon3", "deepseek-llm", "deepseek-coder", "deepseek-v3",
        "falcon", "mpt", "starcoder", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en",
        "jina-v2-es", "jina-v2-de", "jina-v2-code", "roberta-bpe", "refact", "command-r", "qwen2",
        "deepseek-r1-qwen", "stablelm2", "olmo", "dbrx", "smaug-bpe", "poro-chat", "chatglm-bpe", "viking",
        "jais", "tekken", "smollm", "codeshell", "bloom", "gpt3-finnish", "exaone", "chameleon", "minerva-7b",
        "megrez", "gpt-4o"}) {
    SCOPED_TRACE(pre);
    Words w;
    ASSERT_NO_THROW(w = split(pre, "Hello, world! 12345 \xce\xb1\xce\xb2 \xe6\x9d\xb1\xe4\xba\xac\n"));
    std::string joined;
    for (const std::string& x : w) joined += x;
    EXPECT_EQ(joined, "Hello, world! 12345 \xce\xb1\xce\xb2 \xe6\x9d\xb1\xe4\xba\xac\n");  // nothing lost
  }
  // DeepSeek-LLM's cased-letter class (its second regex) includes code
  // points that NFC would replace by a twin (U+1FD3, U+2126): one match each.
  bool add_bos = false, ignore_merges = false;
  const auto res = tokenizer::detail::gguf_pre_regexes("deepseek-llm", &add_bos, &ignore_merges);
  ASSERT_GE(res.size(), 2u);
  const tokenizer::detail::Regex letters(res[1], false, "deepseek-llm");
  std::vector<std::pair<size_t, size_t>> m;
  letters.find_all("\xe1\xbf\x93" "ab \xe2\x84\xa6" "x", m);
  EXPECT_EQ(m, (std::vector<std::pair<size_t, size_t>>{{0, 5}, {5, 10}}));
}

}  // namespace
}  // namespace slm::test
