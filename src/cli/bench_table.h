// `slm bench`'s result table, apart so a test can give it the numbers a slow
// or fast machine produces (a real run's spread is not under a test's control).
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace slm::cli {

// One timed test: its name ("pp512", "tg128") and tokens/s over repetitions.
struct BenchRow {
  std::string name;
  double mean = 0, stddev = 0;
};

// Display columns of UTF-8 text ("±" is two bytes, one column).
inline size_t display_columns(const std::string& t) {
  size_t n = 0;
  for (const unsigned char ch : t) n += (ch & 0xC0) != 0x80;
  return n;
}

// The Markdown table, every column as wide as its widest cell and the "±"
// of every row in line: a slow first run's large spread or a six-digit rate
// must not push the bars out of line.
inline std::string bench_table(const std::vector<BenchRow>& rows) {
  const auto pad = [](const std::string& t, size_t w, bool right) {
    const std::string fill(w - std::min(w, display_columns(t)), ' ');
    return right ? fill + t : t + fill;
  };
  const auto fixed2 = [](double v) {
    char b[48];
    std::snprintf(b, sizeof b, "%.2f", v);
    return std::string(b);
  };
  size_t w_mean = 8, w_std = 5;
  for (const BenchRow& r : rows) {
    w_mean = std::max(w_mean, fixed2(r.mean).size());
    w_std = std::max(w_std, fixed2(r.stddev).size());
  }
  std::vector<std::pair<std::string, std::string>> cells;
  size_t w0 = 4, w1 = 16;
  for (const BenchRow& r : rows) {
    cells.emplace_back(
        r.name, pad(fixed2(r.mean), w_mean, true) + " ± " + pad(fixed2(r.stddev), w_std, true));
    w0 = std::max(w0, display_columns(r.name));
    w1 = std::max(w1, display_columns(cells.back().second));
  }
  std::string out = "| " + pad("test", w0, false) + " | " + pad("t/s", w1, true) + " |\n|" +
                    std::string(w0 + 2, '-') + "|" + std::string(w1 + 2, '-') + "|\n";
  for (const auto& [name, cell] : cells) out += "| " + pad(name, w0, false) + " | " + cell + " |\n";
  return out;
}

}  // namespace slm::cli
