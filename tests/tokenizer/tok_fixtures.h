// Shared helpers for the tokenizer tests: loading the fixture vocabularies and
// the llama.cpp-style case files (cases separated by "\n__ggml_vocab_test__\n").
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "common/fixtures.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace slm::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Each case is the text between separators; the text after the last
// separator is empty and is not a case.
inline std::vector<std::string> read_cases(const std::string& path) {
  const std::string text = read_file(path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> cases;
  size_t pos = 0;
  while (true) {
    const size_t next = text.find(sep, pos);
    if (next == std::string::npos) {
      if (pos < text.size()) cases.push_back(text.substr(pos));
      break;
    }
    cases.push_back(text.substr(pos, next - pos));
    pos = next + sep.size();
  }
  return cases;
}

// One line of space-separated ids per case.
inline std::vector<std::vector<int32_t>> read_expected(const std::string& path) {
  std::vector<std::vector<int32_t>> out;
  std::istringstream in(read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    long long v = 0;
    while (ls >> v) ids.push_back(static_cast<int32_t>(v));
    out.push_back(std::move(ids));
  }
  return out;
}

inline tokenizer::Tokenizer load_gguf_tokenizer(const std::string& rel) {
  auto file = gguf::File::open(fixture(rel));
  return tokenizer::Tokenizer::from_gguf(*file);
}

}  // namespace slm::test
