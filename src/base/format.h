// Human-readable numbers and escaped text for messages and reports.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace slm {

// 1536 -> "1.5 KiB"; decimals digits after the point for KiB and up.
inline std::string human_bytes(double bytes, int decimals = 1) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%.0f %s", bytes, kUnits[u]);
  else
    std::snprintf(buf, sizeof buf, "%.*f %s", decimals, bytes, kUnits[u]);
  return buf;
}

// A count as people write parameter counts: 260e3 -> "260K", 494e6 -> "494M",
// 1.54e9 -> "1.5B", 7.2e9 -> "7.2B"; three significant digits at most.
inline std::string human_count(double n) {
  static const char* const kUnits[] = {"", "K", "M", "B", "T"};
  int u = 0;
  while (n >= 999.5 && u < 4) {
    n /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, n < 9.95 && u > 0 ? "%.1f%s" : "%.0f%s", n, kUnits[u]);
  return buf;
}

// The two-character escape of newline, carriage return, tab and backslash
// (a backslash, then n, r, t or a backslash); nullptr for any other character.
inline const char* short_escape(char32_t c) {
  switch (c) {
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    case '\\':
      return "\\\\";
    default:
      return nullptr;
  }
}

// Appends c (< 0x100) as \xNN.
inline void append_hex_escape(std::string& out, char32_t c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
  out += buf;
}

// s on one line: short escapes, other control bytes (< 0x20, 0x7F) as \xNN,
// every other byte as it is. Distinct strings stay distinct.
inline std::string escape_controls(std::string_view s) {
  std::string out;
  for (char ch : s) {
    const auto b = static_cast<unsigned char>(ch);
    if (const char* e = short_escape(b)) {
      out += e;
    } else if (b < 0x20 || b == 0x7F) {
      append_hex_escape(out, b);
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace slm
