// Packed Q4_1 / Q5_1 / IQ4_NL (packed_legacy2.cpp, x86_avx512_packed_legacy2.cpp):
// the scalar oracle takes the type's own vec_dot steps, so a packed product
// on any ISA gives the plain scalar matmul's bits; the tiles of every ISA
// give the oracle's bits for every token count they take and ragged rows;
// a token in a batch gets the bits it gets alone; packing pays only where a
// SIMD tile exists.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "base/thread_pool.h"
#include "kernel_test_util.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

using test::random_floats;

constexpr DType kTypes[] = {DType::Q4_1, DType::Q5_1, DType::IQ4_NL};

// Random bytes with bounded scales (every nibble and fifth-bit pattern, m of
// either sign), or the scalar quantizer's blocks.
std::vector<uint8_t> weights(DType t, int64_t rows, int64_t cols, bool random_bytes,
                             uint32_t seed) {
  if (!random_bytes) return test::quantize(t, random_floats(rows * cols, seed, 0.05f));
  return test::random_blocks(t, rows * cols, seed);
}

// Every token count 1..16 (two narrow passes and a tail at most), rows that
// fill groups and ragged ones: on every ISA and at 1 and 2 threads, the
// packed product is the plain scalar matmul (row by row vec_dot) bit for bit.
TEST(PackedLegacy2, EveryIsaAndTokenCountGivesThePlainScalarBits) {
  ThreadPool one(1), two(2);
  std::vector<uint8_t> scratch;
  const Isa before = active_isa();
  for (DType t : kTypes)
    for (bool random_bytes : {true, false})
      for (int64_t rows : {int64_t{37}, int64_t{16}, int64_t{5}}) {
        const int64_t cols = rows == 16 ? 4 * kQK32 : 5 * kQK32;
        const auto w = weights(t, rows, cols, random_bytes, 11 + static_cast<uint32_t>(rows));
        const PackedMatrix p = PackedMatrix::pack(t, w.data(), rows, cols);
        ASSERT_FALSE(p.empty());
        const auto x = random_floats(16 * cols, 12);
        for (int64_t m = 1; m <= 16; ++m) {
          const size_t n = static_cast<size_t>(rows * m);
          ASSERT_TRUE(set_active_isa(Isa::kScalar));
          std::vector<float> plain(n);
          matmul(t, w.data(), rows, cols, x.data(), m, plain.data(), one, scratch);
          for (Isa isa : available_isas()) {
            ASSERT_TRUE(set_active_isa(isa));
            for (ThreadPool* pool : {&one, &two}) {
              std::vector<float> y(n, -1.0f);
              matmul(p, x.data(), m, y.data(), *pool, scratch);
              ASSERT_EQ(0, std::memcmp(y.data(), plain.data(), n * 4))
                  << isa_name(isa) << " " << dtype_name(t) << " rows=" << rows << " m=" << m
                  << " random_bytes=" << random_bytes << " threads=" << pool->size();
            }
          }
        }
      }
  set_active_isa(before);
}

