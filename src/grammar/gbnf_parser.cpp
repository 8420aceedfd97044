// GBNF text -> Grammar (grammar.h). A recursive-descent parser over bytes with
// one builder: literals and classes become interned CharClasses, groups and
// repetitions become generated rules, and the result is flattened into the
// kEnd-terminated program. Then two fixpoints over the rules (nullable, then a
// DFS over "can start with" edges) refuse rules that recurse without input.
//
// Cost: O(text + lowered program); recursion depth <= limits.max_nesting.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/utf8.h"
#include "grammar/grammar.h"

namespace slm::grammar {

std::vector<CodeRange> without_surrogates(const std::vector<CodeRange>& in) {
  std::vector<CodeRange> out;
  for (CodeRange r : in) {
    if (r.hi < 0xD800 || r.lo > 0xDFFF) {
      out.push_back(r);
      continue;
    }
    if (r.lo < 0xD800) out.push_back({r.lo, 0xD7FF});
    if (r.hi > 0xDFFF) out.push_back({0xE000, r.hi});
  }
  return out;
}

bool CharClass::contains_slow(char32_t c) const {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), c,
                             [](char32_t v, const CodeRange& r) { return v < r.lo; });
  return it != ranges.begin() && c <= std::prev(it)->hi;
}

bool CharClass::intersects(char32_t lo, char32_t hi) const {
  for (const CodeRange& r : ranges)
    if (r.lo <= hi && lo <= r.hi) return true;
  return false;
}

bool CharClass::intersects_gap(char32_t lo, char32_t hi) const {
  // [lo, hi] is covered when one range holds all of it (ranges never touch).
  for (const CodeRange& r : ranges)
    if (r.lo <= lo && hi <= r.hi) return false;
  return true;
}

namespace {

struct Sym {
  bool is_class;
  uint32_t id;
};
using Seq = std::vector<Sym>;

struct RuleDef {
  std::string name;
  std::vector<Seq> alts;
  bool defined = false;
  size_t where = 0;  // definition (or first use while undefined)
};

class Parser {
 public:
  Parser(std::string_view text, const GrammarLimits& limits) : s_(text), lim_(limits) {}

  Grammar run() {
    if (s_.size() > lim_.max_source_bytes) fail(0, "grammar is larger than the limit");
    skip_space(true);
    while (i_ < s_.size()) {
      parse_rule();
      skip_space(true);
    }
    for (const RuleDef& r : rules_)
      if (!r.defined) fail(r.where, std::string("undefined rule '") + r.name + "'");
    auto root = names_.find("root");
    if (root == names_.end()) fail(s_.size(), "the grammar has no 'root' rule");
    Grammar g = flatten();
    g.root = root->second;
    check_recursion(g);
    return g;
  }

 private:
  [[noreturn]] void fail(size_t at, const std::string& msg) const {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < at && k < s_.size(); ++k) {
      if (s_[k] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw Error(std::to_string(line) + ":" + std::to_string(col) + ": " + msg);
  }

  bool at_end() const { return i_ >= s_.size(); }
  char peek(size_t ahead = 0) const { return i_ + ahead < s_.size() ? s_[i_ + ahead] : '\0'; }
  static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
  }

  void skip_space(bool newline_ok) {
    while (!at_end()) {
      const char c = s_[i_];
      if (c == ' ' || c == '\t' || (newline_ok && (c == '\n' || c == '\r'))) {
        ++i_;
      } else if (c == '#') {
        while (!at_end() && s_[i_] != '\n') ++i_;
      } else {
        break;
      }
    }
  }

  uint32_t rule_id(const std::string& name, size_t where) {
    auto [it, added] = names_.emplace(name, static_cast<uint32_t>(rules_.size()));
    if (added) new_rule(name, where);
    return it->second;
  }
  uint32_t new_rule(std::string name, size_t where) {
    if (rules_.size() >= lim_.max_rules) fail(where, "grammar has too many rules");
    rules_.push_back(RuleDef{std::move(name), {}, false, where});
    return static_cast<uint32_t>(rules_.size() - 1);
  }
  uint32_t generated(const std::string& base, std::vector<Seq> alts, size_t where) {
    const uint32_t id = new_rule(base + "_" + std::to_string(rules_.size()), where);
    rules_[id].alts = std::move(alts);
    rules_[id].defined = true;
    return id;
  }
  void count(size_t n, size_t where) {
    n_elements_ += n;
    if (n_elements_ > lim_.max_elements) fail(where, "grammar is too large after expansion");
  }

