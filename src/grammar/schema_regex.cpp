// String content for the JSON Schema compiler: GBNF spelling helpers, the
// regex subset of "pattern" (literals, escapes \d \w \s \D \W \S, classes with
// ranges and negation, '.', groups incl. (?:) and named groups, alternation,
// quantifiers * + ? {m} {m,} {m,n} (lazy forms accepted: same language),
// anchors ^ at the start and $ at the end), and the supported "format"s.
// A regex is matched against the decoded string, so each character is emitted
// in its JSON-encoded spelling. Recursive descent, depth <= kMaxDepth,
// output O(pattern) except classes (O(ranges)).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/utf8.h"
#include "grammar/schema_internal.h"

namespace slm::grammar::detail {

std::string gbnf_class_char(char32_t c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return std::string(1, char(c));
  char buf[16];
  if (c < 0x100)
    std::snprintf(buf, sizeof buf, "\\x%02X", unsigned(c));
  else if (c < 0x10000)
    std::snprintf(buf, sizeof buf, "\\u%04X", unsigned(c));
  else
    std::snprintf(buf, sizeof buf, "\\U%08X", unsigned(c));
  return buf;
}

std::string gbnf_literal(std::string_view bytes) {
  std::string s = "\"";
  for (char ch : bytes) {
    const auto b = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      s += '\\';
      s += ch;
    } else if (b < 0x20 || b == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", b);
      s += buf;
    } else {
      s += ch;  // UTF-8 passes through (callers give valid UTF-8)
    }
  }
  return s + "\"";
}

std::string json_content_of(const std::vector<CodeRange>& ranges) {
  auto has = [&](char32_t c) {
    for (const CodeRange& r : ranges)
      if (r.lo <= c && c <= r.hi) return true;
    return false;
  };
  std::vector<std::string> alts;
  std::string cls;
  for (CodeRange r : ranges) {  // plain part: minus controls, '"' and '\\'
    std::vector<CodeRange> parts;
    if (r.lo < 0x20) r.lo = 0x20;
    if (r.lo > r.hi) continue;
    for (char32_t cut : {char32_t('"'), char32_t('\\')}) {
      if (r.lo <= cut && cut <= r.hi) {
        if (r.lo < cut) parts.push_back({r.lo, cut - 1});
        r.lo = cut + 1;
      }
    }
    if (r.lo <= r.hi) parts.push_back(r);
    for (const CodeRange& p : parts) {
      cls += gbnf_class_char(p.lo);
      if (p.hi != p.lo) {
        cls += '-';
        cls += gbnf_class_char(p.hi);
      }
    }
  }
  if (!cls.empty()) alts.push_back(std::string("[") + cls + "]");
  if (has('"')) alts.push_back("\"\\\\\\\"\"");   // \"
  if (has('\\')) alts.push_back("\"\\\\\\\\\"");  // \\ in the JSON text
  if (has('/')) alts.push_back("\"\\\\/\"");
  const char* shorts[][2] = {{"\b", "b"}, {"\f", "f"}, {"\n", "n"}, {"\r", "r"}, {"\t", "t"}};
  for (auto& s : shorts)
    if (has(static_cast<unsigned char>(s[0][0])))
      alts.push_back(std::string("\"\\\\") + s[1] + "\"");
  bool all_controls = true;
  for (char32_t c = 0; c < 0x20; ++c) all_controls = all_controls && has(c);
  if (all_controls) alts.push_back("\"\\\\u00\" [01] [0-9a-fA-F]");
  for (char32_t c = 0; c < 0x20 && !all_controls; ++c) {  // \u00XX spellings of controls
    if (!has(c)) continue;
    const char hex[] = "0123456789abcdef";
    std::string low = std::string(1, hex[c & 15]);
    if ((c & 15) >= 10) low += static_cast<char>(hex[c & 15] - 'a' + 'A');
    std::string a = "\"\\\\u00";
    a += hex[c >> 4];
    a += "\" [" + low + "]";
    alts.push_back(a);
  }
  if (alts.empty()) return "";
  if (alts.size() == 1) return alts[0];
  std::string s = "(";
  for (size_t i = 0; i < alts.size(); ++i) s += (i ? " | " : " ") + alts[i];
  return s + " )";
}

