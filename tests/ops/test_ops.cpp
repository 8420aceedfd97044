// Float ops: every ISA's attention, SwiGLU, softmax, RMSNorm, add and RoPE
// against the scalar versions (the per-ISA loops use a polynomial exp and
// other summation orders, so the bound is relative, a few float ulps), plus
// edge inputs. "Every ISA" is kernels::available_isas(), the choice the ops
// tables follow: on aarch64 that includes NEON.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

namespace slm::ops {
namespace {

std::vector<float> random_floats(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// rows x kv_dim floats stored as cache rows of type (kv_store).
std::vector<uint8_t> cache_rows(DType type, const std::vector<float>& f, int64_t rows,
                                int64_t kv_dim) {
  const size_t row = kv_row_bytes(type, kv_dim);
  std::vector<uint8_t> out(row * static_cast<size_t>(rows));
  for (int64_t p = 0; p < rows; ++p)
    kv_store(type, &f[static_cast<size_t>(p * kv_dim)], kv_dim, &out[static_cast<size_t>(p) * row]);
  return out;
}

class IsaScope {
 public:
  IsaScope() : before_(kernels::active_isa()) {}
  ~IsaScope() { kernels::set_active_isa(before_); }

 private:
  kernels::Isa before_;
};

TEST(Ops, AttentionMatchesScalarOnEveryIsa) {
  IsaScope scope;
  ThreadPool pool(2);
  struct Case {
    int64_t n_tokens, pos0, n_head, n_head_kv, head_dim;
  };
  for (Case c : {Case{1, 0, 2, 1, 64}, Case{3, 5, 4, 2, 64}, Case{7, 30, 14, 2, 64},
                 Case{2, 9, 4, 4, 128}, Case{4, 3, 2, 1, 80}, Case{5, 17, 2, 2, 48},
                 Case{1, 200, 8, 2, 64}, Case{3, 6, 2, 1, 256}, Case{2, 3, 2, 1, 36}}) {
    const AttentionShape s{c.n_tokens, c.pos0, c.n_head, c.n_head_kv, c.head_dim};
    const int64_t span = c.pos0 + c.n_tokens;
    const auto q = random_floats(static_cast<size_t>(c.n_tokens * c.n_head * c.head_dim), 1, 1.0f);
    const auto k = random_floats(static_cast<size_t>(span * c.n_head_kv * c.head_dim), 2, 1.0f);
    const auto v = random_floats(static_cast<size_t>(span * c.n_head_kv * c.head_dim), 3, 1.0f);
    std::vector<float> scratch(static_cast<size_t>(pool.size() * span));
    std::vector<float> ref(q.size()), out(q.size());
    ASSERT_TRUE(kernels::set_active_isa(kernels::Isa::kScalar));
    attention(s, q.data(), k.data(), v.data(), ref.data(), scratch.data(), pool);
    for (kernels::Isa isa : kernels::available_isas()) {
      ASSERT_TRUE(kernels::set_active_isa(isa));
      attention(s, q.data(), k.data(), v.data(), out.data(), scratch.data(), pool);
      for (size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], ref[i], 2e-5f * (1 + std::fabs(ref[i])))
            << kernels::isa_name(isa) << " head_dim=" << c.head_dim << " i=" << i;
    }
  }
}

// The cache types: each ISA against the scalar reading of the same stored
// bytes, and the stored cache against float32 within the type's rounding.
TEST(Ops, AttentionOverF16AndQ8CachesMatchesScalarOnEveryIsa) {
  IsaScope scope;
  ThreadPool pool(2);
  struct Case {
    int64_t n_tokens, pos0, n_head, n_head_kv, head_dim;
  };
  for (DType type : {DType::F16, DType::Q8_0}) {
    for (Case c :
         {Case{1, 0, 2, 1, 64}, Case{3, 5, 4, 2, 64}, Case{2, 9, 4, 4, 128}, Case{1, 200, 8, 2, 64},
          Case{3, 6, 2, 1, 256}, Case{2, 40, 2, 1, 32}, Case{4, 3, 2, 1, 80}}) {
      if (type == DType::Q8_0 && c.head_dim % 32 != 0) continue;
      AttentionShape s{c.n_tokens, c.pos0, c.n_head, c.n_head_kv, c.head_dim};
      const int64_t span = c.pos0 + c.n_tokens, kv_dim = c.n_head_kv * c.head_dim;
      const auto q =
          random_floats(static_cast<size_t>(c.n_tokens * c.n_head * c.head_dim), 1, 1.0f);
      const auto k = random_floats(static_cast<size_t>(span * kv_dim), 2, 1.0f);
      const auto v = random_floats(static_cast<size_t>(span * kv_dim), 3, 1.0f);
      const size_t row = kv_row_bytes(type, kv_dim);
      std::vector<uint8_t> kc(row * static_cast<size_t>(span)), vc(kc.size());
      for (int64_t p = 0; p < span; ++p) {
        kv_store(type, &k[static_cast<size_t>(p * kv_dim)], kv_dim,
                 &kc[static_cast<size_t>(p) * row]);
        kv_store(type, &v[static_cast<size_t>(p * kv_dim)], kv_dim,
                 &vc[static_cast<size_t>(p) * row]);
      }
      std::vector<float> scratch(static_cast<size_t>(pool.size() * span));
      std::vector<float> exact(q.size()), ref(q.size()), out(q.size());
      ASSERT_TRUE(kernels::set_active_isa(kernels::Isa::kScalar));
      attention(s, q.data(), k.data(), v.data(), exact.data(), scratch.data(), pool);
      s.kv_type = type;
      attention(s, q.data(), kc.data(), vc.data(), ref.data(), scratch.data(), pool);
      // F16 rounds at 2^-11 relative, Q8_0 at 1/254 of a block's largest value.
      const float tol = type == DType::F16 ? 5e-3f : 5e-2f;
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(ref[i], exact[i], tol * (1 + std::fabs(exact[i])))
            << dtype_name(type) << " i=" << i;
      for (kernels::Isa isa : kernels::available_isas()) {
        ASSERT_TRUE(kernels::set_active_isa(isa));
        attention(s, q.data(), kc.data(), vc.data(), out.data(), scratch.data(), pool);
        for (size_t i = 0; i < out.size(); ++i)
          ASSERT_NEAR(out[i], ref[i], 2e-5f * (1 + std::fabs(ref[i])))
              << kernels::isa_name(isa) << " " << dtype_name(type) << " head_dim=" << c.head_dim
              << " i=" << i;
      }
    }
  }
  EXPECT_EQ(kv_row_bytes(DType::F32, 64), 256u);
  EXPECT_EQ(kv_row_bytes(DType::F16, 64), 128u);
  EXPECT_EQ(kv_row_bytes(DType::Q8_0, 64), 68u);
  EXPECT_FALSE(kv_type_supported(DType::Q4_0));
}

// A batched step's attention: sequences of different lengths, chunk sizes,
// windows, rings and cache types in one attention_many job give exactly what
// each gives alone through attention() (the per-sequence reference), on every ISA.
TEST(Ops, AttentionManyEqualsEachSequenceAlone) {
  IsaScope scope;
  ThreadPool pool(3);
  struct Case {
    int64_t n_tokens, pos0, window, ring;
    DType type;
  };
  const int64_t n_head = 14, n_head_kv = 2, head_dim = 64, kv_dim = n_head_kv * head_dim;
  const Case cases[] = {{1, 0, 0, 0, DType::F32},   {1, 37, 0, 0, DType::F16},
                        {5, 12, 0, 0, DType::Q8_0}, {1, 130, 0, 0, DType::F32},
                        {17, 0, 0, 0, DType::F16},  {1, 60, 16, 32, DType::F32},
                        {3, 9, 8, 0, DType::F32},   {2, 200, 0, 0, DType::Q8_0}};
  int64_t stride = 0;
  for (const Case& c : cases) stride = std::max(stride, c.pos0 + c.n_tokens);
  struct Seq {
    std::vector<float> q;
    std::vector<uint8_t> k, v;
  };
  std::vector<Seq> seqs;
  std::vector<AttentionCall> calls;
  uint32_t seed = 10;
  for (const Case& c : cases) {
    Seq s;
    // A ring holds 2 * ring rows (the second half repeats the first); others the whole span.
    const int64_t rows = c.ring > 0 ? 2 * c.ring : c.pos0 + c.n_tokens;
    const auto kf = random_floats(static_cast<size_t>(rows * kv_dim), seed++, 1.0f);
    const auto vf = random_floats(static_cast<size_t>(rows * kv_dim), seed++, 1.0f);
    const size_t row = kv_row_bytes(c.type, kv_dim);
    s.k.resize(row * static_cast<size_t>(rows));
    s.v.resize(s.k.size());
    for (int64_t p = 0; p < rows; ++p) {
      kv_store(c.type, &kf[static_cast<size_t>(p * kv_dim)], kv_dim,
               &s.k[static_cast<size_t>(p) * row]);
      kv_store(c.type, &vf[static_cast<size_t>(p * kv_dim)], kv_dim,
               &s.v[static_cast<size_t>(p) * row]);
    }
    s.q = random_floats(static_cast<size_t>(c.n_tokens * n_head * head_dim), seed++, 1.0f);
    seqs.push_back(std::move(s));
  }
  std::vector<std::vector<float>> alone(seqs.size()), together(seqs.size());
  std::vector<float> scratch(static_cast<size_t>(pool.size() * stride));
  std::vector<float> group_scratch(static_cast<size_t>(7 * pool.size() * stride));
  std::vector<int64_t> starts;
  for (kernels::Isa isa : kernels::available_isas()) {
    ASSERT_TRUE(kernels::set_active_isa(isa));
    calls.clear();
    for (size_t i = 0; i < seqs.size(); ++i) {
      const Case& c = cases[i];
      AttentionShape sh{c.n_tokens, c.pos0, n_head, n_head_kv, head_dim};
      sh.window = c.window;
      sh.ring = c.ring;
      sh.kv_type = c.type;
      alone[i].assign(seqs[i].q.size(), 0.0f);
      together[i].assign(seqs[i].q.size(), -1.0f);
      attention(sh, seqs[i].q.data(), seqs[i].k.data(), seqs[i].v.data(), alone[i].data(),
                scratch.data(), pool);
      calls.push_back(
          {sh, seqs[i].q.data(), seqs[i].k.data(), seqs[i].v.data(), together[i].data()});
    }
    // A stride of one score row per thread: a task per (token, head).
    attention_many(calls, starts, scratch.data(), stride, pool);
    ASSERT_EQ(starts.size(), calls.size() + 1);
    int64_t grouped_tasks = 0;  // calls whose 7 heads' rows fit: a task per (token, KV head)
    for (const Case& c : cases)
      grouped_tasks += (7 * (c.pos0 + c.n_tokens) <= stride ? n_head_kv : n_head) * c.n_tokens;
    EXPECT_EQ(starts.back(), grouped_tasks);
    for (size_t i = 0; i < seqs.size(); ++i) {
      ASSERT_EQ(together[i], alone[i]) << kernels::isa_name(isa) << " sequence " << i;
      for (const float f : alone[i]) ASSERT_TRUE(std::isfinite(f));
    }
    // Rows for the whole group: every call a task per (token, KV head).
    for (auto& t : together) std::fill(t.begin(), t.end(), -1.0f);
    attention_many(calls, starts, group_scratch.data(), 7 * stride, pool);
    EXPECT_EQ(starts.back(), (1 + 1 + 5 + 1 + 17 + 1 + 3 + 2) * n_head_kv);
    for (size_t i = 0; i < seqs.size(); ++i)
      ASSERT_EQ(together[i], alone[i]) << kernels::isa_name(isa) << " grouped, sequence " << i;
  }
  attention_many({}, starts, scratch.data(), stride, pool);  // no sequences: nothing to do
  EXPECT_EQ(starts, std::vector<int64_t>{0});
}

// Prefill blocks (attention_many with prefill scratch): every cache type,
// odd and even query groups, heads the vector loops take whole, in pairs or
// leave to the scalar reference, chunks at a prefix and chunks that are not
// whole blocks give exactly the per-(token, head) tasks' bits, on every ISA.
TEST(Ops, PrefillBlocksEqualPerTokenTasksBitForBit) {
  IsaScope scope;
  ThreadPool pool(2);
  struct Case {
    int64_t n_tokens, pos0, n_head, n_head_kv, head_dim, window;
    DType type;
  };
  const Case cases[] = {
      {37, 0, 14, 2, 64, 0, DType::F16},
      {16, 21, 8, 4, 64, 0, DType::F32},
      {9, 3, 7, 1, 128, 0, DType::Q8_0},
      {40, 5, 4, 2, 80, 0, DType::F16},
      {12, 0, 2, 1, 256, 0, DType::F16},
      {8, 100, 6, 6, 32, 0, DType::Q8_0},
      {33, 7, 4, 1, 64, 64, DType::F32},
      {50, 0, 3, 1, 48, 0, DType::F16},
      // Groups of more than 8 heads (two passes of heads), and score rows
      // that hold only part of a block's tokens at once (passes of tokens).
      {20, 61, 10, 1, 64, 0, DType::F16},
      {24, 1000, 16, 2, 64, 0, DType::F32},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(dtype_name(c.type)) + " n_tokens=" + std::to_string(c.n_tokens) +
                 " head_dim=" + std::to_string(c.head_dim));
    const int64_t span = c.pos0 + c.n_tokens, kv_dim = c.n_head_kv * c.head_dim;
    AttentionShape sh{c.n_tokens, c.pos0, c.n_head, c.n_head_kv, c.head_dim};
    sh.window = c.window;
    sh.kv_type = c.type;
    const auto q = random_floats(static_cast<size_t>(c.n_tokens * c.n_head * c.head_dim), 4, 1.0f);
    const auto k = cache_rows(c.type, random_floats(static_cast<size_t>(span * kv_dim), 5, 1.0f),
                              span, kv_dim);
    const auto v = cache_rows(c.type, random_floats(static_cast<size_t>(span * kv_dim), 6, 1.0f),
                              span, kv_dim);
    const int64_t prefill_stride = attention_prefill_floats(span, c.head_dim);
    std::vector<float> scratch(static_cast<size_t>(pool.size() * span));
    std::vector<float> prefill(static_cast<size_t>(pool.size() * prefill_stride));
    std::vector<int64_t> starts;
    for (kernels::Isa isa : kernels::available_isas()) {
      ASSERT_TRUE(kernels::set_active_isa(isa));
      std::vector<float> per_token(q.size(), -1.0f), blocked(q.size(), -2.0f);
      const AttentionCall call{sh, q.data(), k.data(), v.data(), per_token.data()};
      attention_many(std::span(&call, 1), starts, scratch.data(), span, pool);
      ASSERT_EQ(starts.back(), c.n_tokens * c.n_head);
      const AttentionCall call_b{sh, q.data(), k.data(), v.data(), blocked.data()};
      attention_many(std::span(&call_b, 1), starts, scratch.data(), span, pool, prefill.data(),
                     prefill_stride);
      // The prefill tasks ran: one per KV head and block of 16 tokens.
      EXPECT_EQ(starts.back(), c.n_head_kv * ((c.n_tokens + 15) / 16)) << kernels::isa_name(isa);
      ASSERT_EQ(blocked, per_token) << kernels::isa_name(isa);
      for (const float f : blocked) ASSERT_TRUE(std::isfinite(f));
      // Too little scratch: the per-token tasks, the same bits.
      std::fill(blocked.begin(), blocked.end(), -3.0f);
      attention_many(std::span(&call_b, 1), starts, scratch.data(), span, pool, prefill.data(),
                     prefill_stride - 1);
      EXPECT_EQ(starts.back(), c.n_tokens * c.n_head);
      ASSERT_EQ(blocked, per_token) << kernels::isa_name(isa);
    }
  }
  // Short chunks, rings and windows that cut the prefix stay per token.
  {
    const int64_t hd = 64, span = 40;
    const auto q = random_floats(static_cast<size_t>(20 * 2 * hd), 7, 1.0f);
    const auto kv = random_floats(static_cast<size_t>(span * hd), 8, 1.0f);
    std::vector<float> out(q.size()), scratch(static_cast<size_t>(pool.size() * span));
    const int64_t prefill_stride = attention_prefill_floats(span, hd);
    std::vector<float> prefill(static_cast<size_t>(pool.size() * prefill_stride));
    std::vector<int64_t> starts;
    for (const AttentionShape& sh :
         {AttentionShape{20, 20, 2, 1, hd, 8}, AttentionShape{20, 0, 2, 1, hd, 8, 0.0f, 0.0f, 20},
          AttentionShape{7, 33, 2, 1, hd}}) {
      const AttentionCall call{sh, q.data(), reinterpret_cast<const uint8_t*>(kv.data()),
                               reinterpret_cast<const uint8_t*>(kv.data()), out.data()};
      attention_many(std::span(&call, 1), starts, scratch.data(), span, pool, prefill.data(),
                     prefill_stride);
      // Per token: a task per head, or per KV head where both heads' score
      // rows fit the stride (the ring's call: 2 x 20 positions).
      const bool grouped = 2 * (sh.pos0 + sh.n_tokens) <= span;
      EXPECT_EQ(starts.back(), sh.n_tokens * (grouped ? sh.n_head_kv : sh.n_head));
    }
  }
  // Score rows (at least 64 Ki floats), 128 rows' value sums and 1 / sums, keys and
  // values, keys transposed in blocks of 16.
  EXPECT_EQ(attention_prefill_floats(100, 64), 65536 + 128 * 65 + 2 * 100 * 64 + 112 * 64);
  EXPECT_EQ(attention_prefill_floats(1 << 20, 64), attention_prefill_floats(kPrefillMaxSpan, 64));
}

// Decode tasks over a whole KV group (attention_many with score rows for the
// group): group sizes the vector loops take in one pass, several passes and
// more than kAttendGroupMax heads, head sizes they take whole or leave to the
// per-head loop, every cache type, a window, a ring and a softcap give
// exactly attention()'s per-head bits, on every ISA.
TEST(Ops, GroupTasksEqualPerHeadTasksBitForBit) {
  IsaScope scope;
  ThreadPool pool(2);
  struct Case {
    int64_t n_tokens, pos0, n_head, n_head_kv, head_dim, window, ring;
    float softcap;
    DType type;
  };
  const Case cases[] = {
      {1, 0, 2, 1, 64, 0, 0, 0.0f, DType::F32},     {1, 37, 14, 2, 64, 0, 0, 0.0f, DType::F16},
      {2, 130, 14, 2, 64, 0, 0, 0.0f, DType::Q8_0}, {1, 61, 32, 4, 64, 0, 0, 0.0f, DType::F16},
      {1, 9, 40, 2, 32, 0, 0, 0.0f, DType::F32},    {3, 20, 12, 2, 128, 0, 0, 0.0f, DType::F16},
      {1, 50, 4, 1, 256, 0, 0, 0.0f, DType::Q8_0},  {1, 44, 6, 2, 48, 0, 0, 0.0f, DType::F32},
      {1, 70, 8, 2, 80, 0, 0, 0.0f, DType::F16},    {1, 60, 8, 2, 64, 16, 32, 0.0f, DType::F16},
      {2, 29, 8, 4, 64, 8, 0, 30.0f, DType::F32},   {1, 3, 16, 1, 64, 0, 0, 0.0f, DType::Q8_0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(dtype_name(c.type)) + " heads=" + std::to_string(c.n_head) + "/" +
                 std::to_string(c.n_head_kv) + " head_dim=" + std::to_string(c.head_dim));
    const int64_t span = c.pos0 + c.n_tokens, kv_dim = c.n_head_kv * c.head_dim;
    const int64_t rows = c.ring > 0 ? 2 * c.ring : span;
    AttentionShape sh{c.n_tokens, c.pos0, c.n_head, c.n_head_kv, c.head_dim, c.window};
    sh.softcap = c.softcap;
    sh.ring = c.ring;
    sh.kv_type = c.type;
    const auto q = random_floats(static_cast<size_t>(c.n_tokens * c.n_head * c.head_dim), 11, 1.0f);
    const auto k = cache_rows(c.type, random_floats(static_cast<size_t>(rows * kv_dim), 12, 1.0f),
                              rows, kv_dim);
    const auto v = cache_rows(c.type, random_floats(static_cast<size_t>(rows * kv_dim), 13, 1.0f),
                              rows, kv_dim);
    const int64_t stride = attention_group_rows(c.n_head, c.n_head_kv) * span;
    std::vector<float> scratch(static_cast<size_t>(pool.size() * stride));
    std::vector<int64_t> starts;
    for (kernels::Isa isa : kernels::available_isas()) {
      ASSERT_TRUE(kernels::set_active_isa(isa));
      std::vector<float> per_head(q.size(), -1.0f), grouped(q.size(), -2.0f);
      attention(sh, q.data(), k.data(), v.data(), per_head.data(), scratch.data(), pool);
      const AttentionCall call{sh, q.data(), k.data(), v.data(), grouped.data()};
      attention_many(std::span(&call, 1), starts, scratch.data(), stride, pool);
      EXPECT_EQ(starts.back(), c.n_tokens * c.n_head_kv) << kernels::isa_name(isa);
      ASSERT_EQ(grouped, per_head) << kernels::isa_name(isa);
      for (const float f : grouped) ASSERT_TRUE(std::isfinite(f));
    }
  }
  EXPECT_EQ(attention_group_rows(14, 2), 7);
  EXPECT_EQ(attention_group_rows(40, 2), kAttendGroupMax);
  EXPECT_EQ(attention_group_rows(8, 8), 1);
}

// An F16 cache row written by every ISA has the scalar f32_to_fp16's bits:
// random values, halfway cases, subnormal halves, overflow, infinities, NaN.
TEST(Ops, KvStoreF16EqualsScalarBitForBitOnEveryIsa) {
  IsaScope scope;
  auto x = random_floats(1003, 9, 3.0f);
  for (float f : {0.0f, -0.0f, 65504.0f, 65520.0f, 65519.99f, -70000.0f, 1e-8f, -2.98e-8f,
                  2.9802322e-8f, 5.96e-8f, 6.1e-5f, 6.1035156e-05f, 1.00048828125f, 1.00146484375f,
                  1e-40f, INFINITY, -INFINITY, NAN, -NAN})
    x.push_back(f);
  for (int i = 0; i < 37; ++i) x.push_back(std::ldexp(1.0f + 0.5f / 1024, -i));  // ties
  for (uint32_t bits : {0x7fc12345u, 0xffa00001u, 0x7f800001u})  // NaNs with payloads
    x.push_back(std::bit_cast<float>(bits));
  const auto n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> ref(static_cast<size_t>(2 * n)), out(ref.size() + 1);
  ASSERT_TRUE(kernels::set_active_isa(kernels::Isa::kScalar));
  kv_store(DType::F16, x.data(), n, ref.data());
  for (kernels::Isa isa : kernels::available_isas()) {
    ASSERT_TRUE(kernels::set_active_isa(isa));
    std::fill(out.begin(), out.end(), uint8_t{0xAB});
    kv_store(DType::F16, x.data(), n, out.data() + 1);  // an odd address: no alignment assumed
    EXPECT_TRUE(std::equal(ref.begin(), ref.end(), out.begin() + 1)) << kernels::isa_name(isa);
    EXPECT_EQ(out[0], 0xAB);
  }
}

TEST(Ops, SwigluMatchesScalarOnEveryIsa) {
  IsaScope scope;
  auto gate = random_floats(1000, 4, 3.0f);
  // Saturating inputs: exp(-g) overflows / underflows.
  for (float g : {-200.0f, -90.0f, -88.5f, -30.0f, 0.0f, 30.0f, 88.5f, 90.0f, 200.0f})
    gate.push_back(g);
  const auto up = random_floats(gate.size(), 5, 1.0f);
  std::vector<float> ref = gate;
  ASSERT_TRUE(kernels::set_active_isa(kernels::Isa::kScalar));
  swiglu(ref.data(), up.data(), static_cast<int64_t>(ref.size()));
  for (kernels::Isa isa : kernels::available_isas()) {
    ASSERT_TRUE(kernels::set_active_isa(isa));
    std::vector<float> out = gate;
    swiglu(out.data(), up.data(), static_cast<int64_t>(out.size()));
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_TRUE(std::isfinite(out[i])) << kernels::isa_name(isa) << " g=" << gate[i];
      ASSERT_NEAR(out[i], ref[i], 1e-5f * (1 + std::fabs(ref[i])))
          << kernels::isa_name(isa) << " g=" << gate[i];
    }
  }
}