  uint32_t intern(std::vector<CodeRange> ranges) {
    std::sort(ranges.begin(), ranges.end(),
              [](const CodeRange& a, const CodeRange& b) { return a.lo < b.lo; });
    std::vector<CodeRange> merged;
    for (const CodeRange& r : ranges) {
      if (!merged.empty() && r.lo <= merged.back().hi + 1)
        merged.back().hi = std::max(merged.back().hi, r.hi);
      else
        merged.push_back(r);
    }
    std::vector<std::pair<char32_t, char32_t>> key;
    for (const CodeRange& r : merged) key.emplace_back(r.lo, r.hi);
    auto [it, added] = class_ids_.emplace(key, static_cast<uint32_t>(classes_.size()));
    if (added) {
      CharClass c;
      c.ranges = std::move(merged);
      for (const CodeRange& r : c.ranges)
        for (char32_t v = r.lo; v <= r.hi && v < 128; ++v) c.ascii[v >> 6] |= uint64_t{1} << (v & 63);
      classes_.push_back(std::move(c));
    }
    return it->second;
  }

  // One code point of a literal or class, escapes included.
  char32_t parse_char() {
    const size_t at = i_;
    if (at_end()) fail(at, "unexpected end of grammar");
    if (s_[i_] != '\\') {
      size_t len = 0;
      if (utf8::valid_len(s_, i_) == 0) fail(at, "invalid UTF-8 in grammar");
      const char32_t c = utf8::decode(s_, i_, &len);
      i_ += len;
      return c;
    }
    ++i_;
    if (at_end()) fail(at, "unfinished escape");
    const char e = s_[i_++];
    int digits = 0;
    switch (e) {
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case '0': return 0;
      case '\\': case '"': case '\'': case '[': case ']': case '-': case '/': case '^': case '.':
        return static_cast<unsigned char>(e);
      case 'x': digits = 2; break;
      case 'u': digits = 4; break;
      case 'U': digits = 8; break;
      default: fail(at, std::string("unknown escape '\\") + e + "'");
    }
    uint32_t v = 0;
    for (int k = 0; k < digits; ++k) {
      const char h = peek();
      int d = -1;
      if (h >= '0' && h <= '9') d = h - '0';
      else if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
      if (d < 0) fail(i_, "expected a hex digit in escape");
      v = v * 16 + static_cast<uint32_t>(d);
      ++i_;
    }
    if (v > utf8::kMaxCodePoint || (v >= 0xD800 && v <= 0xDFFF))
      fail(at, "escape is not a Unicode scalar value");
    return v;
  }

  uint32_t parse_class() {  // at '['
    const size_t at = i_++;
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++i_;
    }
    std::vector<CodeRange> rs;
    while (true) {
      if (at_end()) fail(at, "unterminated character class");
      if (s_[i_] == ']') break;
      const size_t c_at = i_;
      const char32_t lo = parse_char();
      char32_t hi = lo;
      if (peek() == '-' && peek(1) != ']' && i_ + 1 < s_.size()) {
        ++i_;
        hi = parse_char();
        if (hi < lo) fail(c_at, "character range is reversed");
      }
      rs.push_back({lo, hi});
    }
    ++i_;
    if (negated) {
      std::vector<CodeRange> in = rs, out;
      std::sort(in.begin(), in.end(), [](auto& a, auto& b) { return a.lo < b.lo; });
      char32_t next = 0;
      for (const CodeRange& r : in) {
        if (r.lo > next) out.push_back({next, r.lo - 1});
        next = std::max<char32_t>(next, r.hi + 1);
      }
      if (next <= utf8::kMaxCodePoint) out.push_back({next, utf8::kMaxCodePoint});
      rs = std::move(out);
    }
    rs = without_surrogates(rs);
    if (rs.empty()) fail(at, "character class matches nothing");
    return intern(std::move(rs));
  }