namespace {

constexpr int kMaxDepth = 64;

std::vector<CodeRange> complement(std::vector<CodeRange> in) {
  std::sort(in.begin(), in.end(),
            [](const CodeRange& a, const CodeRange& b) { return a.lo < b.lo; });
  std::vector<CodeRange> out;
  char32_t next = 0;
  for (const CodeRange& r : in) {
    if (r.lo > next) out.push_back({next, r.lo - 1});
    next = std::max<char32_t>(next, r.hi + 1);
  }
  if (next <= utf8::kMaxCodePoint) out.push_back({next, utf8::kMaxCodePoint});
  return out;
}

class Regex {
 public:
  explicit Regex(std::string_view p) : p_(p) {}

  // The shapes regex_complement_gbnf handles: "^[C]q$" (q one of nothing,
  // *, +, ?, {m}, {m,}, {m,n}) as (C, m, n; n < 0 unbounded), or "^literal"
  // as its characters. False for anything else.
  bool simple_shape(std::vector<CodeRange>* cls, long* m, long* n, std::u32string* prefix) {
    if (p_.size() < 2 || p_.front() != '^') return false;
    i_ = 1;
    if (p_.back() == '$' && !escaped_at_end(p_) && peek() == '[') {
      ++i_;
      *cls = parse_class();
      const std::string q = parse_quantifier();
      if (i_ != p_.size() - 1) return false;
      *m = 1, *n = 1;
      if (q == "*")
        *m = 0, *n = -1;
      else if (q == "+")
        *m = 1, *n = -1;
      else if (q == "?")
        *m = 0, *n = 1;
      else if (!q.empty()) {
        const std::string body = q.substr(1, q.size() - 2);
        const size_t comma = body.find(',');
        if (body.empty() || body.size() > 9 || comma == 0) return false;
        *m = std::stol(body.substr(0, comma));
        *n = comma == std::string::npos ? *m
             : comma + 1 == body.size() ? -1
                                        : std::stol(body.substr(comma + 1));
        if (*n >= 0 && *n < *m) return false;
      }
      return true;
    }
    while (!at_end()) {
      const char c = peek();
      if (c == '\\') {
        ++i_;
        const auto e = parse_escape();
        if (e.size() != 1 || e[0].lo != e[0].hi) return false;
        prefix->push_back(e[0].lo);
        continue;
      }
      if (std::string_view("^$.|?*+()[]{}").find(c) != std::string_view::npos) return false;
      prefix->push_back(parse_literal_char());
    }
    return !prefix->empty();
  }

  // A flat pattern: a sequence of single-character items (literal, escape,
  // class, '.', or a group holding one such item), each with a quantifier,
  // as units of one character: exactly one, optional, or any number. False
  // for other shapes (alternation, multi-item groups, big counts).
  bool flat_units(std::vector<RegexUnit>* out) {
    std::string_view body = p_;
    bool start = false, end = false;
    if (!body.empty() && body.front() == '^') start = true, body.remove_prefix(1);
    if (!body.empty() && body.back() == '$' && !escaped_at_end(body))
      end = true, body.remove_suffix(1);
    p_ = body;
    i_ = 0;
    const std::string any = kJsonChar;
    if (!start) out->push_back({any, RegexUnit::kStar});
    while (!at_end()) {
      std::string c;
      long lo = 1, hi = 1;  // of the item itself ("(x+)?" is x*)
      auto atom = [&]() -> bool {
        const char ch = peek();
        if (ch == '[') {
          ++i_;
          c = content(parse_class());
        } else if (ch == '.') {
          ++i_;
          c = content({{0, '\n' - 1}, {'\n' + 1, utf8::kMaxCodePoint}});
        } else if (ch == '\\') {
          ++i_;
          if (peek() == 'b' || peek() == 'B') return false;
          c = content(parse_escape());
        } else if (std::string_view("^$|()*+?{}").find(ch) != std::string_view::npos) {
          return false;
        } else {
          const char32_t x = parse_literal_char();
          c = content({{x, x}});
        }
        return true;
      };
      auto quant = [&](long* a, long* b) -> bool {
        const std::string q = parse_quantifier();
        if (q.empty()) return true;
        if (q == "*")
          *a = 0, *b = -1;
        else if (q == "+")
          *a = 1, *b = -1;
        else if (q == "?")
          *a = 0, *b = 1;
        else {
          const std::string nums = q.substr(1, q.size() - 2);
          const size_t comma = nums.find(',');
          if (nums.empty() || nums.size() > 6 || comma == 0) return false;
          *a = std::stol(nums.substr(0, comma));
          *b = comma == std::string::npos ? *a
               : comma + 1 == nums.size() ? -1
                                          : std::stol(nums.substr(comma + 1));
          if (*b >= 0 && *b < *a) return false;
        }
        return true;
      };
      if (peek() == '(') {
        ++i_;
        if (peek() == '?') {
          ++i_;
          if (peek() != ':') return false;
          ++i_;
        }
        if (!atom() || !quant(&lo, &hi) || peek() != ')') return false;
        ++i_;
        long a = 1, b = 1;
        if (!quant(&a, &b)) return false;
        // (x{lo,hi}){a,b} is one run of x only in the shapes below.
        if (a == 1 && b == 1) {
        } else if (lo == 1 && hi == 1) {
          lo = a, hi = b;
        } else if (a == 0 && b == 1 && lo <= 1) {
          lo = 0;
        } else if (a == 0 && b == -1 && lo <= 1) {
          lo = 0, hi = -1;
        } else {
          return false;
        }
      } else {
        if (!atom() || !quant(&lo, &hi)) return false;
      }
      if (lo > 256 || hi > 256 || out->size() > 512) return false;
      for (long k = 0; k < lo; ++k) out->push_back({c, RegexUnit::kOne});
      if (hi < 0) out->push_back({c, RegexUnit::kStar});
      for (long k = lo; k < hi; ++k) out->push_back({c, RegexUnit::kOptional});
    }
    if (!end) out->push_back({any, RegexUnit::kStar});
    return true;
  }

