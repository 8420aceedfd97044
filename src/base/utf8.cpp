#include "base/utf8.h"

#include <cstdint>

namespace slm::utf8 {

size_t valid_len(std::string_view s, size_t i, bool* incomplete, size_t* bad_len) {
  if (incomplete != nullptr) *incomplete = false;
  if (bad_len != nullptr) *bad_len = 1;
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return 1;
  // Table 3-7: the lead byte fixes the length and the allowed range of the
  // second byte; later bytes are always 80..BF.
  size_t len = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlongs
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;  // no overlongs
    if (b0 == 0xF4) hi = 0x8F;  // <= U+10FFFF
  } else {
    return 0;  // continuation byte, C0, C1 or F5..FF
  }
  for (size_t k = 1; k < len; ++k) {
    if (i + k >= s.size()) {
      if (incomplete != nullptr) *incomplete = true;
      return 0;
    }
    const auto b = static_cast<uint8_t>(s[i + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      if (bad_len != nullptr) *bad_len = k;
      return 0;
    }
  }
  return len;
}

size_t first_invalid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = valid_len(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

bool is_valid(std::string_view s) {
  return first_invalid(s) == std::string_view::npos;
}

size_t incomplete_tail(std::string_view s) {
  // Walk back over at most three continuation bytes to the lead byte.
  const size_t n = s.size();
  size_t cont = 0;
  while (cont < 3 && cont < n && (static_cast<uint8_t>(s[n - 1 - cont]) & 0xC0) == 0x80) ++cont;
  if (cont == n) return 0;  // no lead byte in reach
  bool incomplete = false;
  valid_len(s, n - 1 - cont, &incomplete);
  return incomplete ? cont + 1 : 0;
}

char32_t decode(std::string_view s, size_t i, size_t* len) {
  const size_t n = valid_len(s, i);
  const auto b = [&](size_t k) { return static_cast<char32_t>(static_cast<uint8_t>(s[i + k])); };
  *len = n == 0 ? 1 : n;
  switch (n) {
    case 2:
      return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3:
      return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    case 4:
      return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
    default:
      return b(0);  // ASCII, or a stray byte standing for itself
  }
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace slm::utf8
