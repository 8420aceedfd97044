// The grammar module's compiled form and its GBNF front end (llama.cpp's
// grammars/README syntax). A leaf: it knows nothing of models or tokenizers.
//
// Compiled shape: every rule is a list of alternatives; every alternative is a
// run of elements in one flat `code` array, ended by a kEnd element. An element
// is a character class (a sorted set of code-point ranges) or a reference to a
// rule. Repetitions (`* + ? {m,n}`) and groups are lowered to generated rules
// whose recursive reference sits in tail position, so a matcher can drop the
// return address and keep its stacks shallow (see matcher.h).
//
// Errors: parse_gbnf throws slm::Error "LINE:COL: message" for any syntax
// error, an undefined rule (at its first use), a missing `root`, a rule that
// can recurse without consuming input while leaving work behind (left
// recursion; a loop made only of tail references, such as a repetition of
// something that can be empty, is fine), or a grammar larger than GrammarLimits.
// Everything is bounded: input size, nesting depth, repetition counts and the
// size of the lowered program.
//
// Thread-safety: a Grammar is immutable after parse_gbnf and may be shared by
// any number of matchers and threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::grammar {

struct GrammarLimits {
  size_t max_source_bytes = 16u << 20;   // GBNF text
  size_t max_elements = 4u << 20;        // flat program size after lowering
  size_t max_rules = 1u << 20;           // rules after lowering
  uint32_t max_repeat = 100000;          // m and n in {m,n}
  uint32_t max_nesting = 256;            // parenthesis depth
};

struct CodeRange {
  char32_t lo, hi;  // inclusive
};

// The ranges without the UTF-16 surrogates U+D800..U+DFFF, which no UTF-8
// text (and so no JSON string slm emits) contains.
std::vector<CodeRange> without_surrogates(const std::vector<CodeRange>& in);

// A set of code points: sorted, disjoint, non-adjacent ranges, with a bitmap
// for ASCII so the common case is one test.
struct CharClass {
  std::vector<CodeRange> ranges;
  uint64_t ascii[2] = {0, 0};
  bool contains(char32_t c) const {
    if (c < 128) return (ascii[c >> 6] >> (c & 63)) & 1;
    return contains_slow(c);
  }
  bool contains_slow(char32_t c) const;
  // True when some code point in [lo, hi] is in the set.
  bool intersects(char32_t lo, char32_t hi) const;
  // True when some code point in [lo, hi] is NOT in the set.
  bool intersects_gap(char32_t lo, char32_t hi) const;
};

enum class Op : uint8_t { kChar, kRef, kEnd };

struct Element {
  Op op;
  uint32_t arg;  // class index (kChar) or rule index (kRef)
};

struct Grammar {
  std::vector<Element> code;                  // all alternatives, each ended by kEnd
  std::vector<std::vector<uint32_t>> alts;    // rule -> start offsets into code
  std::vector<CharClass> classes;
  std::vector<std::string> rule_names;        // for messages and dumps
  uint32_t root = 0;
};

// Parses and lowers GBNF text. Throws slm::Error "LINE:COL: ..." (1-based).
Grammar parse_gbnf(std::string_view text, const GrammarLimits& limits = {});

}  // namespace slm::grammar
