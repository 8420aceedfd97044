// tokenizer.json features beyond the Qwen3 fixture: GPT-2's vocabulary
// re-expressed as a ByteLevel tokenizer.json must give llama.cpp's ids, and a
// Llama-2-style (Prepend/Replace normalizer, byte_fallback) and a Metaspace
// tokenizer behave as SentencePiece does.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tok_fixtures.h"

namespace slm::test {
namespace {

using Json = nlohmann::json;
using tokenizer::Tokenizer;

TEST(HfJson, Gpt2VocabAsByteLevelJsonMatchesLlamaCpp) {
  SLM_REQUIRE_FIXTURE("tokenizer/gguf-vocab/ggml-vocab-gpt-2.gguf");
  auto f = gguf::File::open(fixture("tokenizer/gguf-vocab/ggml-vocab-gpt-2.gguf"));
  const auto tokens = *f->get_strings("tokenizer.ggml.tokens");
  const auto merges = *f->get_strings("tokenizer.ggml.merges");
  Json vocab = Json::object();
  for (size_t i = 0; i + 1 < tokens.size(); ++i) vocab[std::string(tokens[i])] = i;
  Json merge_list = Json::array();
  for (size_t i = 0; i < merges.size(); ++i) {
    // Both spellings HF writes: "a b" strings and [a, b] pairs.
    const std::string m(merges[i]);
    const size_t sp = m.find(' ', 1);
    if (i % 2) {
      merge_list.push_back(m);
    } else {
      merge_list.push_back(Json::array({m.substr(0, sp), m.substr(sp + 1)}));
    }
  }
  Json j = {
      {"added_tokens",
       Json::array({{{"id", tokens.size() - 1}, {"content", "<|endoftext|>"}, {"special", true}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}},
  };
  const Tokenizer tok = Tokenizer::from_hf_json_text(j.dump(), "", "gpt2.json");
  const auto cases = read_cases(fixture("tokenizer/cases/upstream.inp"));
  const auto expected = read_expected(fixture("tokenizer/gguf-vocab/ggml-vocab-gpt-2.gguf.out"));
  ASSERT_EQ(cases.size(), expected.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(tok.encode(cases[i], false, true), expected[i]) << "case " << i;
    EXPECT_EQ(tok.decode(expected[i]), cases[i]) << "case " << i;
  }
}

// A tiny SentencePiece-like vocabulary: "▁" pieces, byte fallback tokens.
Json small_spm_vocab() {
  Json vocab = Json::object();
  int id = 0;
  for (const char* t : {"<unk>", "<s>", "</s>"}) vocab[t] = id++;
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    vocab[buf] = id++;
  }
  for (const char* t : {"\xE2\x96\x81",
                        "H",
                        "e",
                        "l",
                        "o",
                        "w",
                        "r",
                        "d",
                        "\xE2\x96\x81H",
                        "el",
                        "ell",
                        "ello",
                        "\xE2\x96\x81Hello",
                        "\xE2\x96\x81w",
                        "or",
                        "\xE2\x96\x81wor",
                        "\xE2\x96\x81worl",
                        "\xE2\x96\x81world",
                        "\xE2\x96\x81He",
                        "\xE2\x96\x81Hell"})
    vocab[t] = id++;
  return vocab;
}

Json small_spm_merges() {
  return Json::array({"\xE2\x96\x81 H", "e l", "el l", "ell o", "\xE2\x96\x81H ello",
                      "\xE2\x96\x81 w", "o r", "\xE2\x96\x81w or", "\xE2\x96\x81wor l",
                      "\xE2\x96\x81worl d"});
}

TEST(HfJson, Llama2StyleNormalizerAndByteFallback) {
  const Json vocab = small_spm_vocab();
  Json j = {
      {"added_tokens", Json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                    {{"id", 1}, {"content", "<s>"}, {"special", true}},
                                    {{"id", 2}, {"content", "</s>"}, {"special", true}}})},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers", Json::array({{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                                     {{"type", "Replace"},
                                      {"pattern", {{"String", " "}}},
                                      {"content", "\xE2\x96\x81"}}})}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", Json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}}}}})}}},
      {"decoder", {{"type", "Sequence"}, {"decoders", Json::array({{{"type", "ByteFallback"}}})}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", small_spm_merges()},
        {"byte_fallback", true},
        {"unk_token", "<unk>"}}},
  };
  const Tokenizer tok = Tokenizer::from_hf_json_text(j.dump(), "", "llama2.json");
  EXPECT_EQ(tok.bos(), 1);
  EXPECT_TRUE(tok.add_bos());
  const auto ids = tok.encode("Hello world\xC3\xA9", true, true);
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(tok.token_text(ids[1]), "\xE2\x96\x81Hello");
  EXPECT_EQ(tok.token_text(ids[2]), "\xE2\x96\x81world");
  EXPECT_EQ(tok.token_text(ids[3]), "<0xC3>");  // é is not in the vocabulary: bytes
  EXPECT_EQ(tok.token_text(ids[4]), "<0xA9>");
  EXPECT_EQ(tok.decode(ids), "<s>Hello world\xC3\xA9");
  tokenizer::DecodeOptions opt;
  opt.render_special = false;
  EXPECT_EQ(tok.decode(ids, opt), "Hello world\xC3\xA9");
}

TEST(HfJson, MetaspacePreTokenizerAndConfig) {
  Json j = {
      {"pre_tokenizer",
       {{"type", "Metaspace"},
        {"replacement", "\xE2\x96\x81"},
        {"prepend_scheme", "first"},
        {"split", true}}},
      {"decoder",
       {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", small_spm_vocab()},
        {"merges", small_spm_merges()},
        {"byte_fallback", true}}},
  };
  const std::string config =
      R"({"bos_token": {"content": "<s>"}, "eos_token": "</s>", "add_bos_token": true,
                                 "add_eos_token": true})";
  const Tokenizer tok = Tokenizer::from_hf_json_text(j.dump(), config, "metaspace.json");
  const auto ids = tok.encode("Hello world", true, false);
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_TRUE(tok.is_eog(2));
  EXPECT_EQ(tok.token_text(ids[1]), "\xE2\x96\x81Hello");
  EXPECT_EQ(tok.decode(std::vector<int32_t>(ids.begin() + 1, ids.end() - 1)), "Hello world");
  // "first": no "▁" in front of text that follows a special token.
  const auto after = tok.encode("<s>Hello", false, true);
  ASSERT_GE(after.size(), 2u);
  EXPECT_EQ(after[0], 1);
  EXPECT_NE(tok.token_text(after[1]), "\xE2\x96\x81Hello");
}

}  // namespace
}  // namespace slm::test
