// PackedMatrix: the packed tiles of every ISA give the scalar packed tile's
// bits, at 1 and 2 threads, for ragged row counts and token tails; and they
// agree with the plain (unpacked) scalar matmul up to float rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "base/thread_pool.h"
#include "kernel_test_util.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

using test::random_floats;

class Packed : public ::testing::TestWithParam<DType> {};

TEST_P(Packed, EveryIsaMatchesScalarTileAndPlainMatmul) {
  const DType t = GetParam();
  ASSERT_TRUE(PackedMatrix::has_layout(t));
  ThreadPool one(1), two(2);
  std::vector<uint8_t> scratch;
  const Isa before = active_isa();
  struct Shape {
    int64_t rows, cols, tokens;
  };
  // 32 (legacy types, and F16's packed column blocks) or 256 (K-quants).
  const int64_t bs = std::max<int64_t>(32, test::block_size(t));
  for (Shape s : {Shape{1, bs, 1}, Shape{16, 2 * bs, 1}, Shape{17, 3 * bs, 3}, Shape{48, 7 * bs, 8},
                  Shape{100, 8 * bs, 19}, Shape{33, 4 * bs, 9}}) {
    const auto wf = random_floats(s.rows * s.cols, 21, 0.05f);
    const auto w = test::quantize(t, wf);
    const auto x = random_floats(s.tokens * s.cols, 22);
    const PackedMatrix p = PackedMatrix::pack(t, w.data(), s.rows, s.cols);
    ASSERT_FALSE(p.empty());
    const size_t n = static_cast<size_t>(s.rows * s.tokens);

    ASSERT_TRUE(set_active_isa(Isa::kScalar));
    std::vector<float> ref(n), plain(n);
    matmul(p, x.data(), s.tokens, ref.data(), one, scratch);
    matmul(t, w.data(), s.rows, s.cols, x.data(), s.tokens, plain.data(), one, scratch);
    for (size_t i = 0; i < n; ++i)
      ASSERT_NEAR(ref[i], plain[i], 1e-5 * (std::fabs(plain[i]) + 1)) << dtype_name(t) << " " << i;

    for (Isa isa : available_isas()) {
      ASSERT_TRUE(set_active_isa(isa));
      for (ThreadPool* pool : {&one, &two}) {
        std::vector<float> y(n, -1.0f);
        matmul(p, x.data(), s.tokens, y.data(), *pool, scratch);
        ASSERT_EQ(0, std::memcmp(y.data(), ref.data(), n * 4))
            << isa_name(isa) << " " << dtype_name(t) << " rows=" << s.rows << " tokens=" << s.tokens
            << " threads=" << pool->size();
      }
    }
  }
  set_active_isa(before);
}

// Packing shares a matrix's groups among a pool's threads (model loading):
// on 2 or 3 threads, a ragged row count, the same bytes as on one.
TEST_P(Packed, PackingOnSeveralThreadsGivesTheSameBytes) {
  const DType t = GetParam();
  const int64_t rows = 2001, cols = 1024;  // 126 groups: several tasks for every type
  const auto w = test::quantize(t, random_floats(rows * cols, 43, 0.05f));
  const PackedMatrix one = PackedMatrix::pack(t, w.data(), rows, cols);
  ASSERT_FALSE(one.empty());
  ASSERT_GE(one.size_bytes(), size_t{512} << 10);  // at least two tasks of 256 KiB
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    const PackedMatrix p = PackedMatrix::pack(t, w.data(), rows, cols, &pool);
    ASSERT_EQ(p.size_bytes(), one.size_bytes());
    EXPECT_EQ(0, std::memcmp(p.data(), one.data(), one.size_bytes()))
        << dtype_name(t) << " threads=" << threads;
  }
}

