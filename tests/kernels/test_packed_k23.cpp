// Packed Q3_K and Q2_K over weights of random bytes (every level, every
// scale including the extremes the quantizers rarely emit):
//  - the scalar packed oracle equals a reference written here from the file
//    format (blocks.h) and the Q8_K activation, bit for bit: the integer
//    sums of the type's scalar vec_dot, then the packed tiles' float steps;
//  - every ISA's tile gives the oracle's bits for 1..kPackMaxTokens tokens a
//    call and ragged rows, and matmul every token count 1..16 at 1 and 2
//    threads.
#include <gtest/gtest.h>

#include <cmath>

#include "base/thread_pool.h"
#include "kernel_test_util.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

using test::random_floats;

// Integer sum over one source super-block against a Q8_K block, and the
// block's float scales, from the file layout (blocks.h comments).
struct BlockSums {
  int32_t isum = 0, minsum = 0;
  float d = 0, dmin = 0;
};

BlockSums source_sums(DType t, const uint8_t* src, const BlockQ8_K& a) {
  BlockSums s;
  auto two_bits = [](const uint8_t* qs, int e) {
    return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
  };
  if (t == DType::Q3_K) {
    const auto& b = *reinterpret_cast<const BlockQ3_K*>(src);
    s.d = fp16_to_f32(b.d);
    for (int sb = 0; sb < 16; ++sb) {
      int32_t dot = 0;
      for (int e = 16 * sb; e < 16 * sb + 16; ++e) {
        const int level = two_bits(b.qs, e) | ((b.hmask[e % 32] >> (e / 32)) & 1) << 2;
        dot += (level - 4) * a.qs[e];
      }
      s.isum += q3k_scale(b.scales, sb) * dot;
    }
  } else {
    const auto& b = *reinterpret_cast<const BlockQ2_K*>(src);
    s.d = fp16_to_f32(b.d);
    s.dmin = fp16_to_f32(b.dmin);
    for (int sb = 0; sb < 16; ++sb) {
      int32_t dot = 0, sum = 0;
      for (int e = 16 * sb; e < 16 * sb + 16; ++e) {
        dot += two_bits(b.qs, e) * a.qs[e];
        sum += a.qs[e];
      }
      s.isum += (b.scales[sb] & 0xF) * dot;
      s.minsum += (b.scales[sb] >> 4) * sum;
    }
  }
  return s;
}

// Random-byte rows of t (valid fp16 scales) and Q8_K activations.
struct Case {
  DType t;
  int64_t rows, nb;
  std::vector<uint8_t> w;
  PackedMatrix p;
  std::vector<std::vector<uint8_t>> q;
  std::vector<std::vector<float>> d;
  std::vector<std::vector<int32_t>> corr;
  std::vector<PackedAct> acts;
};

Case make_case(DType t, int64_t rows, int64_t nb, int n_tokens, uint32_t seed) {
  Case c{t, rows, nb, {}, {}, {}, {}, {}, {}};
  std::mt19937 rng(seed);
  const int64_t cols = nb * kQKK;
  c.w.resize(static_cast<size_t>(rows * row_bytes(t, cols)));
  for (uint8_t& byte : c.w) byte = static_cast<uint8_t>(rng());
  test::sanitize_scales(t, c.w, rng);
  c.p = PackedMatrix::pack(t, c.w.data(), rows, cols);
  for (int i = 0; i < n_tokens; ++i) {
    c.q.push_back(test::quantize(DType::Q8_K, random_floats(cols, seed + 1 + i)));
    c.d.emplace_back();
    c.corr.emplace_back();
    for (int64_t b = 0; b < nb; ++b) {
      const auto* blk = reinterpret_cast<const BlockQ8_K*>(c.q[i].data()) + b;
      c.d[i].push_back(blk->d);
      // packed_matmul's corrections: Q3_K's level offset, Q2_K's sums.
      for (int j = 0; j < kKCorr; ++j)
        c.corr[i].push_back((t == DType::Q3_K ? -4 : 1) * blk->bsums[j]);
    }
  }
  for (int i = 0; i < n_tokens; ++i)
    c.acts.push_back(PackedAct{c.q[i].data(), c.d[i].data(), c.corr[i].data()});
  return c;
}

class PackedK23 : public ::testing::TestWithParam<DType> {};