// TEAL's pruning on every ISA against plain expectations: entries with
// |x| < thr become +0 (bits 0), the rest (NaNs, infinities, |x| == thr)
// keep their bits; the count is the zeroed ones; the list is the indices of
// what is left non-zero, ascending. Lengths cross the vector widths (8, 16)
// and their tails.
TEST(Ops, PruningMatchesItsDefinitionOnEveryIsa) {
  IsaScope scope;
  const float thr = 0.5f;
  for (const size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{15}, size_t{16},
                         size_t{17}, size_t{33}, size_t{896}, size_t{4867}}) {
    auto x = random_floats(n, static_cast<uint32_t>(n) + 11, 1.0f);
    const float special[] = {
        0.0f,     -0.0f,     thr,    -thr,    std::nextafter(thr, 0.0f), NAN, -NAN,
        INFINITY, -INFINITY, 1e-40f, -1e-40f, std::nextafter(-thr, 0.0f)};
    for (size_t i = 0; i < n; i += 5) x[i] = special[(i / 5) % std::size(special)];
    std::vector<float> want = x;
    int64_t want_z = 0;
    std::vector<int32_t> want_kept;
    for (size_t i = 0; i < n; ++i) {
      if (std::fabs(x[i]) < thr) {
        want[i] = 0.0f;
        ++want_z;
      }
      if (want[i] != 0.0f || std::isnan(want[i])) want_kept.push_back(static_cast<int32_t>(i));
    }
    for (kernels::Isa isa : kernels::available_isas()) {
      ASSERT_TRUE(kernels::set_active_isa(isa));
      std::vector<float> y = x;
      EXPECT_EQ(zero_below(y.data(), static_cast<int64_t>(n), thr), want_z)
          << kernels::isa_name(isa) << " n=" << n;
      for (size_t i = 0; i < n; ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(want[i]))
            << kernels::isa_name(isa) << " n=" << n << " i=" << i << " x=" << x[i];
      // One spare entry past n: the list may write only within kept [n].
      std::vector<int32_t> kept(n + 1, -7);
      const int64_t m = list_nonzero(y.data(), static_cast<int64_t>(n), kept.data());
      ASSERT_EQ(m, static_cast<int64_t>(want_kept.size())) << kernels::isa_name(isa) << " n=" << n;
      EXPECT_TRUE(std::equal(want_kept.begin(), want_kept.end(), kept.begin()))
          << kernels::isa_name(isa) << " n=" << n;
      EXPECT_EQ(kept[n], -7) << kernels::isa_name(isa) << " n=" << n;
    }
  }
}

