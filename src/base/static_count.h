// Run-time counts as template arguments: SIMD loops over a few tokens or heads
// keep one accumulator register each, so their count must be a constant
// (kernels' token tiles, ops' attention head passes).
#pragma once

#include <type_traits>

namespace slm {

// f(std::integral_constant<int, n>{}) for a run-time 1 <= n <= kMax (other n:
// nothing).
template <int kMax, int kN = 1, typename F>
inline void with_count(int n, const F& f) {
  if constexpr (kN <= kMax) {
    if (n == kN) return f(std::integral_constant<int, kN>{});
    with_count<kMax, kN + 1>(n, f);
  }
}

}  // namespace slm
