// The byte-level matcher: acceptance and rejection of documents, prefixes,
// UTF-8 split across bytes, limits on ambiguity and depth, snapshots.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "grammar/grammar.h"
#include "grammar/grammars.h"
#include "grammar/matcher.h"

namespace slm::grammar {
namespace {

std::shared_ptr<const Grammar> compile(const std::string& text) {
  return std::make_shared<const Grammar>(parse_gbnf(text));
}

// Whole-document check: the offset of the first bad byte, size() when the
// document stops early, or npos when it is in the language.
size_t check(const std::shared_ptr<const Grammar>& g, const std::string& doc) {
  Matcher m(g);
  const size_t n = m.accept(doc);
  if (n < doc.size()) return n;
  return m.is_complete() ? std::string::npos : doc.size();
}
constexpr size_t kOk = std::string::npos;

TEST(Matcher, Json) {
  const auto g = compile(test::kJsonGbnf);
  for (const char* doc :
       {"{}", "[]", "0", "-0.5e+10", "\"\"", "true", " null ", "{\"a\": [1, 2, {\"b\": null}]}",
        "[\"\\u00e9\\n\", \"héllo 😀\", -1.25E-3]", "{\n  \"k\" : \"v\" ,\"l\":false}"})
    EXPECT_EQ(check(g, doc), kOk) << doc;
  EXPECT_EQ(check(g, "{\"a\" 1}"), 5u);
  EXPECT_EQ(check(g, "[1,]"), 3u);
  EXPECT_EQ(check(g, "01"), 1u);
  EXPECT_EQ(check(g, "\"a\nb\""), 2u);
  EXPECT_EQ(check(g, "{\"a\":"), 5u);  // stops early
  EXPECT_EQ(check(g, "tru"), 3u);
  EXPECT_EQ(check(g, "\"\\x\""), 2u);
  EXPECT_EQ(check(g, "[1] x"), 4u);
}

// Ambiguous boundaries (x* y* x*, as unanchored patterns compile): stacks
// that reach the same content share nodes, so their number stays flat.
TEST(Matcher, AmbiguousRepetitionsKeepStacksFlat) {
  const auto g =
      std::make_shared<const Grammar>(parse_gbnf(R"(root ::= [a-z]* [a-z0-9_]* [a-z]* "!")"));
  Matcher m(g);
  size_t most = 0;
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(m.accept_byte(static_cast<uint8_t>("ab_9"[i % 4])));
    most = std::max(most, m.stack_count());
  }
  EXPECT_LE(most, 8u);
  EXPECT_EQ(m.accept("!"), 1u);
  EXPECT_TRUE(m.is_complete());
}

TEST(Matcher, Arithmetic) {
  const auto g = compile(test::kArithmeticGbnf);
  for (const char* doc : {"1", "1+2*3", "(1+2)*-3", "((((4))))/2-1"})
    EXPECT_EQ(check(g, doc), kOk) << doc;
  EXPECT_EQ(check(g, "1+"), 2u);
  EXPECT_EQ(check(g, "(1+2"), 4u);
  EXPECT_EQ(check(g, "1++2"), 2u);
  EXPECT_EQ(check(g, ")"), 0u);
}

TEST(Matcher, RepetitionBounds) {
  const auto g = compile("root ::= \"a\"{2,4} \"b\"{3} \"c\"{2,} \"d\"?\n");
  EXPECT_EQ(check(g, "aabbbcc"), kOk);
  EXPECT_EQ(check(g, "aaaabbbccccd"), kOk);
  EXPECT_EQ(check(g, "abbbcc"), 1u);
  EXPECT_EQ(check(g, "aaaaabbbcc"), 4u);
  EXPECT_EQ(check(g, "aabbcc"), 4u);
  EXPECT_EQ(check(g, "aabbbbcc"), 5u);
  EXPECT_EQ(check(g, "aabbbc"), 6u);
  EXPECT_EQ(check(g, "aabbbccdd"), 8u);
  // Repeating an empty literal is the empty string (a fuzzer find).
  EXPECT_EQ(check(compile("root ::= \"a\" \"\"? \"\"* \"\"{3} \"b\"\n"), "ab"), kOk);
  const auto nullable_star = compile("root ::= (\"a\"? \"b\"*)* \"c\"\n");
  EXPECT_EQ(check(nullable_star, "c"), kOk);
  EXPECT_EQ(check(nullable_star, "abbaabc"), kOk);
  EXPECT_EQ(check(nullable_star, "abxc"), 2u);
  const auto g0 = compile("root ::= (\"xy\"){0,2}\n");
  EXPECT_EQ(check(g0, ""), kOk);
  EXPECT_EQ(check(g0, "xyxy"), kOk);
  EXPECT_EQ(check(g0, "xyxyx"), 4u);
}

TEST(Matcher, Utf8MultiByteClasses) {
  const auto g = compile("root ::= [α-ω]+ \"→\" [^a-z] [\\U0001F600-\\U0001F64F]\n");
  EXPECT_EQ(check(g, "αβω→Z😀"), kOk);
  EXPECT_EQ(check(g, "αβω→é🙏"), kOk);
  // 'a' after the arrow, 'A' (ASCII) where a Greek letter must be.
  EXPECT_EQ(check(g, "α→a😀"), 5u);
  EXPECT_EQ(check(g, "A"), 0u);
  // A first byte whose characters are all outside the class is refused at once:
  // "Ж" (D0 96) cannot start [α-ω] (CE B1 .. CF 89).
  EXPECT_EQ(check(g, "Ж"), 0u);
  // Second byte decides: CE 91 is "Α" (capital alpha), not in α-ω.
  EXPECT_EQ(check(g, "\xCE\x91"), 1u);
  // Emoji outside the range: F0 9F 98 80 is 😀 (ok), F0 9F 99 90 is U+1F650 (not).
  EXPECT_EQ(check(g, "α→!\xF0\x9F\x99\x90"), 9u);
  // Ill-formed UTF-8 is never accepted: overlong, surrogate, stray continuation.
  const auto any = compile("root ::= .*\n");
  EXPECT_EQ(check(any, "\xC0\xAF"), 0u);
  EXPECT_EQ(check(any, "\xED\xA0\x80"), 1u);
  EXPECT_EQ(check(any, "a\x80"), 1u);
  EXPECT_EQ(check(any, "\xE2\x82"), 2u);  // incomplete at the end
  EXPECT_EQ(check(any, "\xF4\x8F\xBF\xBF"), kOk);
  EXPECT_EQ(check(any, "\xF4\x90\x80\x80"), 1u);
}

TEST(Matcher, PrefixViabilityAndCompletion) {
  const auto g = compile("root ::= \"ab\" | \"abc\"\n");
  Matcher m(g);
  EXPECT_FALSE(m.is_complete());
  EXPECT_TRUE(m.accept_byte('a'));
  EXPECT_FALSE(m.accept_byte('x'));  // rejected bytes leave the state alone
  EXPECT_TRUE(m.accept_byte('b'));
  EXPECT_TRUE(m.is_complete());
  EXPECT_FALSE(m.is_finished());
  EXPECT_TRUE(m.accept_byte('c'));
  EXPECT_TRUE(m.is_finished());
  EXPECT_FALSE(m.accept_byte('c'));
  m.reset();
  EXPECT_FALSE(m.is_complete());
  EXPECT_TRUE(m.accept_byte('a'));
}

TEST(Matcher, SnapshotsRestoreState) {
  const auto g = compile(test::kJsonGbnf);
  Matcher m(g);
  ASSERT_EQ(m.accept("{\"k\": "), 6u);
  Matcher::Snapshot snap;
  m.save(snap);
  EXPECT_EQ(m.accept("[1, 2]}"), 7u);
  EXPECT_TRUE(m.is_complete());
  m.restore(snap);
  EXPECT_FALSE(m.is_complete());
  EXPECT_EQ(m.accept("\"v\"}"), 4u);
  EXPECT_TRUE(m.is_complete());
}

TEST(Matcher, AmbiguityIsCappedWithAClearError) {
  // After n a's, 2^n distinct stacks are pending ("b" or "c" closers).
  const auto g = compile("root ::= s\ns ::= \"a\" s \"b\" | \"a\" s \"c\" | \"x\"\n");
  Matcher m(g);
  try {
    m.accept(std::string(40, 'a'));
    FAIL() << "expected a limit error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too ambiguous"), std::string::npos);
  }
}

