// Hostile vocabularies: every malformed input is an slm::Error that names
// the key or field, never a crash.
#include <gtest/gtest.h>

#include <functional>

#include "base/error.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "tokenizer/tokenizer.h"

namespace slm::test {
namespace {

using tokenizer::Tokenizer;

// A small valid byte-level vocabulary: the 256 mapped bytes, "ab", "abc".
struct BpeVocab {
  std::vector<std::string> tokens;
  std::vector<std::string> merges{"a b", "ab c"};
  BpeVocab() {
    for (int b = 0x21; b <= 0x7E; ++b) tokens.emplace_back(1, static_cast<char>(b));
    tokens.push_back("\xC4\xA0");  // "Ġ" (space)
    tokens.push_back("ab");
    tokens.push_back("abc");
    tokens.push_back("<|endoftext|>");
  }
};

std::string error_of(const std::function<void(gguf::Writer&)>& build) {
  gguf::Writer w;
  build(w);
  const auto bytes = w.to_bytes();
  try {
    auto f = gguf::File::parse(bytes, "hostile.gguf");
    Tokenizer::from_gguf(*f);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void add_bpe(gguf::Writer& w, const BpeVocab& v) {
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "gpt-2");
  w.add_strings("tokenizer.ggml.tokens", v.tokens);
  w.add_strings("tokenizer.ggml.merges", v.merges);
}

TEST(HostileGguf, ValidBaselineLoads) {
  BpeVocab v;
  EXPECT_EQ(error_of([&](gguf::Writer& w) { add_bpe(w, v); }), "");
  gguf::Writer w;
  add_bpe(w, v);
  const auto bytes = w.to_bytes();
  auto f = gguf::File::parse(bytes, "ok.gguf");
  const Tokenizer tok = Tokenizer::from_gguf(*f);
  const auto ids = tok.encode("abc ab", false, true);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(tok.token_text(ids[0]), "abc");
  EXPECT_EQ(tok.decode(ids), "abc ab");
}

TEST(HostileGguf, ErrorsNameTheKey) {
  BpeVocab v;
  EXPECT_NE(error_of([](gguf::Writer& w) { w.add_u32("x", 1); }).find("tokenizer.ggml.model"),
            std::string::npos);
  EXPECT_NE(error_of([](gguf::Writer& w) {
              w.add_string("tokenizer.ggml.model", "bert");
            }).find("unsupported"),
            std::string::npos);
  EXPECT_NE(error_of([](gguf::Writer& w) {
              w.add_string("tokenizer.ggml.model", "gpt2");
            }).find("tokenizer.ggml.tokens"),
            std::string::npos);
  // tokens of the wrong type
  EXPECT_NE(error_of([](gguf::Writer& w) {
              w.add_string("tokenizer.ggml.model", "llama");
              w.add_i32s("tokenizer.ggml.tokens", {1, 2, 3});
            }).find("tokenizer.ggml.tokens"),
            std::string::npos);
  // mismatched array lengths
  EXPECT_NE(error_of([&](gguf::Writer& w) {
              add_bpe(w, v);
              w.add_f32s("tokenizer.ggml.scores", {0.0f, 1.0f});
            }).find("tokenizer.ggml.scores"),
            std::string::npos);
  EXPECT_NE(error_of([&](gguf::Writer& w) {
              add_bpe(w, v);
              w.add_i32s("tokenizer.ggml.token_type", {1});
            }).find("tokenizer.ggml.token_type"),
            std::string::npos);
  EXPECT_NE(error_of([&](gguf::Writer& w) {
              add_bpe(w, v);
              w.add_i32s("tokenizer.ggml.token_type", std::vector<int32_t>(v.tokens.size(), 99));
            }).find("tokenizer.ggml.token_type"),
            std::string::npos);
  // merges that name unknown tokens, produce unknown tokens, or have no separator
  for (const char* bad : {"a zz", "b c", "abc"}) {
    BpeVocab h;
    h.merges.push_back(bad);
    EXPECT_NE(error_of([&](gguf::Writer& w) { add_bpe(w, h); }).find("tokenizer.ggml.merges"),
              std::string::npos)
        << bad;
  }
  EXPECT_NE(error_of([&](gguf::Writer& w) {
              w.add_string("tokenizer.ggml.model", "gpt2");
              w.add_strings("tokenizer.ggml.tokens", v.tokens);
            }).find("tokenizer.ggml.merges"),
            std::string::npos);
  EXPECT_NE(error_of([&](gguf::Writer& w) {
              add_bpe(w, v);
              w.add_u32("tokenizer.ggml.bos_token_id", 1000000);
            }).find("tokenizer.ggml.bos_token_id"),
            std::string::npos);
  EXPECT_NE(error_of([&](gguf::Writer& w) {
              add_bpe(w, v);
              w.add_string("tokenizer.ggml.eos_token_id", "two");
            }).find("tokenizer.ggml.eos_token_id"),
            std::string::npos);
  EXPECT_NE(error_of([&](gguf::Writer& w) {
              add_bpe(w, v);
              w.add_bool("tokenizer.ggml.add_bos_token", true);
            }).find("tokenizer.ggml.add_bos_token"),
            std::string::npos);
  EXPECT_NE(error_of([&](gguf::Writer& w) {
              w.add_string("tokenizer.ggml.model", "gpt2");
              w.add_string("tokenizer.ggml.pre", "no-such-pre");
              w.add_strings("tokenizer.ggml.tokens", v.tokens);
              w.add_strings("tokenizer.ggml.merges", v.merges);
            }).find("tokenizer.ggml.pre"),
            std::string::npos);
  BpeVocab dup;
  dup.tokens.push_back("ab");
  EXPECT_NE(error_of([&](gguf::Writer& w) { add_bpe(w, dup); }).find("duplicate"),
            std::string::npos);
  EXPECT_NE(error_of([](gguf::Writer& w) {
              w.add_string("tokenizer.ggml.model", "llama");
              w.add_strings("tokenizer.ggml.tokens", {});
            }).find("tokenizer.ggml.tokens"),
            std::string::npos);
}

// "-1" ids (u32 0xFFFFFFFF), empty and absurd token strings, invalid UTF-8
// pieces and a vocabulary without byte tokens or unk all load and encode.
TEST(HostileGguf, OddButLegalVocabularies) {
  gguf::Writer w;
  std::vector<std::string> tokens = {"<unk>",
                                     "<s>",
                                     "</s>",
                                     "",
                                     "\xFF\xFE",
                                     std::string(10000, 'x'),
                                     "\xE2\x96\x81"
                                     "a"};
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_i32s("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 3, 1});
  w.add_u32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
  w.add_u32("tokenizer.ggml.seperator_token_id", 0xFFFFFFFFu);
  const auto bytes = w.to_bytes();
  auto f = gguf::File::parse(bytes, "odd.gguf");
  const Tokenizer tok = Tokenizer::from_gguf(*f);
  EXPECT_FALSE(tok.pad().has_value());
  const std::string text = "a " + std::string(20000, 'x') + " \xFF\xFE\x80 <s>";
  const auto ids = tok.encode(text, true, true);
  EXPECT_EQ(ids.front(), 1);
  size_t x_tokens = 0;
  for (auto id : ids) x_tokens += id == 5;
  EXPECT_EQ(x_tokens, 2u);  // the 10000-x control token, twice
  EXPECT_NO_THROW(tok.decode(ids));
  EXPECT_TRUE(tok.encode("", false, true).empty());
}

TEST(HostileIds, DecodeNamesTheBadId) {
  BpeVocab v;
  gguf::Writer w;
  add_bpe(w, v);
  const auto bytes = w.to_bytes();
  auto f = gguf::File::parse(bytes, "ok.gguf");
  const Tokenizer tok = Tokenizer::from_gguf(*f);
  const std::vector<int32_t> bad = {1, tok.n_vocab()};
  try {
    tok.decode(bad);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(tok.n_vocab())), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(tok.decode(std::vector<int32_t>{-1}), Error);
  EXPECT_THROW(tok.token_to_piece(-5), Error);
  EXPECT_THROW(tok.token_text(1 << 30), Error);
  EXPECT_FALSE(tok.is_eog(-1));
  EXPECT_FALSE(tok.is_eog(1 << 30));
}

std::string hf_error(const std::string& json) {
  try {
    Tokenizer::from_hf_json_text(json, "", "bad.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(HostileHfJson, ErrorsNameTheField) {
  EXPECT_NE(hf_error("{").find("invalid JSON"), std::string::npos);
  EXPECT_NE(hf_error("[]").find("tokenizer.json"), std::string::npos);
  EXPECT_NE(hf_error("{}").find("model"), std::string::npos);
  EXPECT_NE(hf_error(R"({"model":{"type":"WordPiece","vocab":{}}})").find("model.type"),
            std::string::npos);
  EXPECT_EQ(hf_error(R"({"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":[]}})"), "");
  EXPECT_EQ(hf_error(R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}})"),
            "");
  EXPECT_NE(hf_error(R"({"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b"]}})")
                .find("model.merges[0]"),
            std::string::npos);
  EXPECT_NE(hf_error(R"({"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":[["a","q"]]}})")
                .find("model.merges[0]"),
            std::string::npos);
  EXPECT_NE(hf_error(R"({"model":{"type":"BPE","vocab":{"a":2000000000}}})").find("model.vocab"),
            std::string::npos);
  EXPECT_NE(hf_error(R"({"model":{"type":"BPE","vocab":{"a":0,"b":0}}})").find("model.vocab"),
            std::string::npos);
  EXPECT_NE(hf_error(R"({"model":{"type":"BPE","vocab":{"a":"x"}}})").find("model.vocab"),
            std::string::npos);
  EXPECT_NE(
      hf_error(
          R"({"model":{"type":"BPE","vocab":{"a":0}},"added_tokens":[{"id":-1,"content":"x"}]})")
          .find("added_tokens[0].id"),
      std::string::npos);
  EXPECT_NE(
      hf_error(
          R"({"model":{"type":"BPE","vocab":{"a":0}},"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(("}}})")
          .find("bad regex"),
      std::string::npos);
  EXPECT_NE(hf_error(R"({"model":{"type":"BPE","vocab":{"a":0}},"pre_tokenizer":{"type":"Bert"}})")
                .find("pre_tokenizer.type"),
            std::string::npos);
  EXPECT_NE(
      hf_error(R"({"model":{"type":"BPE","vocab":{"a":0}},"normalizer":{"type":"Precompiled"}})")
          .find("normalizer.type"),
      std::string::npos);
  EXPECT_NE(hf_error(R"({"model":{"type":"BPE","vocab":{"a":0},"unk_token":"<unk>"}})")
                .find("model.unk_token"),
            std::string::npos);
  std::string deep = R"({"model":{"type":"BPE","vocab":{"a":0}},"normalizer":)";
  for (int i = 0; i < 20; ++i) deep += R"({"type":"Sequence","normalizers":[)";
  deep += "null";
  for (int i = 0; i < 20; ++i) deep += "]}";
  deep += "}";
  EXPECT_NE(hf_error(deep).find("nested too deeply"), std::string::npos);
}

}  // namespace
}  // namespace slm::test