INSTANTIATE_TEST_SUITE_P(PackedTypes, Packed,
                         ::testing::Values(DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K,
                                           DType::Q6_K, DType::F16, DType::Q3_K, DType::Q2_K,
                                           DType::Q4_1, DType::Q5_1, DType::IQ4_NL, DType::Q5_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// Batched decoding and prompt tiles: every token count 1..33 (the wide AMX
// tiles take 2..16 tokens a call, Q4_K's up to 64 in passes of 16, the
// AVX-512 Q4_0 / Q5_0 / Q8_0 pair tiles 2..16 in one pass, so this
// covers full tiles, several passes, tails and the one-token narrow tile), ragged rows, odd and
// even block counts: every ISA gives the scalar tile's bits, at 1 and 2 threads.
TEST(PackedMatrix, EveryTokenCountMatchesScalar) {
  ThreadPool one(1), two(2);
  std::vector<uint8_t> scratch;
  const Isa before = active_isa();
  for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::Q3_K,
                  DType::Q2_K, DType::Q4_1, DType::Q5_1, DType::IQ4_NL, DType::Q5_K}) {
    const int64_t be = packed_block_elems(t);
    for (int64_t cols : {5 * be, 4 * be}) {
      const int64_t rows = 37;
      const auto w = test::quantize(t, random_floats(rows * cols, 51, 0.05f));
      const PackedMatrix p = PackedMatrix::pack(t, w.data(), rows, cols);
      const auto x = random_floats(33 * cols, 52);
      for (int64_t m = 1; m <= 33; ++m) {
        const size_t n = static_cast<size_t>(rows * m);
        ASSERT_TRUE(set_active_isa(Isa::kScalar));
        std::vector<float> ref(n);
        matmul(p, x.data(), m, ref.data(), one, scratch);
        for (Isa isa : available_isas())
          for (ThreadPool* pool : {&one, &two}) {
            ASSERT_TRUE(set_active_isa(isa));
            std::vector<float> y(n, -1.0f);
            matmul(p, x.data(), m, y.data(), *pool, scratch);
            ASSERT_EQ(0, std::memcmp(y.data(), ref.data(), n * 4))
                << isa_name(isa) << " " << dtype_name(t) << " cols=" << cols << " m=" << m
                << " threads=" << pool->size();
          }
      }
    }
  }
  set_active_isa(before);
}

