// Internal UTF-8 helpers, the GPT-2 byte-to-unicode map and normalization
// (NFC/NFKC/NFD/NFKD and lowercasing through utf8proc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace slm::tokenizer::detail {

// Length of the well-formed UTF-8 character at s[i] (Unicode table 3-7), or 0
// when the bytes there are not one. *incomplete is set when the bytes so far
// are a valid prefix that runs into the end of s; *bad_len receives the length
// of the invalid "maximal subpart" (>= 1) that one U+FFFD should replace.
size_t utf8_valid_len(std::string_view s, size_t i, bool* incomplete = nullptr,
                      size_t* bad_len = nullptr);
bool is_valid_utf8(std::string_view s);
void append_utf8(std::string& out, uint32_t cp);
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD
constexpr std::string_view kSpaceMark = "\xE2\x96\x81";        // U+2581 "▁"

// GPT-2's reversible byte -> printable code point map, as UTF-8 strings.
std::string_view byte_to_unicode(uint8_t b);
// Inverse on UTF-8 text: appends the byte for each mapped character; a
// character outside the map is copied through unchanged.
void unicode_to_bytes(std::string_view text, std::string& out);
// Maps every byte of `in` through byte_to_unicode, appending to out.
void bytes_to_unicode(std::string_view in, std::string& out);

enum class NormForm : uint8_t { kNfc, kNfkc, kNfd, kNfkd, kLowercase };
// Invalid UTF-8 is returned unchanged (normalization is defined on characters only).
std::string normalize(std::string_view text, NormForm form);

}  // namespace slm::tokenizer::detail