#if defined(__aarch64__)
TEST(Ops, NeonIsAvailableOnAarch64) {
  const auto isas = kernels::available_isas();
  EXPECT_NE(std::find(isas.begin(), isas.end(), kernels::Isa::kNeon), isas.end());
}
#endif

// Lengths around the vector widths (4, 8, 16) and their multiples, so every
// ISA's main loop and scalar tail both run.
constexpr int64_t kLengths[] = {1, 3, 4, 5, 8, 15, 16, 17, 31, 64, 100, 257, 1000};

TEST(Ops, SoftmaxMatchesScalarOnEveryIsa) {
  IsaScope scope;
  for (int64_t n : kLengths) {
    auto x = random_floats(static_cast<size_t>(n), 6, 4.0f);
    if (n > 4) x[2] = -200.0f;  // underflows to 0 after the max is subtracted
    std::vector<float> ref = x;
    ASSERT_TRUE(kernels::set_active_isa(kernels::Isa::kScalar));
    softmax(ref.data(), n);
    for (kernels::Isa isa : kernels::available_isas()) {
      ASSERT_TRUE(kernels::set_active_isa(isa));
      std::vector<float> out = x;
      softmax(out.data(), n);
      for (size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], ref[i], 1e-5f * (1 + std::fabs(ref[i])))
            << kernels::isa_name(isa) << " n=" << n << " i=" << i;
    }
  }
}