// The tiles called directly (narrow: every token count 1..kPackMaxTokens;
// wide, where an ISA has them: 2..kPackWideTokens; full and ragged groups,
// rows of y further apart than the group) against the scalar oracle, which
// itself is checked against the scalar vec_dot per (row, token).
TEST(PackedLegacy2, TilesMatchTheOracleAndTheOracleMatchesVecDot) {
  const int64_t nb = 3, cols = nb * kQK32, ldy = 21;
  constexpr int kTokens = kPackWideTokens;
  for (DType t : kTypes) {
    const auto w = test::random_blocks(t, kPackRows * cols, 31);
    const PackedMatrix p = PackedMatrix::pack(t, w.data(), kPackRows, cols);
    const PackedTileFn oracle = isa_table(Isa::kScalar).packed_tile[static_cast<int>(t)];
    ASSERT_NE(oracle, nullptr);
    std::vector<std::vector<uint8_t>> q(kTokens);
    std::vector<std::vector<float>> d(kTokens);
    std::vector<std::vector<int32_t>> corr(kTokens);
    PackedAct acts[kTokens];
    for (int k = 0; k < kTokens; ++k) {
      q[k] = test::quantize(DType::Q8_0, random_floats(cols, 40 + k));
      for (int64_t b = 0; b < nb; ++b) {
        const auto* blk = reinterpret_cast<const BlockQ8_0*>(q[k].data()) + b;
        int32_t sum = 0;
        for (int e = 0; e < kQK32; ++e) sum += blk->qs[e];
        d[k].push_back(fp16_to_f32(blk->d));
        corr[k].push_back(packed_block_corr(t, sum));
      }
      acts[k] = PackedAct{q[k].data(), d[k].data(), corr[k].data()};
    }
    std::vector<float> want(static_cast<size_t>(kTokens * ldy), -3.0f);
    oracle(nb, p.data(), acts, kTokens, want.data(), ldy, kPackRows);
    const size_t rb = static_cast<size_t>(row_bytes(t, cols));
    for (int k = 0; k < kTokens; ++k)
      for (int r = 0; r < kPackRows; ++r) {
        float s = 0;
        traits(Isa::kScalar, t).vec_dot(cols, &s, w.data() + r * rb, q[k].data());
        ASSERT_EQ(0, std::memcmp(&s, &want[k * ldy + r], 4))
            << dtype_name(t) << " token " << k << " row " << r << ": " << s << " "
            << want[k * ldy + r];
      }
    for (Isa isa : available_isas()) {
      const TypeTable& table = isa_table(isa);
      for (bool wide : {false, true}) {
        const PackedTileFn tile =
            (wide ? table.packed_tile_wide : table.packed_tile)[static_cast<int>(t)];
        if (tile == nullptr) continue;
        for (int nt = wide ? 2 : 1; nt <= (wide ? kPackWideTokens : kPackMaxTokens); ++nt)
          for (int nr : {kPackRows, 5, 1}) {
            std::vector<float> got(want.size(), -3.0f), ref(want.size(), -3.0f);
            oracle(nb, p.data(), acts, nt, ref.data(), ldy, nr);
            tile(nb, p.data(), acts, nt, got.data(), ldy, nr);
            ASSERT_EQ(0, std::memcmp(got.data(), ref.data(), got.size() * 4))
                << isa_name(isa) << " " << dtype_name(t) << " wide=" << wide << " nt=" << nt
                << " nr=" << nr;
          }
      }
    }
  }
}

// Batched decoding: one step of several sequences is one matmul of their
// tokens; each sequence's row equals what its token gives alone, on every ISA.
TEST(PackedLegacy2, BatchedDecodeEqualsEachSequenceAlone) {
  ThreadPool two(2);
  std::vector<uint8_t> scratch;
  const Isa before = active_isa();
  const int64_t rows = 45, cols = 8 * kQK32, seqs = 13;
  for (DType t : kTypes) {
    const auto w = weights(t, rows, cols, false, 71);
    const PackedMatrix p = PackedMatrix::pack(t, w.data(), rows, cols);
    const auto x = random_floats(seqs * cols, 72);
    for (Isa isa : available_isas()) {
      ASSERT_TRUE(set_active_isa(isa));
      std::vector<float> batched(static_cast<size_t>(rows * seqs), -1.0f);
      matmul(p, x.data(), seqs, batched.data(), two, scratch);
      for (int64_t s = 0; s < seqs; ++s) {
        std::vector<float> alone(static_cast<size_t>(rows), -2.0f);
        matmul(p, x.data() + s * cols, 1, alone.data(), two, scratch);
        ASSERT_EQ(0, std::memcmp(alone.data(), batched.data() + s * rows, rows * 4))
            << isa_name(isa) << " " << dtype_name(t) << " sequence " << s;
      }
    }
  }
  set_active_isa(before);
}

// Packing pays only where a SIMD tile exists (AVX-512 VNNI and the AMX table
// above it); elsewhere these types keep the plain layout and its vec_dot.
TEST(PackedLegacy2, PaysOnlyWithAVnniTile) {
  const Isa before = active_isa();
  for (Isa isa : available_isas()) {
    ASSERT_TRUE(set_active_isa(isa));
    const bool vnni = isa == Isa::kAvx512 || isa == Isa::kAmx;
    for (DType t : kTypes) {
      EXPECT_TRUE(PackedMatrix::has_layout(t));
      EXPECT_EQ(PackedMatrix::pays(t), vnni) << isa_name(isa) << " " << dtype_name(t);
    }
  }
  set_active_isa(before);
  EXPECT_EQ(packed_block_bytes(DType::Q4_1), kPackRows * 20);
  EXPECT_EQ(packed_block_bytes(DType::Q5_1), kPackRows * 24);
  EXPECT_EQ(packed_block_bytes(DType::IQ4_NL), kPackRows * 18);
}

}  // namespace
}  // namespace slm::kernels
