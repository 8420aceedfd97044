// Token masks on a synthetic vocabulary: the trie walk allows exactly the
// tokens whose bytes keep the matcher viable (checked token by token).
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <thread>
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
  for (const char* s :
       {"{",     "{\"", "\":", "\": ", "\",",      "true",      "tr",       "null",
        "nul",   "12",  "0.",  "e+",   "[{",       "}]",        " [",       "  ",
        "\\u00", "\\n", "é",   "\xC3", "\xA9\"",   "😀",         "\xF0\x9F", "\x98\x80",
        "abc",   "a\"", "\"a", "name", "\"name\"", "\"id\": 1", "}",        "]]"})
    v.push_back(s);
  v.push_back("");      // a special token: never allowed
  v.push_back("true");  // a duplicate spelling
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

// A vocabulary shaped like a byte-level BPE one, big enough that the walk's
// loop-set skips fire: every single byte, then random strings over letters,
// digits, JSON punctuation, whitespace and control bytes, escapes, whole
// multi-byte characters and stray UTF-8 fragments.
std::vector<std::string> random_vocab(uint32_t seed, size_t n) {
  std::mt19937 rng(seed);
  // Most tokens are words (letters, digits, spaces, whole characters); the
  // rest mix in JSON punctuation, escapes, control bytes and UTF-8 fragments.
  const std::vector<std::string> clean = {"a", "b",  "e",    "n",  "r",   "t",    "u",   "x",
                                          "Z", "_",  "0",    "1",  "5",   "9",    " ",   "é",
                                          "😀", "中", "name", "id", "abc", "http", "true"};
  const std::vector<std::string> dirty = {
      "-",    "+",    ".",    "\n",   "\"",   "\\",       "\\u00e9",
      "\\n",  ":",    ",",    "{",    "}",    "[",        "]",
      "\t",   "\x01", "\x7f", "\xC3", "\xA9", "\xE4\xB8", "\xF0\x9F\x98",
      "\x80", "\xFF", "null", "://",  "\": ", "\","};
  std::vector<std::string> v;
  for (int b = 0; b < 256; ++b) v.push_back(std::string(1, static_cast<char>(b)));
  std::uniform_int_distribution<size_t> pick_clean(0, clean.size() - 1),
      pick_dirty(0, dirty.size() - 1), len(1, 6), coin(0, 9);
  while (v.size() < n) {
    std::string t;
    const bool mixed = coin(rng) < 3;
    for (size_t k = len(rng); k > 0; --k)
      t += mixed && coin(rng) < 4 ? dirty[pick_dirty(rng)] : clean[pick_clean(rng)];
    v.push_back(t);
  }
  v.push_back("");  // a special token
  return v;
}

// Random walks through the language: at each state the computed mask must be
// bit-identical to the token-by-token check, then a random allowed token is
// taken. One MaskComputer per walk (its caches and loop sets in play) and a
// fresh one per state.
// Returns how many subtrees the loop sets took whole.
size_t random_walks(const std::shared_ptr<const Grammar>& g, const std::vector<std::string>& vocab,
                    uint32_t seed, size_t walks, size_t steps, size_t* views = nullptr) {
  const TokenTrie trie(vocab);
  std::mt19937 rng(seed);
  size_t skips = 0;
  for (size_t w = 0; w < walks; ++w) {
    Matcher m(g);
    MaskComputer mc(trie);
    for (size_t s = 0; s < steps; ++s) {
      std::vector<uint64_t> mask, fresh_mask;
      mc.compute(m, mask);
      MaskComputer fresh(trie);
      fresh.compute(m, fresh_mask);
      EXPECT_EQ(mask, fresh_mask) << "walk " << w << " step " << s;
      const auto want = brute_force(m, vocab);
      std::vector<size_t> allowed;
      for (size_t i = 0; i < vocab.size(); ++i) {
        const bool got = (mask[i >> 6] >> (i & 63)) & 1;
        EXPECT_EQ(got, want[i]) << "walk " << w << " step " << s << ": token " << i << " '"
                                << vocab[i] << "'";
        if (got) allowed.push_back(i);
      }
      if (allowed.empty()) break;
      const size_t id = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
      if (m.accept(vocab[id]) != vocab[id].size()) {
        ADD_FAILURE() << "an allowed token was rejected: '" << vocab[id] << "'";
        break;
      }
    }
    skips += mc.loop_skips();
  }
  if (views) *views += trie.loop_views();
  return skips;
}

