// Summaries of repeated benchmark rounds.
#pragma once

#include <algorithm>
#include <vector>

namespace slm::bench {

// The median of v (non-empty): the middle value, or the mean of the two
// middle ones when v has an even count.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

}  // namespace slm::bench