TEST(Matcher, DepthIsCapped) {
  const auto g = compile(test::kJsonGbnf);
  MatcherLimits lim;
  lim.max_depth = 200;
  Matcher m(g, lim);
  EXPECT_THROW(m.accept(std::string(1000, '[')), Error);
  // Within the limit, deep nesting works.
  Matcher ok(g);
  const std::string doc = std::string(500, '[') + std::string(500, ']');
  EXPECT_EQ(ok.accept(doc), doc.size());
  EXPECT_TRUE(ok.is_complete());
}

TEST(Matcher, LongInputStaysBounded) {
  const auto g = compile(test::kJsonGbnf);
  Matcher m(g);
  std::string doc = "[";
  for (int i = 0; i < 5000; ++i) doc += "{\"key\": [1, \"two\", null]},";
  doc += "0]";
  EXPECT_EQ(m.accept(doc), doc.size());
  EXPECT_TRUE(m.is_complete());
}

// state_key (token masks intern a walk's states by it) is finer than the
// signature: on random walks, every state reached by one byte from the
// states along the walk (partial UTF-8 characters included) maps its key to
// one signature. And a character that takes the state back to itself gives
// the same key (hash-consed stacks), which is how a walk finds loops.
TEST(Matcher, StateKeyImpliesSignature) {
  // JSON (non-ASCII inside strings: canonical partial characters) and
  // classes that split the non-ASCII ranges (partial characters kept as is).
  const std::shared_ptr<const Grammar> grammars[] = {
      compile(test::kJsonGbnf),
      compile(
          R"(root ::= "\"" ( [a-c] | [\u00c0-\u00c3\u00e0-\u00e8\u0100-\u0105] | [\u2080-\u2090\u20c0-\u20c5] | "😀" )* "\"")")};
  const std::string alphabet =
      "{}[]\":, 0123456789-.eEtrufalsn\\abc\xC3\xA9\xC4\x81\xE2\x82\xAC\xF0\x9F\x98\x80";
  std::mt19937 rng(5);
  std::map<std::vector<uint32_t>, std::vector<uint32_t>> sig_of;
  size_t partial_states = 0, checked = 0;
  for (int walk = 0; walk < 20; ++walk) {
    Matcher m(grammars[walk % 2]);
    Matcher::Snapshot at, step;
    sig_of.clear();  // keys hold node ids: valid until the arena drops nodes
    for (int len = 0; len < 60; ++len) {
      m.save(at);
      for (int b = 0; b < 256; ++b) {
        m.load(at);
        if (!m.accept_byte(static_cast<uint8_t>(b))) continue;
        std::vector<uint32_t> key, sig;
        m.state_key(key);
        m.signature(sig);
        partial_states += key[1] != 0;
        const auto [it, added] = sig_of.emplace(key, sig);
        if (!added) {
          EXPECT_EQ(it->second, sig) << "walk " << walk << " byte " << b;
        }
        ++checked;
      }
      m.load(at);
      // Extend the walk by a viable byte from the alphabet (or stop).
      std::string order = alphabet;
      std::shuffle(order.begin(), order.end(), rng);
      bool moved = false;
      for (char c : order)
        if ((moved = m.accept_byte(static_cast<uint8_t>(c)))) break;
      if (!moved) break;
    }
  }
  EXPECT_GT(checked, 1000u);
  EXPECT_GT(partial_states, 10u) << "no partial UTF-8 state was checked";
  // Inside a string, a letter loops: the key after "ab equals the key after "a.
  Matcher m(compile(test::kJsonGbnf));
  std::vector<uint32_t> k1, k2, k3;
  ASSERT_EQ(m.accept("[\"a"), 3u);
  m.state_key(k1);
  ASSERT_EQ(m.accept("b"), 1u);
  m.state_key(k2);
  EXPECT_EQ(k1, k2);
  ASSERT_EQ(m.accept("\""), 1u);
  m.state_key(k3);
  EXPECT_NE(k1, k3);
}

}  // namespace
}  // namespace slm::grammar