TEST(TokenMask, RandomStatesMatchBruteForceJson) {
  const auto vocab = random_vocab(1, 3000);
  EXPECT_GT(
      random_walks(std::make_shared<const Grammar>(parse_gbnf(test::kJsonGbnf)), vocab, 7, 6, 40),
      0u)
      << "the walks never took a subtree whole";
  // Loops over ASCII only: subtrees with non-ASCII characters must be walked.
  EXPECT_GT(random_walks(std::make_shared<const Grammar>(
                             parse_gbnf(R"(root ::= "\"" [a-z0-9 _]* "\"" | [^\x80-\U0010FFFF]+)")),
                         vocab, 9, 6, 20),
            0u);
}

TEST(TokenMask, RandomStatesMatchBruteForceSchemas) {
  const auto vocab = random_vocab(2, 3000);
  size_t skips = 0;
  for (
      const char* schema : {
          R"({"type":"object","properties":{"name":{"type":"string"},"tags":{"type":"array","items":{"type":"string","maxLength":5}},"n":{"type":"integer","minimum":-5,"maximum":300}}})",
          R"({"type":"object","properties":{"a":{"type":"string","pattern":"^[a-z_]+$"},"b":{"enum":["x","yy",1,null]}},"additionalProperties":{"type":"string"}})",
          R"({"type":"array","items":{"anyOf":[{"type":"string","format":"uri"},{"type":"number"},{"type":"object"}]}})",
      }) {
    SCOPED_TRACE(schema);
    skips += random_walks(std::make_shared<const Grammar>(compile_json_schema(schema)), vocab, 11,
                          4, 30);
  }
  EXPECT_GT(skips, 0u) << "the walks never took a subtree whole";
}

// Many listed properties (beyond the any-order limit: schema order and
// required-first order), the states with the most stacks in MaskBench: keys
// sharing prefixes, masks interned by state key, bit-identical to brute force.
TEST(TokenMask, RandomStatesMatchBruteForceManyProperties) {
  auto vocab = random_vocab(5, 3000);
  for (const char* k :
       {"\"alpha", "\"alpine\"", "\"beta\": ", "gamma", "\"delta\":", "\"epsilon", "zeta\"", "eta"})
    vocab.push_back(k);
  const char* schema =
      R"({"type":"object","properties":{"alpha":{"type":"integer"},"alpine":{"type":"string","maxLength":4},)"
      R"("beta":{"type":"boolean"},"gamma":{"enum":["x","y"]},"delta":{"type":"integer"},"epsilon":{"type":"string"},)"
      R"("zeta":{"type":"null"},"eta":{"type":"number"}},"required":["eta","beta","alpha"]})";
  random_walks(std::make_shared<const Grammar>(compile_json_schema(schema)), vocab, 17, 8, 40);
}

// Loop views (shared per vocabulary): strings whose state loops, keys where
// most first bytes lead to one looping state, counted repetitions walked as
// a chain (tokens longer than the view's length bitsets too), ambiguous
// unanchored patterns, non-ASCII inside and outside the sets.
TEST(TokenMask, RandomStatesMatchBruteForceLoopViews) {
  const auto vocab = random_vocab(3, 4000);
  size_t views = 0;
  for (
      const char* gbnf : {
          R"(root ::= "\"" [^"\\\x00-\x1F]{0,40} "\"")",
          R"(root ::= "\"" [^"\\\x00-\x1F\x80-\U0010FFFF]{2,25} "\"" [0-9]*)",
          R"(root ::= "{" ( "\"" ( "alpha" | "name" | [^"\\\x00-\x1F]+ ) "\"" ":" [0-9]+ "," )* "}")",
      }) {
    SCOPED_TRACE(gbnf);
    random_walks(std::make_shared<const Grammar>(parse_gbnf(gbnf)), vocab, 5, 5, 30, &views);
  }
  for (
      const char* schema : {
          R"({"type":"object","properties":{"s":{"type":"string","maxLength":30},"t":{"type":"string","minLength":3,"maxLength":7}},"additionalProperties":{"type":"integer"}})",
          R"({"type":"array","items":{"type":"string","pattern":"[A-Za-z0-9_-]*"}})",
      }) {
    SCOPED_TRACE(schema);
    random_walks(std::make_shared<const Grammar>(compile_json_schema(schema)), vocab, 13, 4, 40,
                 &views);
  }
  EXPECT_GT(views, 0u) << "no loop view was built";
}

// One trie, its loop views built and read by several threads at once.
TEST(TokenMask, LoopViewsSharedAcrossThreads) {
  const auto vocab = random_vocab(4, 3000);
  const TokenTrie trie(vocab);
  const auto g = std::make_shared<const Grammar>(parse_gbnf(test::kJsonGbnf));
  const std::string doc =
      "[\"ab c\", {\"k\": \"\xC3\xA9 x\"}, \"lo"
      "ng er\"]";
  std::vector<std::vector<std::vector<uint64_t>>> got(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < got.size(); ++t)
    threads.emplace_back([&, t] {
      Matcher m(g);
      MaskComputer mc(trie);
      for (size_t i = 0; i <= doc.size(); ++i) {
        got[t].emplace_back();
        mc.compute(m, got[t].back());
        if (i < doc.size()) m.accept_byte(static_cast<uint8_t>(doc[i]));
      }
    });
  for (auto& th : threads) th.join();
  Matcher m(g);
  for (size_t i = 0; i <= doc.size(); ++i) {
    const auto want = brute_force(m, vocab);
    for (size_t t = 0; t < got.size(); ++t) {
      ASSERT_EQ(got[t].size(), doc.size() + 1);
      for (size_t k = 0; k < vocab.size(); ++k)
        ASSERT_EQ(((got[t][i][k >> 6] >> (k & 63)) & 1) != 0, want[k])
            << "thread " << t << " at " << i << " token " << k;
    }
    if (i < doc.size()) {
      ASSERT_TRUE(m.accept_byte(static_cast<uint8_t>(doc[i])));
    }
  }
  EXPECT_GT(trie.loop_views(), 0u);
}

}  // namespace
}  // namespace slm::grammar