  std::string run() {
    bool anchored_start = false, anchored_end = false;
    std::string_view body = p_;
    if (!body.empty() && body.front() == '^') {
      anchored_start = true;
      body.remove_prefix(1);
    }
    if (!body.empty() && body.back() == '$' && !escaped_at_end(body)) {
      anchored_end = true;
      body.remove_suffix(1);
    }
    p_ = body;
    size_t n_alts = 0;
    std::string expr = parse_alt(0, &n_alts);
    if (i_ != p_.size()) fail("unbalanced ')'");
    // "^a|b$" means (^a)|(b$), not ^(a|b)$: refuse rather than guess.
    if (n_alts > 1 && (anchored_start || anchored_end))
      fail("anchors on a top-level alternation are not supported (use a group)");
    std::string out;
    if (!anchored_start) out += std::string(kJsonChar) + "* ";
    out += expr;
    if (!anchored_end) out += std::string(" ") + std::string(kJsonChar) + "*";
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(std::string("pattern: ") + msg + " at offset " + std::to_string(i_));
  }
  static bool escaped_at_end(std::string_view s) {
    size_t n = 0;
    for (size_t k = s.size() - 1; k-- > 0 && s[k] == '\\';) ++n;
    return n % 2 == 1;
  }
  bool at_end() const { return i_ >= p_.size(); }
  char peek() const { return at_end() ? '\0' : p_[i_]; }

  std::string parse_alt(int depth, size_t* n_alts) {
    if (depth > kMaxDepth) fail("groups nested too deeply");
    std::vector<std::string> alts{parse_seq(depth)};
    while (peek() == '|') {
      ++i_;
      alts.push_back(parse_seq(depth));
    }
    if (n_alts) *n_alts = alts.size();
    std::string s = "(";
    for (size_t k = 0; k < alts.size(); ++k) s += (k ? " | " : " ") + alts[k];
    return s + " )";
  }

  std::string parse_seq(int depth) {
    std::string seq;
    while (!at_end() && peek() != '|' && peek() != ')') {
      std::string item = parse_atom(depth);
      item += parse_quantifier();
      seq += (seq.empty() ? "" : " ") + item;
    }
    return seq;
  }