  uint32_t parse_count() {
    const size_t at = i_;
    uint64_t v = 0;
    if (!(peek() >= '0' && peek() <= '9')) fail(at, "expected a number");
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + static_cast<uint64_t>(peek() - '0');
      if (v > lim_.max_repeat) fail(at, "repetition count is above the limit");
      ++i_;
    }
    return static_cast<uint32_t>(v);
  }

  // Replaces seq[start..] (one item) by its repetition {lo, hi}; hi < 0 is unbounded.
  void repeat(Seq& seq, size_t start, uint32_t lo, int64_t hi, const std::string& base,
              size_t where) {
    Seq item(seq.begin() + static_cast<ptrdiff_t>(start), seq.end());
    seq.resize(start);
    if (item.empty()) return;  // a repeated "" is still ""
    if (item.size() > 1) item = {Sym{false, generated(base, {item}, where)}};
    const Sym x = item[0];
    count(static_cast<size_t>(lo) + 2 * static_cast<size_t>(hi < 0 ? 1 : hi - lo), where);
    for (uint32_t k = 0; k < lo; ++k) seq.push_back(x);
    if (hi < 0) {
      const uint32_t star = new_rule(base + "_" + std::to_string(rules_.size()), where);
      rules_[star].alts = {{x, Sym{false, star}}, {}};
      rules_[star].defined = true;
      seq.push_back(Sym{false, star});
    } else if (hi > lo) {
      uint32_t opt = generated(base, {{x}, {}}, where);
      for (int64_t k = lo + 1; k < hi; ++k) opt = generated(base, {{x, Sym{false, opt}}, {}}, where);
      seq.push_back(Sym{false, opt});
    }
  }

  Seq parse_sequence(const std::string& base, uint32_t depth) {
    Seq seq;
    size_t last = SIZE_MAX;  // start of the last item, for a postfix operator
    const bool nested = depth > 0;
    while (!at_end()) {
      const size_t at = i_;
      const char c = s_[i_];
      if (c == '"') {
        ++i_;
        last = seq.size();
        while (true) {
          if (at_end()) fail(at, "unterminated literal");
          if (s_[i_] == '"') break;
          if (s_[i_] == '\n') fail(at, "unterminated literal");
          const char32_t ch = parse_char();
          seq.push_back(Sym{true, intern({{ch, ch}})});
        }
        ++i_;
        count(seq.size() - last, at);
      } else if (c == '[') {
        last = seq.size();
        seq.push_back(Sym{true, parse_class()});
        count(1, at);
      } else if (c == '.') {
        ++i_;
        last = seq.size();
        seq.push_back(Sym{true, intern({{0, 0xD7FF}, {0xE000, utf8::kMaxCodePoint}})});
        count(1, at);
      } else if (c == '(') {
        ++i_;
        if (depth + 1 > lim_.max_nesting) fail(at, "groups are nested too deeply");
        skip_space(true);
        auto alts = parse_alternates(base, depth + 1);
        if (peek() != ')') fail(i_, "expected ')'");
        ++i_;
        last = seq.size();
        seq.push_back(Sym{false, generated(base, std::move(alts), at)});
        count(1, at);
      } else if (is_name_char(c)) {
        size_t j = i_;
        while (j < s_.size() && is_name_char(s_[j])) ++j;
        const std::string name(s_.substr(i_, j - i_));
        // A name followed by ::= starts the next rule: the sequence ended.
        size_t k = j;
        while (k < s_.size() && (s_[k] == ' ' || s_[k] == '\t')) ++k;
        if (s_.substr(k, 3) == "::=") fail(at, "expected a newline before the next rule");
        i_ = j;
        last = seq.size();
        seq.push_back(Sym{false, rule_id(name, at)});
        count(1, at);
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (last == SIZE_MAX) fail(at, std::string("'") + c + "' has nothing to repeat");
        ++i_;
        uint32_t lo = 0;
        int64_t hi = -1;
        if (c == '+') lo = 1;
        if (c == '?') hi = 1;
        if (c == '{') {
          skip_space(false);
          lo = parse_count();
          skip_space(false);
          hi = lo;
          if (peek() == ',') {
            ++i_;
            skip_space(false);
            hi = peek() == '}' ? -1 : static_cast<int64_t>(parse_count());
            skip_space(false);
          }
          if (peek() != '}') fail(i_, "expected '}'");
          ++i_;
          if (hi >= 0 && hi < lo) fail(at, "repetition {m,n} has n < m");
        }
        repeat(seq, last, lo, hi, base, at);
        last = SIZE_MAX;
      } else {
        break;
      }
      skip_space(nested);
    }
    return seq;
  }

  std::vector<Seq> parse_alternates(const std::string& base, uint32_t depth) {
    std::vector<Seq> alts;
    alts.push_back(parse_sequence(base, depth));
    while (true) {
      const size_t save = i_;
      skip_space(true);  // a top-level alternative may continue on a line starting with '|'
      if (peek() != '|') {
        i_ = save;
        break;
      }
      ++i_;
      skip_space(true);
      alts.push_back(parse_sequence(base, depth));
    }
    return alts;
  }

  void parse_rule() {
    const size_t at = i_;
    size_t j = i_;
    while (j < s_.size() && is_name_char(s_[j])) ++j;
    if (j == i_) fail(at, "expected a rule name");
    const std::string name(s_.substr(i_, j - i_));
    i_ = j;
    skip_space(false);
    if (s_.substr(i_, 3) != "::=") fail(i_, std::string("expected '::=' after '") + name + "'");
    i_ += 3;
    skip_space(true);
    const uint32_t id = rule_id(name, at);
    if (rules_[id].defined) fail(at, std::string("rule '") + name + "' is defined twice");
    rules_[id].defined = true;
    rules_[id].where = at;
    auto alts = parse_alternates(name, 0);
    rules_[id].alts = std::move(alts);
    if (!at_end() && s_[i_] != '\n' && s_[i_] != '\r')
      fail(i_, std::string("unexpected '") + s_[i_] + "'");
  }

  Grammar flatten() {
    Grammar g;
    g.alts.resize(rules_.size());
    for (size_t r = 0; r < rules_.size(); ++r) {
      g.rule_names.push_back(rules_[r].name);
      for (const Seq& seq : rules_[r].alts) {
        g.alts[r].push_back(static_cast<uint32_t>(g.code.size()));
        for (const Sym& s : seq) g.code.push_back({s.is_class ? Op::kChar : Op::kRef, s.id});
        g.code.push_back({Op::kEnd, 0});
      }
    }
    g.classes = std::move(classes_);
    return g;
  }

  // Refuses a rule that can reach itself before consuming a character.
  void check_recursion(const Grammar& g) {
    const size_t n = g.alts.size();
    std::vector<char> nullable(n, 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r) {
        if (nullable[r]) continue;
        for (uint32_t a : g.alts[r]) {
          size_t p = a;
          while (g.code[p].op == Op::kRef && nullable[g.code[p].arg]) ++p;
          if (g.code[p].op == Op::kEnd) {
            nullable[r] = changed = true;
            break;
          }
        }
      }
    }
    // rule -> (rule it can start with, whether that reference ends its alternative)
    std::vector<std::vector<std::pair<uint32_t, bool>>> starts(n);
    for (size_t r = 0; r < n; ++r)
      for (uint32_t a : g.alts[r])
        for (size_t p = a; g.code[p].op == Op::kRef; ++p) {
          starts[r].push_back({g.code[p].arg, g.code[p + 1].op == Op::kEnd});
          if (!nullable[g.code[p].arg]) break;
        }
    // A cycle of such references is harmless when every reference in it is a
    // tail call (the matcher's stacks do not grow: `("a"?)*`); one that leaves
    // work behind grows without bound. Tarjan's SCCs (iterative) find them.
    std::vector<uint32_t> index(n, UINT32_MAX), low(n, 0), comp(n, UINT32_MAX), scc_stack;
    std::vector<char> on_stack(n, 0);
    std::vector<std::pair<uint32_t, size_t>> dfs;
    uint32_t counter = 0, n_comp = 0;
    for (uint32_t r0 = 0; r0 < n; ++r0) {
      if (index[r0] != UINT32_MAX) continue;
      dfs.push_back({r0, 0});
      index[r0] = low[r0] = counter++;
      scc_stack.push_back(r0);
      on_stack[r0] = 1;
      while (!dfs.empty()) {
        auto& [r, k] = dfs.back();
        if (k < starts[r].size()) {
          const uint32_t s = starts[r][k++].first;
          if (index[s] == UINT32_MAX) {
            index[s] = low[s] = counter++;
            scc_stack.push_back(s);
            on_stack[s] = 1;
            dfs.push_back({s, 0});
          } else if (on_stack[s]) {
            low[r] = std::min(low[r], index[s]);
          }
          continue;
        }
        const uint32_t done = r;
        dfs.pop_back();
        if (!dfs.empty()) low[dfs.back().first] = std::min(low[dfs.back().first], low[done]);
        if (low[done] == index[done]) {
          uint32_t x;
          do {
            x = scc_stack.back();
            scc_stack.pop_back();
            on_stack[x] = 0;
            comp[x] = n_comp;
          } while (x != done);
          ++n_comp;
        }
      }
    }
    for (size_t r = 0; r < n; ++r)
      for (const auto& [s, tail] : starts[r])
        if (!tail && comp[r] == comp[s])
          fail(rules_[s].where, std::string("rule '") + rules_[s].name +
                                    "' can recurse without consuming input (left recursion)");
  }

  std::string_view s_;
  GrammarLimits lim_;
  size_t i_ = 0;
  size_t n_elements_ = 0;
  std::vector<RuleDef> rules_;
  std::map<std::string, uint32_t> names_;
  std::vector<CharClass> classes_;
  std::map<std::vector<std::pair<char32_t, char32_t>>, uint32_t> class_ids_;
};

}  // namespace

Grammar parse_gbnf(std::string_view text, const GrammarLimits& limits) {
  return Parser(text, limits).run();
}

}  // namespace slm::grammar