// The wide tiles called directly with activation rows that are not evenly
// spaced (the gathered path) and with evenly spaced ones: the scalar tile's
// bits for every token count they take (AMX Q4_K: up to 64, several
// 16-token passes over one unpack, and the tail alone). Skipped where no ISA has wide tiles.
// The K-quants take Q8_K activations with packed_matmul's corrections (Q4_K:
// sums of the 32-value sub-blocks; Q6_K: -32 x sums of the 16-value ones);
// their weights are random bytes with bounded scales, so every level and
// sub-block scale pattern (Q6_K's negative scales too) goes through the tiles.
TEST(PackedMatrix, WideTilesMatchScalarTile) {
  const int64_t nb = 3;
  for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const bool k = packed_is_k(t);
    const int64_t cols = nb * packed_block_elems(t);
    std::vector<uint8_t> w;
    if (k) {
      std::mt19937 rng(61);
      w.resize(static_cast<size_t>(kPackRows * row_bytes(t, cols)));
      for (uint8_t& byte : w) byte = static_cast<uint8_t>(rng());
      test::sanitize_scales(t, w, rng);
    } else {
      w = test::quantize(t, random_floats(kPackRows * cols, 61, 0.05f));
    }
    const PackedMatrix p = PackedMatrix::pack(t, w.data(), kPackRows, cols);
    const PackedTileFn ref = isa_table(Isa::kScalar).packed_tile[static_cast<int>(t)];
    // Token k's activation: Q8_0 / Q8_K blocks of random values, scales, corrections.
    const DType at = k ? DType::Q8_K : DType::Q8_0;
    const int64_t row_bytes_q = row_bytes(at, cols);
    std::vector<std::vector<uint8_t>> q(kPackWideTokensMax);
    std::vector<std::vector<float>> d(kPackWideTokensMax);
    std::vector<std::vector<int32_t>> corr(kPackWideTokensMax);
    std::vector<uint8_t> even(static_cast<size_t>(kPackWideTokensMax * (row_bytes_q + 64)));
    for (int i = 0; i < kPackWideTokensMax; ++i) {
      q[i] = test::quantize(at, random_floats(cols, 70 + i));
      std::memcpy(even.data() + i * (row_bytes_q + 64), q[i].data(), q[i].size());
      for (int64_t b = 0; b < nb; ++b) {
        if (k) {
          const auto* blk = reinterpret_cast<const BlockQ8_K*>(q[i].data()) + b;
          d[i].push_back(blk->d);
          for (int j = 0; j < kKCorr; ++j)
            corr[i].push_back(t == DType::Q6_K ? -32 * blk->bsums[j]
                              : j < 8          ? blk->bsums[2 * j] + blk->bsums[2 * j + 1]
                                               : 0);
          continue;
        }
        const auto* blk = reinterpret_cast<const BlockQ8_0*>(q[i].data()) + b;
        int32_t sum = 0;
        for (int e = 0; e < kQK32; ++e) sum += blk->qs[e];
        d[i].push_back(fp16_to_f32(blk->d));
        corr[i].push_back(-packed_quant_offset(t) * sum);
      }
    }
    for (Isa isa : available_isas()) {
      const PackedTileFn wide = isa_table(isa).packed_tile_wide[static_cast<int>(t)];
      if (wide == nullptr) continue;
      const int most = isa_table(isa).packed_wide_tokens[static_cast<int>(t)];
      for (bool spaced : {false, true})
        for (int nt = 2; nt <= std::max(most, kPackWideTokens); ++nt)
          for (int nr : {kPackRows, 5}) {
            PackedAct acts[kPackWideTokensMax];
            for (int i = 0; i < nt; ++i)
              acts[i] =
                  PackedAct{spaced ? static_cast<const void*>(even.data() + i * (row_bytes_q + 64))
                                   : q[i].data(),
                            d[i].data(), corr[i].data()};
            std::vector<float> want(static_cast<size_t>(nt * kPackRows), -3.0f), got = want;
            for (int i = 0; i < nt; ++i)
              ref(nb, p.data(), acts + i, 1, want.data() + i * kPackRows, kPackRows, nr);
            wide(nb, p.data(), acts, nt, got.data(), kPackRows, nr);
            ASSERT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * 4))
                << isa_name(isa) << " " << dtype_name(t) << " nt=" << nt << " nr=" << nr
                << " spaced=" << spaced;
          }
    }
  }
}

// The AMX tiles of the legacy types and of the K-quants share one thread's
// tile configuration (x86_amx.cpp keeps the token count it loaded, the
// K-quant tiles put back what they found): alternating the two at different
// token counts on one thread still gives the scalar bits every time.
TEST(PackedMatrix, AlternatingTypesAndTokenCountsMatchScalar) {
  ThreadPool one(1);
  std::vector<uint8_t> scratch;
  const Isa before = active_isa();
  const int64_t rows = 21, cols = 2 * kQKK;
  std::vector<PackedMatrix> ws;
  for (DType t : {DType::Q4_0, DType::Q4_K, DType::Q8_0, DType::Q6_K, DType::Q5_K}) {
    const auto w = test::quantize(t, random_floats(rows * cols, 81, 0.05f));
    ws.push_back(PackedMatrix::pack(t, w.data(), rows, cols));
  }
  const auto x = random_floats(16 * cols, 82);
  struct Call {
    size_t w;
    int64_t tokens;
  };
  const Call calls[] = {{0, 16}, {1, 9},  {0, 16}, {1, 16}, {2, 12}, {3, 10},
                        {2, 12}, {4, 13}, {0, 11}, {3, 16}, {4, 16}, {1, 12}};
  std::vector<std::vector<float>> want;
  ASSERT_TRUE(set_active_isa(Isa::kScalar));
  for (const Call& c : calls) {
    want.emplace_back(static_cast<size_t>(rows * c.tokens));
    matmul(ws[c.w], x.data(), c.tokens, want.back().data(), one, scratch);
  }
  for (Isa isa : available_isas()) {
    ASSERT_TRUE(set_active_isa(isa));
    for (size_t i = 0; i < std::size(calls); ++i) {
      std::vector<float> y(want[i].size(), -1.0f);
      matmul(ws[calls[i].w], x.data(), calls[i].tokens, y.data(), one, scratch);
      ASSERT_EQ(0, std::memcmp(y.data(), want[i].data(), y.size() * 4))
          << isa_name(isa) << " call " << i << " " << dtype_name(ws[calls[i].w].type());
    }
  }
  set_active_isa(before);
}

