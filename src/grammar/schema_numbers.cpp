// Integer range grammars for the JSON Schema compiler: [lo, hi] as the union of
// digit patterns, the classic range-to-regex split on decimal strings (per
// digit count, then per leading digit). Output size is O(digits^2) items.
#include <string>
#include <vector>

#include "base/error.h"
#include "grammar/schema_internal.h"

namespace slm::grammar::detail {
namespace {

std::string digit_class(char lo, char hi) {
  std::string s(lo == hi ? "\"0\"" : "[0-0]");
  s[1] = lo;
  if (lo != hi) s[3] = hi;
  return s;
}

std::string any_digits(size_t n) {
  if (n == 0) return "";
  return n == 1 ? " [0-9]" : std::string(" [0-9]{") + std::to_string(n) + "}";
}

bool all_of(std::string_view s, char c) { return s.find_first_not_of(c) == std::string_view::npos; }

// Same-length decimal strings x <= y: the alternatives spelling [x, y].
void same_length(const std::string& x, const std::string& y, const std::string& prefix,
                 std::vector<std::string>& out) {
  const size_t n = x.size();
  if (n == 0) {
    out.push_back(prefix.empty() ? "\"\"" : prefix);
    return;
  }
  const std::string lead = prefix.empty() ? "" : prefix + " ";
  if (x[0] == y[0]) {
    same_length(x.substr(1), y.substr(1), lead + digit_class(x[0], x[0]), out);
    return;
  }
  const std::string xs = x.substr(1), ys = y.substr(1);
  const char lo = all_of(xs, '0') ? x[0] : static_cast<char>(x[0] + 1);
  const char hi = all_of(ys, '9') ? y[0] : static_cast<char>(y[0] - 1);
  if (!all_of(xs, '0')) same_length(xs, std::string(n - 1, '9'), lead + digit_class(x[0], x[0]), out);
  if (lo <= hi) out.push_back(lead + digit_class(lo, hi) + any_digits(n - 1));
  if (!all_of(ys, '9')) same_length(std::string(n - 1, '0'), ys, lead + digit_class(y[0], y[0]), out);
}

// Non-negative integers in [a, b] (b empty: unbounded), decimal strings.
void non_negative(const std::string& a, const std::string& b, std::vector<std::string>& out) {
  if (b.empty()) {
    non_negative(a, std::string(a.size(), '9'), out);
    out.push_back(std::string("[1-9] [0-9]{") + std::to_string(a.size()) + ",}");
    return;
  }
  for (size_t len = a.size(); len <= b.size(); ++len) {
    const std::string lo = len == a.size() ? a : std::string("1") + std::string(len - 1, '0');
    const std::string hi = len == b.size() ? b : std::string(len, '9');
    same_length(lo, hi, "", out);
  }
}

std::string join(const std::vector<std::string>& alts) {
  std::string s = "(";
  for (size_t i = 0; i < alts.size(); ++i) s += (i ? " | " : " ") + alts[i];
  return s + " )";
}

}  // namespace

std::string int_range_gbnf(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  constexpr int64_t kMax = 1000000000000000000;  // 10^18
  if ((lo && (*lo > kMax || *lo < -kMax)) || (hi && (*hi > kMax || *hi < -kMax)))
    throw Error("integer bound beyond 10^18 is not supported");
  if (lo && hi && *lo > hi) throw Error("minimum is above maximum: no integer fits");
  std::vector<std::string> alts;
  if (!lo || *lo < 0) {
    const int64_t mag_lo = hi && *hi < 0 ? -*hi : 1;
    std::vector<std::string> neg;
    non_negative(std::to_string(mag_lo), lo ? std::to_string(-*lo) : "", neg);
    alts.push_back(std::string("\"-\" ") + join(neg));
  }
  if (!hi || *hi >= 0) {
    const int64_t a = lo && *lo > 0 ? *lo : 0;
    non_negative(std::to_string(a), hi ? std::to_string(*hi) : "", alts);
  }
  return join(alts);
}

}  // namespace slm::grammar::detail