  std::string parse_quantifier() {
    const char c = peek();
    std::string q;
    if (c == '*' || c == '+' || c == '?') {
      ++i_;
      q = std::string(1, c);
    } else if (c == '{' && i_ + 1 < p_.size() && p_[i_ + 1] >= '0' && p_[i_ + 1] <= '9') {
      const size_t close = p_.find('}', i_);
      if (close == std::string_view::npos) fail("unterminated {m,n}");
      const std::string body(p_.substr(i_ + 1, close - i_ - 1));
      for (char d : body)
        if (!(d >= '0' && d <= '9') && d != ',') fail("bad {m,n}");
      i_ = close + 1;
      q = std::string("{") + body + "}";
    } else {
      return "";
    }
    if (peek() == '?')
      ++i_;  // lazy: the same language
    else if (peek() == '+')
      fail("possessive quantifiers are not supported");
    if (peek() == '*' || peek() == '+' || peek() == '?' || peek() == '{') fail("nested quantifier");
    return q;
  }

  char32_t parse_literal_char() {
    size_t len = 0;
    if (utf8::valid_len(p_, i_) == 0) fail("invalid UTF-8");
    const char32_t c = utf8::decode(p_, i_, &len);
    i_ += len;
    return c;
  }

  uint32_t parse_hex(int n) {
    uint32_t v = 0;
    for (int k = 0; k < n; ++k) {
      const char h = peek();
      int d = h >= '0' && h <= '9'   ? h - '0'
              : h >= 'a' && h <= 'f' ? h - 'a' + 10
              : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                     : -1;
      if (d < 0) fail("expected a hex digit");
      v = v * 16 + uint32_t(d);
      ++i_;
    }
    if (v > utf8::kMaxCodePoint || (v >= 0xD800 && v <= 0xDFFF)) fail("escape is not a character");
    return v;
  }

  // After a backslash: the set of characters the escape stands for.
  std::vector<CodeRange> parse_escape() {
    if (at_end()) fail("trailing backslash");
    const char e = p_[i_++];
    const std::vector<CodeRange> digit{{'0', '9'}},
        word{{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}, space{{'\t', '\r'}, {' ', ' '}};
    switch (e) {
      case 'd':
        return digit;
      case 'w':
        return word;
      case 's':
        return space;
      case 'D':
        return complement(digit);
      case 'W':
        return complement(word);
      case 'S':
        return complement(space);
      case 'n':
        return {{'\n', '\n'}};
      case 't':
        return {{'\t', '\t'}};
      case 'r':
        return {{'\r', '\r'}};
      case 'f':
        return {{'\f', '\f'}};
      case 'v':
        return {{'\v', '\v'}};
      case '0':
        return {{0, 0}};
      case 'x': {
        const char32_t c = parse_hex(2);
        return {{c, c}};
      }
      case 'u': {
        const char32_t c = parse_hex(4);
        return {{c, c}};
      }
      default:
        break;
    }
    if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '1' && e <= '9'))
      fail(std::string("escape '\\") + e + "' is not supported");
    return {{char32_t(static_cast<unsigned char>(e)), char32_t(static_cast<unsigned char>(e))}};
  }

