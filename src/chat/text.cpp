#include "chat/text.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "base/format.h"
#include "base/utf8.h"

namespace slm::chat::text {

namespace {

bool is_ascii_upper(char32_t c) {
  return c >= 'A' && c <= 'Z';
}
bool is_ascii_lower(char32_t c) {
  return c >= 'a' && c <= 'z';
}
char upper_char(char c) {
  return is_ascii_lower(static_cast<unsigned char>(c)) ? static_cast<char>(c - 32) : c;
}
char lower_char(char c) {
  return is_ascii_upper(static_cast<unsigned char>(c)) ? static_cast<char>(c + 32) : c;
}

bool is_line_break(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
         c == 0x85 || c == 0x2028 || c == 0x2029;
}

}  // namespace

std::vector<std::size_t> char_starts(std::string_view s) {
  std::vector<std::size_t> starts;
  starts.reserve(s.size() + 1);
  for (std::size_t i = 0; i < s.size();) {
    starts.push_back(i);
    std::size_t len = 1;
    utf8::decode(s, i, &len);
    i += len;
  }
  starts.push_back(s.size());
  return starts;
}

std::size_t char_count(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size(); ++n) {
    std::size_t len = 1;
    utf8::decode(s, i, &len);
    i += len;
  }
  return n;
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::string strip(std::string_view s, const std::string* chars, bool left, bool right) {
  std::vector<char32_t> set;
  if (chars != nullptr) {
    for (std::size_t i = 0; i < chars->size();) {
      std::size_t len = 1;
      set.push_back(utf8::decode(*chars, i, &len));
      i += len;
    }
  }
  const auto strippable = [&](char32_t c) {
    if (chars == nullptr) return is_space(c);
    for (char32_t x : set)
      if (x == c) return true;
    return false;
  };
  const std::vector<std::size_t> starts = char_starts(s);
  std::size_t first = 0, last = starts.size() - 1;  // character indexes [first, last)
  std::size_t len = 1;
  while (left && first < last && strippable(utf8::decode(s, starts[first], &len))) ++first;
  while (right && last > first && strippable(utf8::decode(s, starts[last - 1], &len))) --last;
  return std::string(s.substr(starts[first], starts[last] - starts[first]));
}

std::vector<std::string> split_lines(std::string_view s) {
  std::vector<std::string> lines;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = 1;
    const char32_t c = utf8::decode(s, i, &len);
    if (!is_line_break(c)) {
      i += len;
      continue;
    }
    lines.emplace_back(s.substr(line_start, i - line_start));
    i += len;
    if (c == '\r' && i < s.size() && s[i] == '\n') ++i;
    line_start = i;
  }
  if (line_start < s.size()) lines.emplace_back(s.substr(line_start));
  return lines;
}

std::string to_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = upper_char(c);
  return out;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower_char(c);
  return out;
}

std::string capitalize(std::string_view s) {
  std::string out = to_lower(s);
  if (!out.empty()) out[0] = upper_char(out[0]);
  return out;
}

std::string title_method(std::string_view s) {
  // Letters outside ASCII have no case mapping here; treating them as cased
  // keeps words such as "naïve" one word, as Python does.
  std::string out(s);
  bool prev_cased = false;
  for (char& c : out) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (is_ascii_lower(u) || is_ascii_upper(u)) {
      c = prev_cased ? lower_char(c) : upper_char(c);
      prev_cased = true;
    } else if (u >= 0x80) {
      prev_cased = true;
    } else {
      prev_cased = false;
    }
  }
  return out;
}

std::string title_filter(std::string_view s) {
  std::string out(s);
  bool word_start = true;
  for (char& c : out) {
    const bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || c == ' ' ||
                     (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F);
    if (sep) {
      word_start = true;
      continue;
    }
    c = word_start ? upper_char(c) : lower_char(c);
    word_start = false;
  }
  return out;
}

std::string replace(std::string_view s, std::string_view from, std::string_view to, int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` before every character and at the end.
    const std::vector<std::size_t> starts = char_starts(s);
    int64_t done = 0;
    for (std::size_t k = 0; k + 1 < starts.size(); ++k) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      out += s.substr(starts[k], starts[k + 1] - starts[k]);
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  std::size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const std::size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out += s.substr(pos, hit - pos);
    out += to;
    pos = hit + from.size();
    ++done;
  }
  out += s.substr(pos);
  return out;
}

std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<std::size_t>(res.ptr - buf));  // "-1.25e+05"
  std::string out;
  if (sci.front() == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  const std::size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e))
    if (c != '.') digits += c;
  std::string_view exp_text = sci.substr(e + 1);
  const bool exp_neg = exp_text.front() == '-';
  int exp10 = 0;
  std::from_chars(exp_text.data() + 1, exp_text.data() + exp_text.size(), exp10);
  if (exp_neg) exp10 = -exp10;
  // value = 0.DIGITS x 10^decpt; Python switches to exponent form outside -4 < decpt <= 16.
  const int decpt = exp10 + 1;
  const int n = static_cast<int>(digits.size());
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0.";
      out.append(static_cast<std::size_t>(-decpt), '0');
      out += digits;
    } else if (decpt >= n) {
      out += digits;
      out.append(static_cast<std::size_t>(decpt - n), '0');
      out += ".0";
    } else {
      out += digits.substr(0, static_cast<std::size_t>(decpt));
      out += '.';
      out += digits.substr(static_cast<std::size_t>(decpt));
    }
    return out;
  }
  out += digits[0];
  if (n > 1) {
    out += '.';
    out += digits.substr(1);
  }
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof exp_buf, "e%c%02d", exp10 < 0 ? '-' : '+',
                exp10 < 0 ? -exp10 : exp10);
  out += exp_buf;
  return out;
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string str_repr(std::string_view s) {
  const char quote =
      (s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos) ? '"'
                                                                                        : '\'';
  std::string out(1, quote);
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = 1;
    const char32_t c = utf8::decode(s, i, &len);
    if (c == static_cast<char32_t>(quote)) {
      out += '\\';
      out += quote;
    } else if (const char* e = short_escape(c)) {
      out += e;
    } else if (c < 0x20 || c == 0x7F || (len > 1 && c >= 0x80 && c <= 0xA0) ||
               (len > 1 && c == 0xAD)) {
      append_hex_escape(out, c);
    } else {
      out += s.substr(i, len);
    }
    i += len;
  }
  out += quote;
  return out;
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

}  // namespace slm::chat::text