TEST(Ops, RmsNormAndAddMatchScalarOnEveryIsa) {
  IsaScope scope;
  for (int64_t n : kLengths) {
    const auto x = random_floats(static_cast<size_t>(n), 7, 2.0f);
    const auto w = random_floats(static_cast<size_t>(n), 8, 1.0f);
    std::vector<float> ref(x.size()), ref_sum = x;
    ASSERT_TRUE(kernels::set_active_isa(kernels::Isa::kScalar));
    rms_norm(x.data(), w.data(), n, 1e-5f, ref.data());
    add(ref_sum.data(), w.data(), n);
    for (kernels::Isa isa : kernels::available_isas()) {
      ASSERT_TRUE(kernels::set_active_isa(isa));
      std::vector<float> out(x.size()), in_place = x, sum = x;
      rms_norm(x.data(), w.data(), n, 1e-5f, out.data());
      rms_norm(in_place.data(), w.data(), n, 1e-5f, in_place.data());  // out may alias x
      add(sum.data(), w.data(), n);
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_NEAR(out[i], ref[i], 1e-5f * (1 + std::fabs(ref[i])))
            << kernels::isa_name(isa) << " n=" << n << " i=" << i;
        ASSERT_EQ(in_place[i], out[i]) << kernels::isa_name(isa) << " n=" << n << " i=" << i;
        ASSERT_EQ(sum[i], ref_sum[i]) << kernels::isa_name(isa) << " n=" << n << " i=" << i;
      }
    }
  }
}

