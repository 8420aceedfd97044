// Token masks on a synthetic vocabulary: the trie walk allows exactly the
// tokens whose bytes keep the matcher viable (checked token by token).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/grammars.h"
#include "grammar/json_schema.h"
#include "grammar/matcher.h"
#include "grammar/token_mask.h"

namespace slm::grammar {
namespace {

std::vector<std::string> synthetic_vocab() {
  std::vector<std::string> v;
  for (int b = 0; b < 256; ++b) v.push_back(std::string(1, static_cast<char>(b)));
  for (const char* s : {"{", "{\"", "\":", "\": ", "\",", "true", "tr", "null", "nul", "12", "0.", "e+",
                        "[{", "}]", " [", "  ", "\\u00", "\\n", "é", "\xC3", "\xA9\"", "😀", "\xF0\x9F",
                        "\x98\x80", "abc", "a\"", "\"a", "name", "\"name\"", "\"id\": 1", "}", "]]"})
    v.push_back(s);
  v.push_back("");       // a special token: never allowed
  v.push_back("true");   // a duplicate spelling
  return v;
}

std::vector<bool> brute_force(Matcher& m, const std::vector<std::string>& vocab) {
  std::vector<bool> ok(vocab.size());
  Matcher::Snapshot s;
  for (size_t i = 0; i < vocab.size(); ++i) {
    if (vocab[i].empty()) continue;
    m.save(s);
    size_t k = 0;
    while (k < vocab[i].size() && m.accept_byte(static_cast<uint8_t>(vocab[i][k]))) ++k;
    ok[i] = k == vocab[i].size();
    m.restore(s);
  }
  return ok;
}

void expect_same(Matcher& m, const std::vector<std::string>& vocab, const TokenTrie& trie,
                 const std::string& where, MaskComputer* shared = nullptr) {
  MaskComputer own(trie);
  MaskComputer& mc = shared ? *shared : own;
  std::vector<uint64_t> mask;
  mc.compute(m, mask);
  const auto want = brute_force(m, vocab);
  size_t allowed = 0;
  for (size_t i = 0; i < vocab.size(); ++i) {
    const bool got = (mask[i >> 6] >> (i & 63)) & 1;
    EXPECT_EQ(got, want[i]) << where << ": token " << i << " '" << vocab[i] << "'";
    allowed += got;
  }
  EXPECT_GT(allowed, 0u) << where;
}

TEST(TokenMask, MatchesBruteForceAlongJsonDocuments) {
  const auto vocab = synthetic_vocab();
  const TokenTrie trie(vocab);
  for (const char* text : {test::kJsonGbnf}) {
    const auto g = std::make_shared<const Grammar>(parse_gbnf(text));
    Matcher m(g);
    const std::string doc = "{\"name\": [\"é😀\\u00e9\", 12.5e+3, true, null], \"id\": {}}";
    for (size_t i = 0; i <= doc.size(); ++i) {
      expect_same(m, vocab, trie, "after " + doc.substr(0, i));
      if (i < doc.size()) {
      ASSERT_TRUE(m.accept_byte(static_cast<uint8_t>(doc[i])));
    }
    }
  }
}

TEST(TokenMask, MatchesBruteForceForASchema) {
  const auto vocab = synthetic_vocab();
  const TokenTrie trie(vocab);
  const auto g = std::make_shared<const Grammar>(compile_json_schema(
      R"({"type":"object","properties":{"name":{"type":"string","maxLength":3},"id":{"type":"integer","minimum":1,"maximum":20}},"required":["id"],"additionalProperties":false})"));
  Matcher m(g);
  const std::string doc = "{\"name\": \"abc\", \"id\": 12}";
  for (size_t i = 0; i <= doc.size(); ++i) {
    expect_same(m, vocab, trie, "after " + doc.substr(0, i));
    if (i < doc.size()) {
      ASSERT_TRUE(m.accept_byte(static_cast<uint8_t>(doc[i])));
    }
  }
  EXPECT_TRUE(m.is_complete());
}

TEST(TokenMask, LocalContextReuseMatchesBruteForce) {
  // The same string and number rules at several nesting depths: the masks
  // come from the local-signature cache, re-walking only what looks deeper.
  const auto vocab = synthetic_vocab();
  const TokenTrie trie(vocab);
  const auto g = std::make_shared<const Grammar>(parse_gbnf(test::kJsonGbnf));
  Matcher m(g);
  MaskComputer mc(trie);
  const std::string doc = "[\"ab\", [\"cd\", [\"e\\\"f\", 12, {\"k\": [\"gé\", 3]}]], \"h\", 4]";
  for (size_t i = 0; i <= doc.size(); ++i) {
    expect_same(m, vocab, trie, "after " + doc.substr(0, i), &mc);
    if (i < doc.size()) {
      ASSERT_TRUE(m.accept_byte(static_cast<uint8_t>(doc[i])));
    }
  }
  EXPECT_GT(mc.local_hits(), 0u);
}

TEST(TokenMask, LeavesTheMatcherAsItWas) {
  const auto vocab = synthetic_vocab();
  const TokenTrie trie(vocab);
  const auto g = std::make_shared<const Grammar>(parse_gbnf(test::kJsonGbnf));
  Matcher m(g);
  ASSERT_EQ(m.accept("[1, \"a"), 6u);
  MaskComputer mc(trie);
  std::vector<uint64_t> mask;
  mc.compute(m, mask);
  EXPECT_EQ(m.accept("\"]"), 2u);
  EXPECT_TRUE(m.is_complete());
}

}  // namespace
}  // namespace slm::grammar
