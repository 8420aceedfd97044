// The GPT-2 byte-to-unicode map and normalization (NFC/NFKC/NFD/NFKD and
// lowercasing through utf8proc). UTF-8 itself is base/utf8.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace slm::tokenizer::detail {

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
