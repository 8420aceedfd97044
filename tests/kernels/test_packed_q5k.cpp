// Packed Q5_K: the scalar packed tile (the oracle) against the type's own
// scalar vec_dot, and every ISA's tile against the oracle bit for bit, called
// directly for 1..kPackMaxTokens tokens and through matmul for 1..40 tokens
// (batched decoding and prompt tiles), ragged rows, weights of random bytes
// (every level, fifth bit, 6-bit scale and min) and of quantized floats.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "base/fp16.h"
#include "base/thread_pool.h"
#include "kernel_test_util.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

using test::random_floats;

// Q8_K activations of `n` tokens with packed_matmul's corrections (sums of
// the 32-wide sub-blocks) and scales.
struct Acts {
  std::vector<std::vector<uint8_t>> q;
  std::vector<std::vector<float>> d;
  std::vector<std::vector<int32_t>> corr;
  std::vector<PackedAct> acts;
};
Acts make_acts(int n, int64_t cols, uint32_t seed) {
  Acts a;
  const int64_t nb = cols / kQKK;
  a.q.resize(n);
  a.d.resize(n);
  a.corr.resize(n);
  for (int i = 0; i < n; ++i) {
    auto x = random_floats(cols, seed + i);
    // Token 0 has the largest magnitudes the sub-block sums can take (all of
    // a sub-block at -128 or 127: |sum| = 4096 must survive as int16).
    if (i == 0)
      for (int64_t e = 0; e < cols; ++e) x[e] = (e / 32) % 2 == 0 ? -1.0f : 0.99f;
    a.q[i] = test::quantize(DType::Q8_K, x);
    for (int64_t b = 0; b < nb; ++b) {
      const auto* blk = reinterpret_cast<const BlockQ8_K*>(a.q[i].data()) + b;
      a.d[i].push_back(blk->d);
      for (int j = 0; j < kKCorr; ++j)
        a.corr[i].push_back(j < 8 ? blk->bsums[2 * j] + blk->bsums[2 * j + 1] : 0);
    }
  }
  for (int i = 0; i < n; ++i) a.acts.push_back({a.q[i].data(), a.d[i].data(), a.corr[i].data()});
  return a;
}

// 16 rows of random bytes with bounded fp16 scales; rows 3 and 9 take the
// extremes (every level 31 with scales and mins 63, and all zero bytes).
std::vector<uint8_t> random_rows(int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t rb = static_cast<size_t>(row_bytes(DType::Q5_K, cols));
  std::vector<uint8_t> w = test::random_blocks(DType::Q5_K, kPackRows * cols, seed);
  for (int64_t b = 0; b < cols / kQKK; ++b) {
    auto* hi = reinterpret_cast<BlockQ5_K*>(w.data() + 3 * rb) + b;
    std::memset(hi->scales, 0xFF, sizeof hi->scales);
    std::memset(hi->qh, 0xFF, sizeof hi->qh);
    std::memset(hi->qs, 0xFF, sizeof hi->qs);
    auto* lo = reinterpret_cast<BlockQ5_K*>(w.data() + 9 * rb) + b;
    std::memset(lo->scales, 0, sizeof lo->scales);
    std::memset(lo->qh, 0, sizeof lo->qh);
    std::memset(lo->qs, 0, sizeof lo->qs);
  }
  return w;
}

// Sum over the row's elements of |d sc_j q_e y_e| + |dmin m_j y_e| (y the
// token's Q8_K values): the size of the terms the integer sums cancel, so
// the scale of any float rounding in d * dy * isum - dmin * dy * minsum.
double term_magnitude(const BlockQ5_K* w, const BlockQ8_K* a, int64_t nb) {
  double sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const double d = std::fabs(fp16_to_f32(w[b].d)), dmin = std::fabs(fp16_to_f32(w[b].dmin));
    for (int e = 0; e < kQKK; ++e) {
      uint8_t sc, m;
      unpack_scale_min_k4(e / 32, w[b].scales, &sc, &m);
      const uint8_t byte = w[b].qs[32 * (e / 64) + e % 32];
      const int q = ((e % 64) < 32 ? byte & 0xF : byte >> 4) | ((w[b].qh[e % 32] >> (e / 32)) & 1)
                                                                   << 4;
      sum += std::fabs(a[b].d) * std::abs(a[b].qs[e]) * (d * sc * q + dmin * m);
    }
  }
  return sum;
}

