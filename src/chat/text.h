// Text helpers with Python's str semantics over UTF-8 bytes: lengths, indexes
// and slices count code points; strip() knows Unicode whitespace; numbers and
// strings print as Python's repr() and json.dumps print them. Malformed UTF-8
// (templates and messages are untrusted) never fails: each stray byte counts
// as one character and is kept as it is. Decoding and encoding single
// characters is base/utf8.h (utf8::decode, utf8::append).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::chat::text {

// Byte offset where each character starts, plus s.size() at the end.
std::vector<std::size_t> char_starts(std::string_view s);
std::size_t char_count(std::string_view s);

bool is_space(char32_t c);  // Python's str.isspace() for one character
// str.strip / lstrip / rstrip; chars == nullptr strips whitespace, else any character in *chars.
std::string strip(std::string_view s, const std::string* chars, bool left, bool right);
// str.splitlines() without keepends.
std::vector<std::string> split_lines(std::string_view s);
// ASCII-only case mapping (documented limitation: other scripts pass through).
std::string to_upper(std::string_view s);
std::string to_lower(std::string_view s);
std::string capitalize(std::string_view s);
// Python's str.title() (cased run after an uncased character is a word).
std::string title_method(std::string_view s);
// jinja2's |title filter: words begin after '-', whitespace, '(', '{', '[' or '<'.
std::string title_filter(std::string_view s);
// str.replace(old, new, count); count < 0 means all.
std::string replace(std::string_view s, std::string_view from, std::string_view to, int64_t count);

// repr(float): shortest round-trip digits, "1.0", "1e+16", "inf", "nan".
std::string float_repr(double f);
// repr(str): single quotes unless the text holds ' but not ".
std::string str_repr(std::string_view s);
// markupsafe.escape's text: & < > " ' as &amp; &lt; &gt; &#34; &#39;.
std::string html_escape(std::string_view s);
// json.dumps(str, ensure_ascii=False).
void append_json_string(std::string& out, std::string_view s);

}  // namespace slm::chat::text
