#include "tokenizer/unicode.h"

#include <utf8proc.h>

#include <array>
#include <cstdlib>

#include "base/utf8.h"

namespace slm::tokenizer::detail {

namespace {

// GPT-2 keeps the printable Latin-1 bytes as themselves and moves the other
// 68 bytes (controls, space, DEL, NBSP, soft hyphen...) to U+0100 onwards in
// byte order, so every byte becomes a visible, non-space character.
struct ByteMap {
  std::array<std::string, 256> to_unicode;
  std::array<int16_t, 324> to_byte{};  // code point (< 0x144) -> byte, -1 if unmapped
  ByteMap() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? b : next++;
      utf8::append(to_unicode[b], cp);
      to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

std::string_view byte_to_unicode(uint8_t b) {
  return byte_map().to_unicode[b];
}

void bytes_to_unicode(std::string_view in, std::string& out) {
  const auto& map = byte_map().to_unicode;
  for (char c : in) out += map[static_cast<uint8_t>(c)];
}

void unicode_to_bytes(std::string_view text, std::string& out) {
  const auto& to_byte = byte_map().to_byte;
  for (size_t i = 0; i < text.size();) {
    size_t n = 0;
    const char32_t cp = utf8::decode(text, i, &n);
    if (n == 1 && cp >= 0x80) {  // not UTF-8 at all: pass the byte through
      out += text[i++];
      continue;
    }
    if (cp < to_byte.size() && to_byte[cp] >= 0) {
      out += static_cast<char>(to_byte[cp]);
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
}

namespace {

std::string normalize_valid(std::string_view run, NormForm form) {
  if (form == NormForm::kLowercase) {
    std::string out;
    out.reserve(run.size());
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(run.data());
    utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(run.size());
    while (left > 0) {
      utf8proc_int32_t cp = 0;
      const utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
      if (n <= 0) break;  // cannot happen on a validated run
      utf8::append(out, static_cast<char32_t>(utf8proc_tolower(cp)));
      p += n;
      left -= n;
    }
    return out;
  }
  // NFC / NFKC compose, NFD / NFKD decompose; the K forms add compatibility mapping.
  const bool compose = form == NormForm::kNfc || form == NormForm::kNfkc;
  const bool compat = form == NormForm::kNfkc || form == NormForm::kNfkd;
  int options = UTF8PROC_STABLE | (compose ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE);
  if (compat) options |= UTF8PROC_COMPAT;
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()),
                                          static_cast<utf8proc_ssize_t>(run.size()), &dst,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) {  // utf8proc refused (it should not on valid input): keep the text
    std::free(dst);
    return std::string(run);
  }
  std::string out(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  std::free(dst);
  return out;
}

}  // namespace

std::string normalize(std::string_view text, NormForm form) {
  // Normalize each maximal run of valid UTF-8 and copy invalid bytes through,
  // so hostile input keeps every byte the byte-level encoder can represent.
  std::string out;
  out.reserve(text.size());
  size_t run_start = 0;
  size_t i = 0;
  while (i < text.size()) {
    const size_t n = utf8::valid_len(text, i);
    if (n != 0) {
      i += n;
      continue;
    }
    out += normalize_valid(text.substr(run_start, i - run_start), form);
    out += text[i];
    run_start = ++i;
  }
  out += normalize_valid(text.substr(run_start), form);
  return out;
}

}  // namespace slm::tokenizer::detail
