// Every vocabulary llama.cpp ships in its models/ folder (ggml-vocab-*.gguf
// with the .inp / .out pairs its test-tokenizer-0 reads) against the ids
// llama.cpp expects. These files are not fixtures: point $SLM_LLAMA_VOCABS at
// a folder holding them (extracted from a llama.cpp checkout, outside this
// repository) to run this test; without it the test reports itself skipped.
// BERT's WordPiece vocabularies (bert-bge) are not a tokenizer slm runs.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "tok_fixtures.h"

namespace slm::test {
namespace {

namespace fs = std::filesystem;

TEST(UpstreamVocabs, EveryShippedVocabularyGivesLlamaCppsIds) {
  const char* dir = std::getenv("SLM_LLAMA_VOCABS");
  if (dir == nullptr || *dir == '\0') GTEST_SKIP() << "set SLM_LLAMA_VOCABS to llama.cpp's models/ folder";
  int vocabs = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string path = e.path().string();
    if (e.path().extension() != ".gguf" || fs::file_size(e.path()) == 0) continue;
    if (path.find("bert") != std::string::npos) continue;
    const auto file = gguf::File::open(path);
    const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(*file);  // every one loads
    if (!fs::exists(path + ".inp") || !fs::exists(path + ".out")) {
      std::cout << "[ loads    ] " << e.path().filename().string() << " (no test cases shipped)\n";
      continue;
    }
    auto cases = read_cases(path + ".inp");
    // The .out files were written from the cases read in text mode (Python's
    // universal newlines).
    for (auto& c : cases)
      for (size_t p = c.find("\r\n"); p != std::string::npos; p = c.find("\r\n", p)) c.erase(p, 1);
    const auto expected = read_expected(path + ".out");
    ASSERT_EQ(cases.size(), expected.size()) << path;
    size_t pass = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      const auto ids = tok.encode(cases[i], /*add_special=*/false, /*parse_special=*/false);
      EXPECT_EQ(ids, expected[i]) << e.path().filename() << " case " << i;
      pass += ids == expected[i];
    }
    std::cout << "[ counts   ] " << e.path().filename().string() << ": " << pass << "/" << cases.size() << "\n";
    ++vocabs;
  }
  // Qwen2's vocabulary file is stored outside git in llama.cpp (LFS); its
  // cases hold for the tiny-qwen2 fixture, which carries the same vocabulary.
  const std::string qwen_out = std::string(dir) + "/ggml-vocab-qwen2.gguf.out";
  if (fs::exists(qwen_out) && fs::exists(fixture("models/tiny-qwen2.gguf"))) {
    const tokenizer::Tokenizer tok = load_gguf_tokenizer("models/tiny-qwen2.gguf");
    auto cases = read_cases(std::string(dir) + "/ggml-vocab-qwen2.gguf.inp");
    for (auto& c : cases)
      for (size_t p = c.find("\r\n"); p != std::string::npos; p = c.find("\r\n", p)) c.erase(p, 1);
    const auto expected = read_expected(qwen_out);
    ASSERT_EQ(cases.size(), expected.size());
    size_t pass = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      const auto ids = tok.encode(cases[i], false, false);
      EXPECT_EQ(ids, expected[i]) << "qwen2 case " << i;
      pass += ids == expected[i];
    }
    std::cout << "[ counts   ] ggml-vocab-qwen2 (tiny-qwen2's vocabulary): " << pass << "/" << cases.size() << "\n";
  }
  EXPECT_GT(vocabs, 0) << "no vocabularies in " << dir;
}

}  // namespace
}  // namespace slm::test