// The arranged tiles called directly over arrange_tile_acts' stream (unused
// slots and the weight scratch start as junk): the scalar tile's bits for
// 1..40 tokens (full and partial token tiles over the weights converted
// once into the scratch), odd and even block counts and a long row (97
// blocks: far past the sums ring and the prefetch distance), ragged rows.
// Skipped where no ISA has arranged tiles.
TEST(PackedMatrix, ArrangedTilesMatchScalarTile) {
  constexpr int kMaxTokens = 40;
  for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0})
    for (int64_t nb : {int64_t{3}, int64_t{4}, int64_t{97}}) {
      const int64_t cols = nb * kQK32;
      const auto w = test::quantize(t, random_floats(kPackRows * cols, 81, 0.05f));
      const PackedMatrix p = PackedMatrix::pack(t, w.data(), kPackRows, cols);
      const PackedTileFn ref = isa_table(Isa::kScalar).packed_tile[static_cast<int>(t)];
      std::vector<std::vector<uint8_t>> q(kMaxTokens);
      std::vector<std::vector<float>> d(kMaxTokens);
      std::vector<std::vector<int32_t>> corr(kMaxTokens);
      PackedAct acts[kMaxTokens];
      for (int k = 0; k < kMaxTokens; ++k) {
        q[k] = test::quantize(DType::Q8_0, random_floats(cols, 90 + k));
        for (int64_t b = 0; b < nb; ++b) {
          const auto* blk = reinterpret_cast<const BlockQ8_0*>(q[k].data()) + b;
          int32_t sum = 0;
          for (int e = 0; e < kQK32; ++e) sum += blk->qs[e];
          d[k].push_back(fp16_to_f32(blk->d));
          corr[k].push_back(-packed_quant_offset(t) * sum);
        }
        acts[k] = PackedAct{q[k].data(), d[k].data(), corr[k].data()};
      }
      for (Isa isa : available_isas()) {
        const PackedTileArrangedFn arranged =
            isa_table(isa).packed_tile_arranged[static_cast<int>(t)];
        if (arranged == nullptr) continue;
        for (int n = 1; n <= kMaxTokens; ++n)
          for (int nr : {kPackRows, 5}) {
            const int64_t tiles = (n + kPackWideTokens - 1) / kPackWideTokens;
            std::vector<uint8_t> stream(static_cast<size_t>(tiles * nb * kArrangedBlockBytes),
                                        0xA5);
            for (int64_t i = 0; i < tiles; ++i)
              arrange_tile_acts(
                  acts + i * kPackWideTokens,
                  static_cast<int>(std::min<int64_t>(kPackWideTokens, n - i * kPackWideTokens)), nb,
                  stream.data() + i * nb * kArrangedBlockBytes);
            std::vector<float> want(static_cast<size_t>(n * kPackRows), -3.0f), got = want;
            for (int k = 0; k < n; ++k)
              ref(nb, p.data(), acts + k, 1, want.data() + k * kPackRows, kPackRows, nr);
            std::vector<uint8_t> ws(static_cast<size_t>(nb * kArrangedWeightBytes + 64), 0x5A);
            uint8_t* ws64 = ws.data() + (64 - reinterpret_cast<uintptr_t>(ws.data()) % 64) % 64;
            arranged(nb, p.data(), stream.data(), n, got.data(), kPackRows, nr, ws64);
            ASSERT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * 4))
                << isa_name(isa) << " " << dtype_name(t) << " nb=" << nb << " n=" << n
                << " nr=" << nr;
          }
      }
    }
}

