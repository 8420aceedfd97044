// UTF-8 for the whole project: well-formedness per Unicode table 3-7 (no
// overlongs, no surrogates, nothing above U+10FFFF), validation, the first
// invalid byte, a trailing character still waiting for its continuation
// bytes, decoding one character and encoding a code point. The tokenizer,
// the chat-template engine, the stop-string matcher and the server's request
// checks all use these; nothing else in slm looks at UTF-8 bit patterns.
//
// Every function takes arbitrary bytes (model files and requests are
// untrusted) and never fails or reads out of bounds. Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace slm::utf8 {

constexpr char32_t kMaxCodePoint = 0x10FFFF;
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD, UTF-8

// Length (1 to 4) of the well-formed character that starts at s[i], or 0 when
// the bytes there are not one. Requires i < s.size(). When 0 is returned,
// *incomplete tells whether the bytes so far are a valid prefix that runs into
// the end of s, and *bad_len receives the length of the invalid "maximal
// subpart" (>= 1) that one U+FFFD replaces (1 for a prefix cut by the end).
size_t valid_len(std::string_view s, size_t i, bool* incomplete = nullptr,
                 size_t* bad_len = nullptr);

// Byte offset of the first byte that does not belong to a well-formed
// character (a truncated character at the end included), or npos.
size_t first_invalid(std::string_view s);
bool is_valid(std::string_view s);

// Bytes at the end of s (0 to 3) that are a valid prefix of a character whose
// remaining continuation bytes have not arrived yet. Bytes that can never
// become well-formed (C0, F5, E0 80, a stray continuation byte...) count as
// complete: waiting for more would not fix them.
size_t incomplete_tail(std::string_view s);

// Decodes the character at s[i] (i < s.size()) and stores its byte length in
// *len. A byte that does not start a well-formed character decodes as its own
// value (0x80 to 0xFF) with length 1, so a walk over any bytes always advances.
char32_t decode(std::string_view s, size_t i, size_t* len);

// Appends the UTF-8 form of cp. Requires cp <= kMaxCodePoint; a surrogate is
// written as its three-byte (ill-formed) pattern, so callers that take code
// points from untrusted text check them first.
void append(std::string& out, char32_t cp);

}  // namespace slm::utf8
