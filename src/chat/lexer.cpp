#include "chat/lexer.h"

#include <charconv>
#include <limits>

#include "base/utf8.h"
#include "chat/template.h"

namespace slm::chat {

namespace {

enum class TagKind { kVar, kBlock, kComment };

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) {
    // jinja2 normalises \r\n and \r to \n and drops one trailing newline.
    src_.reserve(source.size());
    for (std::size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    std::size_t pos = 0;
    while (pos < src_.size()) {
      const std::size_t tag = find_tag(pos);
      if (tag == std::string::npos) {
        emit_text(std::string_view(src_).substr(pos), pos);
        break;
      }
      const char c = src_[tag + 1];
      const TagKind kind = c == '{' ? TagKind::kVar : c == '%' ? TagKind::kBlock : TagKind::kComment;
      std::size_t p = tag + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      emit_text(left_controlled(pos, tag, kind, sign), pos);
      if (kind == TagKind::kComment) {
        pos = skip_comment(p, tag);
      } else if (kind == TagKind::kBlock && is_raw(p)) {
        pos = raw_block(p, tag);
      } else {
        pos = tag_tokens(p, kind, tag);
      }
    }
    push(TokenType::kEof, "", src_.size());
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(std::size_t at, const std::string& what) const {
    throw TemplateError("line " + std::to_string(line_at(at)) + ": " + what);
  }

  int line_at(std::size_t at) {
    // Lines are counted incrementally: tokens are pushed in source order.
    for (; line_pos_ < at && line_pos_ < src_.size(); ++line_pos_)
      if (src_[line_pos_] == '\n') ++line_;
    return line_;
  }
  int line_at(std::size_t at) const {
    int line = line_;
    for (std::size_t i = line_pos_; i < at && i < src_.size(); ++i)
      if (src_[i] == '\n') ++line;
    return line;
  }

  void push(TokenType type, std::string value, std::size_t at) {
    Token t;
    t.type = type;
    t.value = std::move(value);
    t.line = line_at(at);
    tokens_.push_back(std::move(t));
  }

  void emit_text(std::string_view text, std::size_t at) {
    if (!text.empty()) push(TokenType::kText, std::string(text), at);
  }

  std::size_t find_tag(std::size_t from) const {
    for (std::size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  // The text before a tag, after the tag's left-side whitespace control.
  std::string_view left_controlled(std::size_t pos, std::size_t tag, TagKind kind, char sign) const {
    std::string_view text = std::string_view(src_).substr(pos, tag - pos);
    if (sign == '-') {
      while (!text.empty() && is_ws(text.back())) text.remove_suffix(1);
      return text;
    }
    if (sign == '+' || kind == TagKind::kVar) return text;
    // lstrip_blocks: drop spaces and tabs between the start of the line and the tag.
    const std::size_t nl = text.rfind('\n');
    const std::size_t line_start = nl == std::string_view::npos ? 0 : nl + 1;
    const bool at_line_start = line_start > 0 || pos == 0 || src_[pos - 1] == '\n';
    if (!at_line_start) return text;
    for (std::size_t i = line_start; i < text.size(); ++i)
      if (text[i] != ' ' && text[i] != '\t') return text;
    return text.substr(0, line_start);
  }

  // Right-side whitespace control after a tag that ends just before `after`.
  std::size_t right_controlled(std::size_t after, char sign, bool trim_newline) const {
    if (sign == '-') {
      while (after < src_.size() && is_ws(src_[after])) ++after;
    } else if (sign != '+' && trim_newline && after < src_.size() && src_[after] == '\n') {
      ++after;  // trim_blocks
    }
    return after;
  }

  std::size_t skip_comment(std::size_t p, std::size_t tag) {
    const std::size_t end = src_.find("#}", p);
    if (end == std::string::npos) fail(tag, "unterminated comment");
    const char sign = end > p && (src_[end - 1] == '-' || src_[end - 1] == '+') ? src_[end - 1] : 0;
    return right_controlled(end + 2, sign, true);
  }

  // Matches "WS* NAME WS* [-+]? %}" at p; returns the position after it, or npos.
  std::size_t match_simple_tag(std::size_t p, std::string_view name, char* left_sign, char* right_sign) const {
    if (left_sign != nullptr) {
      *left_sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) *left_sign = src_[p++];
    }
    while (p < src_.size() && is_ws(src_[p])) ++p;
    if (src_.compare(p, name.size(), name) != 0) return std::string::npos;
    p += name.size();
    if (p < src_.size() && is_name_char(src_[p])) return std::string::npos;
    while (p < src_.size() && is_ws(src_[p])) ++p;
    *right_sign = 0;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) *right_sign = src_[p++];
    if (src_.compare(p, 2, "%}") != 0) return std::string::npos;
    return p + 2;
  }

  bool is_raw(std::size_t p) const {
    char right = 0;
    return match_simple_tag(p, "raw", nullptr, &right) != std::string::npos;
  }

  std::size_t raw_block(std::size_t p, std::size_t tag) {
    char right = 0;
    std::size_t body = match_simple_tag(p, "raw", nullptr, &right);
    if (right == '-') body = right_controlled(body, '-', false);  // no trim_blocks after {% raw %}
    for (std::size_t at = src_.find("{%", body); at != std::string::npos; at = src_.find("{%", at + 2)) {
      char left = 0;
      const std::size_t end = match_simple_tag(at + 2, "endraw", &left, &right);
      if (end == std::string::npos) continue;
      std::string_view text = std::string_view(src_).substr(body, at - body);
      if (left == '-')
        while (!text.empty() && is_ws(text.back())) text.remove_suffix(1);
      emit_text(text, body);
      return right_controlled(end, right, true);
    }
    fail(tag, "unterminated {% raw %} block");
  }

  // Tokens of a {{ }} or {% %} tag starting at p; returns the position after the tag.
  std::size_t tag_tokens(std::size_t p, TagKind kind, std::size_t tag) {
    const bool block = kind == TagKind::kBlock;
    push(block ? TokenType::kBlockBegin : TokenType::kVarBegin, "", tag);
    const char closer = block ? '%' : '}';
    int depth = 0;  // brackets open: a '}}' inside a dict literal does not end the tag
    while (true) {
      while (p < src_.size() && is_ws(src_[p])) ++p;
      if (p >= src_.size()) fail(tag, block ? "unterminated tag: missing '%}'" : "unterminated tag: missing '}}'");
      if (depth == 0) {
        char sign = 0;
        std::size_t q = p;
        if (src_[q] == '-' || src_[q] == '+') sign = src_[q++];
        if (q + 1 < src_.size() && src_[q] == closer && src_[q + 1] == '}') {
          push(block ? TokenType::kBlockEnd : TokenType::kVarEnd, "", p);
          return right_controlled(q + 2, sign, block);
        }
      }
      const char c = src_[p];
      if (is_name_start(c)) {
        std::size_t e = p;
        while (e < src_.size() && is_name_char(src_[e])) ++e;
        push(TokenType::kName, src_.substr(p, e - p), p);
        p = e;
      } else if (is_digit(c)) {
        p = number(p);
      } else if (c == '\'' || c == '"') {
        p = string_literal(p);
      } else {
        p = op(p, &depth);
      }
    }
  }

  std::size_t number(std::size_t p) {
    const std::size_t start = p;
    std::string digits;
    int base = 10;
    if (src_[p] == '0' && p + 1 < src_.size() &&
        (src_[p + 1] == 'x' || src_[p + 1] == 'X' || src_[p + 1] == 'o' || src_[p + 1] == 'O' ||
         src_[p + 1] == 'b' || src_[p + 1] == 'B')) {
      const char b = static_cast<char>(src_[p + 1] | 0x20);
      base = b == 'x' ? 16 : b == 'o' ? 8 : 2;
      p += 2;
      while (p < src_.size() && (hex_value(src_[p]) >= 0 || src_[p] == '_')) {
        if (src_[p] != '_') digits += src_[p];
        ++p;
      }
    } else {
      const auto run = [&] {
        while (p < src_.size() && (is_digit(src_[p]) || (src_[p] == '_' && p + 1 < src_.size() && is_digit(src_[p + 1])))) {
          if (src_[p] != '_') digits += src_[p];
          ++p;
        }
      };
      run();
      bool is_float = false;
      if (p + 1 < src_.size() && src_[p] == '.' && is_digit(src_[p + 1])) {
        digits += '.';
        ++p;
        run();
        is_float = true;
      }
      if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
        std::size_t q = p + 1;
        if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
        if (q < src_.size() && is_digit(src_[q])) {
          digits += 'e';
          digits.append(src_, p + 1, q - p - 1);
          p = q;
          run();
          is_float = true;
        }
      }
      if (is_float) {
        Token t;
        t.type = TokenType::kFloat;
        t.line = line_at(start);
        std::from_chars(digits.data(), digits.data() + digits.size(), t.float_value);
        tokens_.push_back(std::move(t));
        return p;
      }
    }
    int64_t v = 0;
    for (char d : digits) {
      const int dv = hex_value(d);
      if (dv < 0 || dv >= base) fail(start, "malformed number literal");
      if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, dv, &v))
        fail(start, "integer literal is too large");
    }
    if (digits.empty()) fail(start, "malformed number literal");
    Token t;
    t.type = TokenType::kInt;
    t.line = line_at(start);
    t.int_value = v;
    tokens_.push_back(std::move(t));
    return p;
  }

  // Decodes Python's string escapes (jinja2 reads literals with unicode-escape).
  std::size_t string_literal(std::size_t p) {
    const std::size_t start = p;
    const char quote = src_[p++];
    std::string out;
    while (true) {
      if (p >= src_.size()) fail(start, "unterminated string literal");
      const char c = src_[p++];
      if (c == quote) break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (p >= src_.size()) fail(start, "unterminated string literal");
      const char e = src_[p++];
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (int k = 0; k < n; ++k) {
            const int h = p < src_.size() ? hex_value(src_[p]) : -1;
            if (h < 0) fail(start, "malformed \\" + std::string(1, e) + " escape in string literal");
            cp = cp * 16 + static_cast<char32_t>(h);
            ++p;
          }
          if (cp > utf8::kMaxCodePoint) fail(start, "escape beyond U+10FFFF in string literal");
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // a lone surrogate has no UTF-8 form
          utf8::append(out, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++k)
              cp = cp * 8 + static_cast<char32_t>(src_[p++] - '0');
            utf8::append(out, cp);
          } else {
            out += '\\';  // Python keeps unknown escapes as written
            out += e;
          }
      }
    }
    push(TokenType::kString, std::move(out), start);
    return p;
  }

  std::size_t op(std::size_t p, int* depth) {
    static constexpr std::string_view kTwo[] = {"**", "//", "==", "!=", "<=", ">="};
    for (std::string_view two : kTwo) {
      if (src_.compare(p, 2, two) == 0) {
        push(TokenType::kOp, std::string(two), p);
        return p + 2;
      }
    }
    const char c = src_[p];
    static constexpr std::string_view kOne = "+-*/%~<>=()[]{}.,:|";
    if (kOne.find(c) == std::string_view::npos) {
      fail(p, std::string("unexpected character '") + c + "' in tag");
    }
    if (c == '(' || c == '[' || c == '{') ++*depth;
    if ((c == ')' || c == ']' || c == '}') && *depth > 0) --*depth;
    push(TokenType::kOp, std::string(1, c), p);
    return p + 1;
  }

  std::string src_;
  std::vector<Token> tokens_;
  std::size_t line_pos_ = 0;
  int line_ = 1;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) { return Lexer(source).run(); }

}  // namespace slm::chat