  std::vector<CodeRange> parse_class() {  // after '['
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++i_;
    }
    std::vector<CodeRange> rs;
    bool first = true;
    while (true) {
      if (at_end()) fail("unterminated character class");
      if (peek() == ']' && !first) break;
      first = false;
      std::vector<CodeRange> lo;
      if (peek() == '\\') {
        ++i_;
        lo = parse_escape();
      } else {
        const char32_t c = parse_literal_char();
        lo = {{c, c}};
      }
      if (peek() == '-' && i_ + 1 < p_.size() && p_[i_ + 1] != ']' && lo.size() == 1 &&
          lo[0].lo == lo[0].hi) {
        ++i_;
        char32_t hi;
        if (peek() == '\\') {
          ++i_;
          auto h = parse_escape();
          if (h.size() != 1 || h[0].lo != h[0].hi) fail("bad range in class");
          hi = h[0].lo;
        } else {
          hi = parse_literal_char();
        }
        if (hi < lo[0].lo) fail("reversed range in class");
        lo[0].hi = hi;
      }
      rs.insert(rs.end(), lo.begin(), lo.end());
    }
    ++i_;
    return negated ? complement(rs) : rs;
  }

  std::string content(std::vector<CodeRange> rs) {
    std::vector<CodeRange> clean;  // surrogates are never characters
    for (CodeRange r : rs) {
      if (r.hi < 0xD800 || r.lo > 0xDFFF) {
        clean.push_back(r);
        continue;
      }
      if (r.lo < 0xD800) clean.push_back({r.lo, 0xD7FF});
      if (r.hi > 0xDFFF) clean.push_back({0xE000, r.hi});
    }
    std::string s = json_content_of(clean);
    if (s.empty()) fail("character class matches nothing");
    return s;
  }

  std::string parse_atom(int depth) {
    const char c = peek();
    if (c == '(') {
      ++i_;
      if (peek() == '?') {
        ++i_;
        if (peek() == ':') {
          ++i_;
        } else if (peek() == '<' || peek() == 'P') {
          if (peek() == 'P') ++i_;
          if (peek() != '<') fail("unsupported group");
          ++i_;
          if (peek() == '=' || peek() == '!') fail("lookbehind is not supported");
          while (!at_end() && peek() != '>') ++i_;
          if (at_end()) fail("unterminated group name");
          ++i_;
        } else {
          fail("lookaround and inline flags are not supported");
        }
      }
      std::string inner = parse_alt(depth + 1, nullptr);
      if (peek() != ')') fail("missing ')'");
      ++i_;
      return inner;
    }
    if (c == '[') {
      ++i_;
      return content(parse_class());
    }
    if (c == '.') {
      ++i_;
      return content({{0, '\n' - 1}, {'\n' + 1, utf8::kMaxCodePoint}});
    }
    if (c == '\\') {
      ++i_;
      if (peek() == 'b' || peek() == 'B') fail("word boundaries are not supported");
      return content(parse_escape());
    }
    if (c == '^' || c == '$') fail("anchors are only supported at the ends of the pattern");
    if (c == '*' || c == '+' || c == '?') fail("nothing to repeat");
    const char32_t ch = parse_literal_char();
    return content({{ch, ch}});
  }

  std::string_view p_;
  size_t i_ = 0;
};

}  // namespace

// Splits at the '|'s outside groups and classes ("^a|b$" is (^a)|(b$)).
std::vector<std::string_view> top_level_branches(std::string_view p) {
  std::vector<std::string_view> out;
  int depth = 0;
  bool in_class = false;
  size_t start = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\') {
      ++i;
    } else if (in_class) {
      if (c == ']') in_class = false;
    } else if (c == '[') {
      in_class = true;
      if (i + 1 < p.size() && p[i + 1] == ']') ++i;  // "[]...]": a literal ']' first
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      --depth;
    } else if (c == '|' && depth == 0) {
      out.push_back(p.substr(start, i - start));
      start = i + 1;
    }
  }
  out.push_back(p.substr(start));
  return out;
}

std::string regex_to_gbnf(std::string_view pattern) {
  if (pattern.size() > 4096) throw Error("pattern: longer than 4096 bytes");
  const auto branches = top_level_branches(pattern);
  if (branches.size() > 1 && pattern.find_first_of("^$") != std::string_view::npos) {
    std::string out = "(";
    for (size_t i = 0; i < branches.size(); ++i)
      out += (i ? " | " : " ") + Regex(branches[i]).run();
    return out + " )";
  }
  return Regex(pattern).run();
}

std::optional<std::vector<RegexUnit>> regex_flat_units(std::string_view pattern) {
  if (pattern.size() > 4096) return std::nullopt;
  std::vector<RegexUnit> out;
  try {
    if (!Regex(pattern).flat_units(&out)) return std::nullopt;
  } catch (const Error&) {
    return std::nullopt;
  }
  return out;
}