TEST(Ops, RopeApplyMatchesScalarOnEveryIsa) {
  IsaScope scope;
  for (int64_t n_rot : {2, 6, 8, 16, 24, 64, 128}) {
    std::vector<float> inv_freq(static_cast<size_t>(n_rot / 2)), cs(static_cast<size_t>(n_rot));
    for (int64_t i = 0; i < n_rot / 2; ++i)
      inv_freq[static_cast<size_t>(i)] = std::pow(10000.0f, -2.0f * static_cast<float>(i) / n_rot);
    rope_angles(n_rot, 37, inv_freq.data(), cs.data());
    // A head longer than n_rot: the tail past n_rot must stay untouched.
    const auto x = random_floats(static_cast<size_t>(n_rot + 5), 9, 1.0f);
    for (bool neox : {false, true}) {
      std::vector<float> ref = x;
      ASSERT_TRUE(kernels::set_active_isa(kernels::Isa::kScalar));
      rope_apply(ref.data(), n_rot, cs.data(), neox);
      for (kernels::Isa isa : kernels::available_isas()) {
        ASSERT_TRUE(kernels::set_active_isa(isa));
        std::vector<float> out = x;
        rope_apply(out.data(), n_rot, cs.data(), neox);
        for (size_t i = 0; i < out.size(); ++i)
          ASSERT_NEAR(out[i], ref[i], 1e-5f * (1 + std::fabs(ref[i])))
              << kernels::isa_name(isa) << " n_rot=" << n_rot << " neox=" << neox << " i=" << i;
      }
    }
  }
}

