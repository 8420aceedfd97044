// The q/k row permutation: a bijection that turns Hugging Face's rotate-half
// RoPE into the interleaved RoPE llama's GGUF expects.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "convert/convert.h"

namespace slm::convert {
namespace {

// llama.cpp's permute spelled out: w.reshape(n_head, 2, half, ...).swapaxes(1, 2).
int64_t by_reshape(int64_t row, int64_t n_rows, int64_t n_head) {
  const int64_t half = n_rows / n_head / 2;
  // The permuted tensor's index (h, i, j) of [n_head, half, 2] reads (h, j, i) of [n_head, 2, half].
  const int64_t h = row / (2 * half), i = row % (2 * half) / 2, j = row % 2;
  return (h * 2 + j) * half + i;
}

TEST(PermuteQk, MatchesLlamaCppsReshapeAndIsABijection) {
  for (auto [rows, heads] : {std::pair<int64_t, int64_t>{32, 4}, {16, 2}, {64, 4}, {8, 1}}) {
    std::set<int64_t> seen;
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_EQ(permuted_qk_row(r, rows, heads), by_reshape(r, rows, heads)) << rows << "/" << heads << " row " << r;
      seen.insert(permuted_qk_row(r, rows, heads));
    }
    EXPECT_EQ(static_cast<int64_t>(seen.size()), rows);
    EXPECT_EQ(*seen.rbegin(), rows - 1);
  }
}

// RoPE of a head in HF order pairs (i, i + half); in GGUF order (2i, 2i + 1).
// After the permutation both give the same rotated values.
TEST(PermuteQk, TurnsRotateHalfIntoInterleavedRope) {
  const int64_t n_head = 2, head_dim = 8, rows = n_head * head_dim, half = head_dim / 2;
  std::vector<double> x(rows);
  for (int64_t i = 0; i < rows; ++i) x[i] = std::sin(1.7 * static_cast<double>(i) + 0.3);
  const double pos = 5;
  auto angle = [&](int64_t i) { return pos * std::pow(10000.0, -2.0 * static_cast<double>(i) / head_dim); };
  std::vector<double> hf(rows), gguf_in(rows), gguf(rows);
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < half; ++i) {
      const int64_t a = h * head_dim + i, b = a + half;
      const double c = std::cos(angle(i)), s = std::sin(angle(i));
      hf[a] = x[a] * c - x[b] * s;
      hf[b] = x[a] * s + x[b] * c;
    }
  for (int64_t r = 0; r < rows; ++r) gguf_in[r] = x[permuted_qk_row(r, rows, n_head)];
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < half; ++i) {
      const int64_t a = h * head_dim + 2 * i, b = a + 1;
      const double c = std::cos(angle(i)), s = std::sin(angle(i));
      gguf[a] = gguf_in[a] * c - gguf_in[b] * s;
      gguf[b] = gguf_in[a] * s + gguf_in[b] * c;
    }
  for (int64_t r = 0; r < rows; ++r) EXPECT_NEAR(gguf[r], hf[permuted_qk_row(r, rows, n_head)], 1e-12) << r;
}

}  // namespace
}  // namespace slm::convert