// Q, K, V or gate, up in one call: every matrix gets the bits of its own
// call, on every ISA, at 1 and 2 threads, mixing types (Q5_0 and Q8_0 share
// Q8_0 activation rows with different corrections, Q4_K takes Q8_K rows,
// F16 the floats in place); a matrix of another width falls back to its own
// call.
TEST(PackedMatrix, FusedCallMatchesSeparateCalls) {
  ThreadPool one(1), two(2);
  std::vector<uint8_t> scratch;
  const Isa before = active_isa();
  const int64_t cols = 512;
  struct Case {
    DType type;
    int64_t rows, cols;
  };
  const Case cases[] = {{DType::Q5_0, 40, cols},
                        {DType::Q8_0, 16, cols},
                        {DType::Q4_K, 7, cols},
                        {DType::F16, 33, cols},
                        {DType::Q5_0, 20, 256}};
  std::vector<PackedMatrix> ws;
  for (size_t i = 0; i < std::size(cases); ++i) {
    const auto w =
        test::quantize(cases[i].type, random_floats(cases[i].rows * cases[i].cols, 30 + i, 0.05f));
    ws.push_back(PackedMatrix::pack(cases[i].type, w.data(), cases[i].rows, cases[i].cols));
  }
  for (int64_t tokens : {1, 3, 11}) {
    const auto x = random_floats(tokens * cols, 40);
    for (Isa isa : available_isas()) {
      ASSERT_TRUE(set_active_isa(isa));
      for (ThreadPool* pool : {&one, &two}) {
        for (size_t n_fused : {size_t{2}, size_t{4}, size_t{5}}) {
          std::vector<std::vector<float>> fused(n_fused), alone(n_fused);
          std::vector<PackedOut> outs;
          for (size_t i = 0; i < n_fused; ++i) {
            fused[i].assign(cases[i].rows * tokens, -1.0f);
            alone[i].assign(cases[i].rows * tokens, -2.0f);
            outs.push_back({&ws[i], fused[i].data()});
          }
          matmul(outs, x.data(), tokens, *pool, scratch);
          for (size_t i = 0; i < n_fused; ++i) {
            if (cases[i].cols != cols) continue;  // x is too short for it alone
            matmul(ws[i], x.data(), tokens, alone[i].data(), *pool, scratch);
            ASSERT_EQ(0, std::memcmp(fused[i].data(), alone[i].data(), alone[i].size() * 4))
                << isa_name(isa) << " matrix " << i << " of " << n_fused << " tokens=" << tokens;
          }
        }
      }
    }
  }
  set_active_isa(before);
}

// Training reads packed weights back (their source pages released): every
// stripe equals the scalar dequantization of the source row, bit for bit,
// on every ISA (AVX-512 has its own Q8_0 / Q4_0 row loops).
TEST_P(Packed, DequantizeStripeMatchesTheSourceRow) {
  const DType t = GetParam();
  const Isa before = active_isa();
  for (const Isa isa : available_isas()) {
    ASSERT_TRUE(set_active_isa(isa));
    const int64_t bs = std::max<int64_t>(32, test::block_size(t));
    const int64_t rows = 37, cols = 5 * bs;
    const auto w = test::quantize(t, random_floats(rows * cols, 31, 0.05f));
    const PackedMatrix p = PackedMatrix::pack(t, w.data(), rows, cols);
    ASSERT_FALSE(p.empty());
    const size_t row_b = static_cast<size_t>(row_bytes(t, cols));
    std::vector<float> ref(static_cast<size_t>(cols)), got(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      traits(Isa::kScalar, t)
          .dequantize_row(w.data() + static_cast<size_t>(r) * row_b, ref.data(), cols);
      for (const auto& [c0, nc] :
           {std::pair<int64_t, int64_t>{0, cols}, {bs, 2 * bs}, {4 * bs, bs}}) {
        std::fill(got.begin(), got.end(), -7.0f);
        p.dequantize_stripe(r, c0, nc, got.data());
        ASSERT_EQ(0, std::memcmp(got.data(), ref.data() + c0, static_cast<size_t>(nc) * 4))
            << dtype_name(t) << " " << isa_name(isa) << " row " << r << " c0 " << c0;
      }
    }
  }
  set_active_isa(before);
}