std::optional<std::string> regex_complement_gbnf(std::string_view pattern) {
  std::vector<CodeRange> cls;
  long m = 0, n = 0;
  std::u32string prefix;
  if (pattern.size() > 4096 || !Regex(pattern).simple_shape(&cls, &m, &n, &prefix))
    return std::nullopt;
  if (m > 100000 || n > 100000) return std::nullopt;
  const std::string any = std::string(kJsonChar) + "*";
  std::vector<std::string> alts;
  if (prefix.empty()) {
    // Not all of the characters in C, or too few / too many of them. A non-C
    // character is matched by its canonical spellings only, so a key spelled
    // with \u escapes of C characters is in neither language (rejected).
    const std::string c = json_content_of(without_surrogates(cls));
    const std::string nc = json_content_of(without_surrogates(complement(cls)));
    if (c.empty()) return std::nullopt;
    std::string a;
    if (m >= 1) {
      a = c;
      a += "{0,";
      a += std::to_string(m - 1);
      a += "}";
      alts.push_back(a);
    }
    if (n >= 0) {
      a = c;
      a += "{";
      a += std::to_string(n + 1);
      a += ",}";
      alts.push_back(a);
    }
    if (!nc.empty()) {
      a = c;
      a += "* ";
      a += nc;
      a += " ";
      a += any;
      alts.push_back(a);
    }
  } else {
    // Not starting with the prefix: a proper prefix of it, or its first i
    // characters then one that differs.
    std::string lead;
    for (size_t i = 0; i < prefix.size(); ++i) {
      const std::string nc = json_content_of(without_surrogates(complement({{prefix[i], prefix[i]}})));
      std::string a = "( ";
      a += lead.empty() ? std::string("\"\"") : lead;
      a += " ( ";
      a += nc;
      a += " ";
      a += any;
      a += " )? )";
      alts.push_back(a);
      if (!lead.empty()) lead += " ";
      lead += json_content_of({{prefix[i], prefix[i]}});
    }
  }
  std::string out = "(";
  for (size_t i = 0; i < alts.size(); ++i) {
    out += i ? " | " : " ";
    out += alts[i];
  }
  out += " )";
  return out;
}

std::optional<std::string> format_to_gbnf(std::string_view format) {
  // RFC 3339 full-date with real month lengths; February 29 only in leap years.
  const std::string date =
      "( [0-9]{4} \"-\" ( ( \"0\" [13578] | \"1\" [02] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" "
      "[01] ) | "
      "( \"0\" [469] | \"11\" ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"30\" ) | "
      "\"02-\" ( \"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8] ) ) | "
      "( [0-9] [0-9] ( \"0\" [48] | [2468] [048] | [13579] [26] ) | ( [02468] [048] | [13579] [26] "
      ") \"00\" ) "
      "\"-02-29\" )";
  const std::string time =
      "( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" ( [0-5] [0-9] | \"60\" ) ( \".\" "
      "[0-9]+ )? "
      "( [zZ] | [-+] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )";
  // RFC 3986 characters: unreserved, sub-delims, ':' '@' '/', percent-escapes
  // ('[' ']' for IP literals); the authority's inner structure is not checked.
  const std::string uchar =
      "( [a-zA-Z0-9._~!$&'()*+,;=:@/\\[\\]-] | \"%\" [0-9a-fA-F] [0-9a-fA-F] )";
  const std::string qchar = "( " + uchar + " | \"?\" )";
  const std::string tail = " ( \"?\" " + qchar + "* )? ( \"#\" " + qchar + "* )?";
  const std::string scheme = "[a-zA-Z] [a-zA-Z0-9+.-]* \":\"";
  const std::string label = "[a-zA-Z0-9] ( [a-zA-Z0-9-]{0,61} [a-zA-Z0-9] )?";
  const std::string octet =
      "( \"25\" [0-5] | \"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9] [0-9] | [0-9] )";
  if (format == "date") return date;
  if (format == "time") return time;
  if (format == "date-time") return date + " [tT] " + time;
  if (format == "uuid")
    return "[0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" "
           "[0-9a-fA-F]{12}";
  if (format == "email")
    return "[a-zA-Z0-9.!#$%&'*+=?^_`{|}~-]+ \"@\" " + label + " ( \".\" " + label + " )*";
  if (format == "uri") return scheme + " " + uchar + "*" + tail;
  if (format == "uri-reference") return "( " + scheme + " )? " + uchar + "*" + tail;
  if (format == "hostname") return label + " ( \".\" " + label + " )*";
  if (format == "ipv4") return octet + " \".\" " + octet + " \".\" " + octet + " \".\" " + octet;
  return std::nullopt;
}

bool format_is_annotation(std::string_view format) {
  static const char* const kDefined[] = {
      "date-time", "date", "time", "duration", "email", "idn-email", "hostname", "idn-hostname",
      "ipv4", "ipv6", "uri", "uri-reference", "iri", "iri-reference", "uuid", "uri-template",
      "json-pointer", "relative-json-pointer", "regex",
      // draft 3 only
      "host-name", "ip-address", "color", "style", "phone", "utc-millisec"};
  for (const char* f : kDefined)
    if (format == f) return false;
  return true;
}

}  // namespace slm::grammar::detail