TEST_P(PackedK23, OracleEqualsTheSourceBlocksSums) {
  const DType t = GetParam();
  const Case c = make_case(t, 21, 3, 2, 11);
  ASSERT_FALSE(c.p.empty());
  const PackedTileFn oracle = isa_table(Isa::kScalar).packed_tile[static_cast<int>(t)];
  ASSERT_NE(oracle, nullptr);
  const size_t src_row = static_cast<size_t>(row_bytes(t, c.nb * kQKK));
  const size_t group_bytes = static_cast<size_t>(c.nb * packed_block_bytes(t));
  for (int64_t g = 0; g * kPackRows < c.rows; ++g) {
    const int nr = static_cast<int>(std::min<int64_t>(kPackRows, c.rows - g * kPackRows));
    std::vector<float> got(2 * kPackRows, -5.0f);
    oracle(c.nb, c.p.data() + g * group_bytes, c.acts.data(), 2, got.data(), kPackRows, nr);
    for (int tk = 0; tk < 2; ++tk)
      for (int r = 0; r < nr; ++r) {
        float want = 0;
        for (int64_t b = 0; b < c.nb; ++b) {
          const uint8_t* src = c.w.data() + (g * kPackRows + r) * src_row + b * row_bytes(t, kQKK);
          const auto& a = reinterpret_cast<const BlockQ8_K*>(c.q[tk].data())[b];
          const BlockSums s = source_sums(t, src, a);
          want = std::fma(static_cast<float>(s.isum) * s.d, a.d, want);
          if (t == DType::Q2_K)
            want = std::fma(-(static_cast<float>(s.minsum) * s.dmin), a.d, want);
        }
        ASSERT_EQ(got[tk * kPackRows + r], want)
            << "group " << g << " row " << r << " token " << tk;
      }
    for (int r = nr; r < kPackRows; ++r) EXPECT_EQ(got[r], -5.0f);  // only valid rows written
  }
}

TEST_P(PackedK23, EveryIsaTileMatchesTheOracle) {
  const DType t = GetParam();
  const PackedTileFn oracle = isa_table(Isa::kScalar).packed_tile[static_cast<int>(t)];
  for (int64_t nb : {int64_t{1}, int64_t{3}}) {
    const Case c = make_case(t, kPackRows, nb, kPackMaxTokens, 20 + static_cast<uint32_t>(nb));
    for (Isa isa : available_isas()) {
      const PackedTileFn tile = isa_table(isa).packed_tile[static_cast<int>(t)];
      ASSERT_NE(tile, nullptr);
      for (int nt = 1; nt <= kPackMaxTokens; ++nt)
        for (int nr : {kPackRows, 5, 1}) {
          std::vector<float> want(static_cast<size_t>(nt * kPackRows), -3.0f), got = want;
          for (int i = 0; i < nt; ++i)
            oracle(nb, c.p.data(), c.acts.data() + i, 1, want.data() + i * kPackRows, kPackRows,
                   nr);
          tile(nb, c.p.data(), c.acts.data(), nt, got.data(), kPackRows, nr);
          ASSERT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * 4))
              << isa_name(isa) << " " << dtype_name(t) << " nb=" << nb << " nt=" << nt
              << " nr=" << nr;
        }
    }
  }
}

TEST_P(PackedK23, MatmulEveryTokenCountMatchesScalar) {
  const DType t = GetParam();
  const int64_t rows = 37, nb = 2, cols = nb * kQKK;
  const Case c = make_case(t, rows, nb, 0, 31);
  const auto x = random_floats(16 * cols, 32);
  ThreadPool one(1), two(2);
  std::vector<uint8_t> scratch;
  const Isa before = active_isa();
  for (int64_t m = 1; m <= 16; ++m) {
    const size_t n = static_cast<size_t>(rows * m);
    ASSERT_TRUE(set_active_isa(Isa::kScalar));
    // (Agreement with the plain matmul is test_packed.cpp's, on quantized
    // weights: random bytes give block terms that cancel by orders of
    // magnitude, beyond any fixed tolerance.)
    std::vector<float> ref(n);
    matmul(c.p, x.data(), m, ref.data(), one, scratch);
    for (Isa isa : available_isas())
      for (ThreadPool* pool : {&one, &two}) {
        ASSERT_TRUE(set_active_isa(isa));
        std::vector<float> y(n, -1.0f);
        matmul(c.p, x.data(), m, y.data(), *pool, scratch);
        ASSERT_EQ(0, std::memcmp(y.data(), ref.data(), n * 4))
            << isa_name(isa) << " m=" << m << " threads=" << pool->size();
      }
  }
  set_active_isa(before);
}

// Packing pays exactly where a SIMD tile exists: AVX-512 (and AMX on top).
TEST_P(PackedK23, PacksOnlyWhereASimdTileExists) {
  const DType t = GetParam();
  EXPECT_TRUE(PackedMatrix::has_layout(t));
  EXPECT_FALSE(isa_table(Isa::kScalar).packed_native[static_cast<int>(t)]);
  for (Isa isa : available_isas())
    EXPECT_EQ(isa_table(isa).packed_native[static_cast<int>(t)],
              isa == Isa::kAvx512 || isa == Isa::kAmx)
        << isa_name(isa);
}

INSTANTIATE_TEST_SUITE_P(Types, PackedK23, ::testing::Values(DType::Q3_K, DType::Q2_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace slm::kernels