// A matrix of more than one huge page takes the 2 MiB-aligned storage that
// asks for transparent huge pages, and one-token decoding there runs the
// tiles that prefetch ahead (past the last group, too): every ISA still
// gives the scalar tile's bits, and the last row reads back as the source.
TEST(PackedMatrix, HugePageMatrixDecodesLikeTheScalarTile) {
  const int64_t rows = 2001, cols = 1024;  // Q8_0: 126 groups x 32 blocks x 544 bytes > 2 MiB
  const auto w = test::quantize(DType::Q8_0, random_floats(rows * cols, 41, 0.05f));
  const PackedMatrix p = PackedMatrix::pack(DType::Q8_0, w.data(), rows, cols);
  ASSERT_GT(p.size_bytes(), size_t{2} << 20);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p.data()) % (size_t{2} << 20), 0u);
  const auto x = random_floats(cols, 42);
  ThreadPool one(1), two(2);
  std::vector<uint8_t> scratch;
  const Isa before = active_isa();
  ASSERT_TRUE(set_active_isa(Isa::kScalar));
  std::vector<float> ref(rows), plain(rows);
  matmul(p, x.data(), 1, ref.data(), one, scratch);
  matmul(DType::Q8_0, w.data(), rows, cols, x.data(), 1, plain.data(), one, scratch);
  for (int64_t r = 0; r < rows; ++r)
    ASSERT_NEAR(ref[r], plain[r], 1e-5 * (std::fabs(plain[r]) + 1)) << r;
  for (Isa isa : available_isas()) {
    ASSERT_TRUE(set_active_isa(isa));
    for (ThreadPool* pool : {&one, &two}) {
      std::vector<float> y(rows, -1.0f);
      matmul(p, x.data(), 1, y.data(), *pool, scratch);
      ASSERT_EQ(0, std::memcmp(y.data(), ref.data(), rows * 4))
          << isa_name(isa) << " threads=" << pool->size();
    }
  }
  set_active_isa(before);
  std::vector<float> last(cols), src(cols);
  p.dequantize_stripe(rows - 1, 0, cols, last.data());
  traits(Isa::kScalar, DType::Q8_0)
      .dequantize_row(w.data() + (rows - 1) * row_bytes(DType::Q8_0, cols), src.data(), cols);
  EXPECT_EQ(last, src);
}

TEST(PackedMatrix, LayoutsAndSizes) {
  EXPECT_FALSE(PackedMatrix::has_layout(DType::F32));
  EXPECT_TRUE(PackedMatrix::pack(DType::F32, nullptr, 4, 32).empty());
  const auto w = test::quantize(DType::Q4_0, random_floats(20 * 64, 3));
  const PackedMatrix p = PackedMatrix::pack(DType::Q4_0, w.data(), 20, 64);
  EXPECT_EQ(p.rows(), 20);
  EXPECT_EQ(p.cols(), 64);
  EXPECT_EQ(p.size_bytes(), 2u * 2u * 16u * 18u);  // 2 groups of 16 rows x 2 blocks
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p.data()) % 64, 0u);
}

}  // namespace
}  // namespace slm::kernels
