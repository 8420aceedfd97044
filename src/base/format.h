// Human-readable numbers for messages and reports.
#pragma once

#include <cstdio>
#include <string>

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

}  // namespace slm