// The oracle is the type's own arithmetic: per row and token it equals the
// scalar vec_dot of the source row up to float rounding (the same integer
// sums; vec_dot rounds d * dy first: a few ulps per super-block of the
// terms' magnitude), and a packed row reads back as the scalar
// dequantizer's floats bit for bit.
TEST(PackedQ5K, OracleMatchesVecDotAndDequantize) {
  const int64_t nb = 3, cols = nb * kQKK;
  const auto w = random_rows(cols, 7);
  const PackedMatrix p = PackedMatrix::pack(DType::Q5_K, w.data(), kPackRows, cols);
  ASSERT_FALSE(p.empty());
  EXPECT_EQ(p.size_bytes(), size_t{3} * kPackRows * 180);
  const Acts a = make_acts(3, cols, 11);
  const TypeTraits& tr = traits(Isa::kScalar, DType::Q5_K);
  const size_t rb = static_cast<size_t>(row_bytes(DType::Q5_K, cols));
  std::vector<float> y(3 * kPackRows);
  tile_scalar_q5_k(nb, p.data(), a.acts.data(), 3, y.data(), kPackRows, kPackRows);
  int inexact = 0;
  for (int t = 0; t < 3; ++t)
    for (int r = 0; r < kPackRows; ++r) {
      float want;
      tr.vec_dot(cols, &want, w.data() + r * rb, a.q[t].data());
      const double scale = term_magnitude(reinterpret_cast<const BlockQ5_K*>(w.data() + r * rb),
                                          reinterpret_cast<const BlockQ8_K*>(a.q[t].data()), nb);
      EXPECT_NEAR(y[t * kPackRows + r], want, 8 * nb * 6e-8 * scale + 1e-30)
          << "token " << t << " row " << r;
      inexact += y[t * kPackRows + r] != want;
    }
  EXPECT_GT(inexact, 0);  // the rounding differs (the bound is not vacuous)
  std::vector<float> src(cols), got(cols);
  for (int r = 0; r < kPackRows; ++r) {
    tr.dequantize_row(w.data() + r * rb, src.data(), cols);
    p.dequantize_stripe(r, 0, cols, got.data());
    ASSERT_EQ(0, std::memcmp(src.data(), got.data(), cols * 4)) << "row " << r;
  }
}

// Every ISA's tile called directly: the oracle's bits for 1..kPackMaxTokens
// tokens, full and ragged groups, odd and even super-block counts.
TEST(PackedQ5K, TilesMatchOracleForEveryTokenCount) {
  for (int64_t nb : {int64_t{1}, int64_t{2}, int64_t{5}}) {
    const int64_t cols = nb * kQKK;
    const auto w = random_rows(cols, 20 + static_cast<uint32_t>(nb));
    const PackedMatrix p = PackedMatrix::pack(DType::Q5_K, w.data(), kPackRows, cols);
    const Acts a = make_acts(kPackMaxTokens, cols, 30);
    for (Isa isa : available_isas()) {
      const PackedTileFn tile = isa_table(isa).packed_tile[static_cast<int>(DType::Q5_K)];
      ASSERT_NE(tile, nullptr);
      for (int nt = 1; nt <= kPackMaxTokens; ++nt)
        for (int nr : {kPackRows, 1, 7}) {
          std::vector<float> want(nt * kPackRows, -3.0f), got = want;
          tile_scalar_q5_k(nb, p.data(), a.acts.data(), nt, want.data(), kPackRows, nr);
          tile(nb, p.data(), a.acts.data(), nt, got.data(), kPackRows, nr);
          ASSERT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * 4))
              << isa_name(isa) << " nb=" << nb << " nt=" << nt << " nr=" << nr;
        }
    }
  }
}

// Through matmul (activation quantizing, token passes, the thread split):
// batched decoding and prompt tiles of 1..40 tokens over 37 rows (ragged last
// group) of random-byte weights give the scalar table's bits on every ISA at
// 1 and 2 threads; and packing pays exactly where a SIMD tile exists.
TEST(PackedQ5K, MatmulEveryTokenCountMatchesScalar) {
  ThreadPool one(1), two(2);
  std::vector<uint8_t> scratch;
  const Isa before = active_isa();
  const int64_t rows = 37, cols = 4 * kQKK;
  std::vector<uint8_t> w;
  for (uint32_t g = 0; g < 3; ++g) {
    const auto part = random_rows(cols, 40 + g);
    w.insert(w.end(), part.begin(), part.end());
  }
  w.resize(static_cast<size_t>(rows * row_bytes(DType::Q5_K, cols)));
  const PackedMatrix p = PackedMatrix::pack(DType::Q5_K, w.data(), rows, cols);
  const auto x = random_floats(40 * cols, 52);
  for (int64_t m = 1; m <= 40; ++m) {
    const size_t n = static_cast<size_t>(rows * m);
    ASSERT_TRUE(set_active_isa(Isa::kScalar));
    std::vector<float> ref(n);
    matmul(p, x.data(), m, ref.data(), one, scratch);
    for (Isa isa : available_isas()) {
      ASSERT_TRUE(set_active_isa(isa));
      for (ThreadPool* pool : {&one, &two}) {
        std::vector<float> y(n, -1.0f);
        matmul(p, x.data(), m, y.data(), *pool, scratch);
        ASSERT_EQ(0, std::memcmp(y.data(), ref.data(), n * 4))
            << isa_name(isa) << " m=" << m << " threads=" << pool->size();
      }
    }
  }
  for (Isa isa : available_isas()) {
    ASSERT_TRUE(set_active_isa(isa));
    EXPECT_EQ(PackedMatrix::pays(DType::Q5_K), isa == Isa::kAvx512 || isa == Isa::kAmx)
        << isa_name(isa);
  }
  set_active_isa(before);
}

}  // namespace
}  // namespace slm::kernels