TEST(Ops, RmsNormAndSoftmax) {
  std::vector<float> x = {1, 2, 3, 4}, w = {1, 1, 2, 0.5f}, out(4);
  rms_norm(x.data(), w.data(), 4, 0.0f, out.data());
  const float inv = 1.0f / std::sqrt(7.5f);
  EXPECT_NEAR(out[2], 3 * inv * 2, 1e-6);
  std::vector<float> p = {1000, 1000, -1000};
  softmax(p.data(), 3);
  EXPECT_NEAR(p[0], 0.5f, 1e-7);
  EXPECT_EQ(p[2], 0.0f);
}

// argmax's documented pick, written out: the largest value by `>` over the
// non-NaN entries, then its first index (-0 == +0), -1 when nothing is above -inf.
int64_t argmax_reference(const std::vector<float>& x) {
  int64_t best = -1;
  for (size_t i = 0; i < x.size(); ++i)
    if (!std::isnan(x[i]) && x[i] != -INFINITY && (best < 0 || x[i] > x[static_cast<size_t>(best)]))
      best = static_cast<int64_t>(i);
  return best;
}

TEST(Ops, ArgmaxOnEveryIsaKeepsTheFirstMaximumAndSkipsNans) {
  IsaScope scope;
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<std::vector<float>> cases;
  for (int64_t n : {0, 1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257, 1000, 151936}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = dist(rng);
    cases.push_back(x);
    if (n < 2) continue;
    // The maximum twice: the lower index wins, wherever the two fall.
    std::vector<float> tie = x;
    const size_t a = static_cast<size_t>(n) / 3, b = static_cast<size_t>(n) - 1;
    tie[a] = tie[b] = 100.0f;
    cases.push_back(tie);
    tie[a + 1] = 100.0f;  // and in the same vector
    cases.push_back(tie);
    // -0 after +0 as the largest value: the same value, so the first.
    std::vector<float> zeros(static_cast<size_t>(n), -1.0f);
    zeros[b] = -0.0f;
    zeros[a] = 0.0f;
    cases.push_back(zeros);
    // NaNs everywhere but a few entries; one at the front.
    std::vector<float> nans = x;
    for (size_t i = 0; i < nans.size(); ++i)
      if (i % 5 != 3) nans[i] = std::numeric_limits<float>::quiet_NaN();
    cases.push_back(nans);
    // Only -inf and NaN: no pick. Then one +inf among them.
    std::vector<float> none(static_cast<size_t>(n), -INFINITY);
    none[a] = std::numeric_limits<float>::quiet_NaN();
    cases.push_back(none);
    none[b] = INFINITY;
    cases.push_back(none);
  }
  for (kernels::Isa isa : kernels::available_isas()) {
    ASSERT_TRUE(kernels::set_active_isa(isa));
    for (const std::vector<float>& x : cases)
      EXPECT_EQ(argmax(x.data(), static_cast<int64_t>(x.size())), argmax_reference(x))
          << kernels::isa_name(isa) << " n=" << x.size();
  }
}

}  // namespace
}  // namespace slm::ops
