// LoRA at inference against the merged weights: an adapter file written here
// (llama.cpp's layout) applied by the forward pass must give the logits of a
// copy of the model whose matrices hold W + scale * B A, computed in double
// in this test. Covers stacking two files, a fused matrix (Phi-3's attn_qkv),
// sequences with and without the adapter in one batched step, and the
// refusals.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "common/adapter_logits.h"
#include "common/fixtures.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "model/forward.h"
#include "model/lora.h"
#include "model/lora_merge.h"
#include "model/model.h"
#include "model/session.h"

namespace slm::model {
namespace {

using test::logits_of;
using test::max_rel_diff;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

struct Delta {
  std::string name;  // base matrix
  int64_t rank;
  float alpha;
  std::vector<float> a, b;  // [rank][n_in], [n_out][rank]
};

// f16_exact: values F16 holds exactly (and the tests' alpha / rank and user
// scales are powers of two), so the adapter's F16 copies (model/lora.h) lose
// nothing and a comparison with merged weights sees only float sums.
Delta random_delta(const gguf::File& f, const std::string& name, int64_t rank, float alpha,
                   uint32_t seed, bool f16_exact = true) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  EXPECT_NE(t, nullptr) << name;
  Delta d{name, rank, alpha, {}, {}};
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.3f);
  auto value = [&] { return f16_exact ? fp16_to_f32(f32_to_fp16(dist(rng))) : dist(rng); };
  d.a.resize(static_cast<size_t>(rank * t->ne[0]));
  d.b.resize(static_cast<size_t>(t->ne[1] * rank));
  for (float& x : d.a) x = value();
  for (float& x : d.b) x = value();
  return d;
}

std::span<const uint8_t> bytes_of(const std::vector<float>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)};
}

// An adapter file in llama.cpp's layout; the file has one alpha, the first
// delta's (tests give every delta of a file the same).
std::string write_adapter(const std::string& path, const std::string& arch,
                          const std::vector<Delta>& ds) {
  gguf::Writer w;
  w.add_string("general.architecture", arch);
  w.add_string("general.type", "adapter");
  w.add_string("adapter.type", "lora");
  w.add_f32("adapter.lora.alpha", ds.front().alpha);
  for (const Delta& d : ds) {
    const int64_t n_in = static_cast<int64_t>(d.a.size()) / d.rank,
                  n_out = static_cast<int64_t>(d.b.size()) / d.rank;
    w.add_tensor(d.name + ".lora_a", DType::F32, {n_in, d.rank}, bytes_of(d.a));
    w.add_tensor(d.name + ".lora_b", DType::F32, {d.rank, n_out}, bytes_of(d.b));
  }
  w.write(path);
  return path;
}

// bytes: a parsed F32 model's file; W += scale * alpha / rank * B A in place.
void merge_into(std::vector<uint8_t>& bytes, const gguf::File& f, const Delta& d, float scale) {
  const gguf::TensorInfo* t = f.find_tensor(d.name);
  ASSERT_EQ(t->type, DType::F32) << d.name;
  const int64_t n_in = t->ne[0], n_out = t->ne[1];
  float* w = reinterpret_cast<float*>(bytes.data() + f.data_offset() + t->offset);
  const double s = static_cast<double>(scale) * d.alpha / static_cast<double>(d.rank);
  for (int64_t o = 0; o < n_out; ++o)
    for (int64_t i = 0; i < n_in; ++i) {
      double acc = 0;
      for (int64_t k = 0; k < d.rank; ++k)
        acc += static_cast<double>(d.b[static_cast<size_t>(o * d.rank + k)]) *
               d.a[static_cast<size_t>(k * n_in + i)];
      w[o * n_in + i] = static_cast<float>(w[o * n_in + i] + s * acc);
    }
}

const std::vector<int32_t> kTokens = {1,   450, 4996,  17354, 1701,  432, 17204,
                                      975, 278, 17366, 11203, 29889, 13,  3};

// Four sequences decoded in one step, sequence i on adapters[i] (or the
// base) over kTokens[i, 2i + 5): each one's last logits equal its run alone,
// bit for bit; with check_moved, an adapted sequence's logits also differ
// from the base's (the adapter does reach its rows).
void expect_mixed_batch_equals_alone(const Model& base,
                                     const std::array<const LoraAdapter*, 4>& adapters,
                                     bool check_moved) {
  SessionOptions so;
  so.n_ctx = 64;
  ThreadPool pool(2);
  Session s0(base, so), s1(base, so), s2(base, so), s3(base, so);
  Session* sessions[] = {&s0, &s1, &s2, &s3};
  const size_t n_vocab = static_cast<size_t>(base.config().n_vocab);
  std::vector<std::vector<float>> got(4, std::vector<float>(n_vocab));
  std::vector<SeqChunk> chunks;
  for (int i = 0; i < 4; ++i) {
    SeqChunk c{sessions[i],
               std::span<const int32_t>(kTokens).subspan(static_cast<size_t>(i), 5 + i),
               got[static_cast<size_t>(i)].data(), false};
    c.adapter = adapters[static_cast<size_t>(i)];
    chunks.push_back(c);
  }
  Scratch scratch(base.config(), 32);
  forward(base, chunks, scratch, pool);
  const auto last_row = [&](const LoraAdapter* ad, const std::vector<int32_t>& toks) {
    std::vector<float> v = logits_of(base, ad, toks);
    v.erase(v.begin(), v.end() - static_cast<std::ptrdiff_t>(n_vocab));
    return v;
  };
  for (int i = 0; i < 4; ++i) {
    const LoraAdapter* ad = adapters[static_cast<size_t>(i)];
    const std::vector<int32_t> alone(kTokens.begin() + i, kTokens.begin() + i + 5 + i);
    const std::vector<float> want = last_row(ad, alone);
    EXPECT_EQ(want, got[static_cast<size_t>(i)]) << "sequence " << i;
    if (check_moved && ad != nullptr) {
      EXPECT_GT(max_rel_diff(want, last_row(nullptr, alone)), 1e-3) << "sequence " << i;
    }
  }
}

class Lora : public ::testing::Test {
 protected:
  std::string tmp(const std::string& name) {
    const auto dir =
        std::filesystem::temp_directory_path() / ("slm-lora-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    return (dir / name).string();
  }
  void TearDown() override {
    std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                                ("slm-lora-" + std::to_string(::getpid())));
  }
};

TEST_F(Lora, AdapterEqualsMergedWeightsAndStacks) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const std::string path = test::fixture("models/tiny-llama.gguf");
  const auto base = Model::load(path);
  const gguf::File& f = base->file();
  const std::vector<Delta> one = {random_delta(f, "blk.0.attn_q.weight", 4, 8.0f, 1),
                                  random_delta(f, "blk.0.attn_v.weight", 4, 8.0f, 2),
                                  random_delta(f, "blk.1.ffn_down.weight", 4, 8.0f, 3),
                                  random_delta(f, "blk.1.ffn_gate.weight", 4, 8.0f, 4)};
  const std::vector<Delta> two = {random_delta(f, "blk.0.attn_q.weight", 2, 2.0f, 5),
                                  random_delta(f, "blk.1.attn_output.weight", 2, 2.0f, 6)};
  const std::string p1 = write_adapter(tmp("one.gguf"), "llama", one);
  const std::string p2 = write_adapter(tmp("two.gguf"), "llama", two);

  // One file at scale 0.5.
  std::vector<uint8_t> bytes = read_bytes(path);
  auto file = gguf::File::parse(bytes, "merged");
  for (const Delta& d : one) merge_into(bytes, *file, d, 0.5f);
  const auto merged = Model::from_file(gguf::File::parse(bytes, "merged"));
  const auto ad = LoraAdapter::load(*base, {parse_lora_argument(p1 + ":0.5")});
  EXPECT_EQ(ad->n_matrices(), 4u);
  const auto want = logits_of(*merged, nullptr, kTokens);
  const auto base_logits = logits_of(*base, nullptr, kTokens);
  EXPECT_GT(max_rel_diff(want, base_logits), 1e-2);  // the adapter changes the output
  EXPECT_LT(max_rel_diff(want, logits_of(*base, ad.get(), kTokens)), 2e-5);

  // Both files: the deltas add, each with its own scale.
  std::vector<uint8_t> bytes2 = read_bytes(path);
  for (const Delta& d : one) merge_into(bytes2, *file, d, 0.5f);
  for (const Delta& d : two) merge_into(bytes2, *file, d, 2.0f);
  const auto merged2 = Model::from_file(gguf::File::parse(bytes2, "merged2"));
  const auto ad2 =
      LoraAdapter::load(*base, {parse_lora_argument(p1 + ":0.5"), parse_lora_argument(p2 + ":2")});
  EXPECT_EQ(ad2->n_matrices(), 5u);
  EXPECT_EQ(ad2->max_rank(), 6);  // attn_q: 4 + 2 stacked
  EXPECT_LT(
      max_rel_diff(logits_of(*merged2, nullptr, kTokens), logits_of(*base, ad2.get(), kTokens)),
      2e-5);

  // Scale 0 is the base bit for bit; adapters get distinct cache ids.
  const auto zero = LoraAdapter::load(*base, {parse_lora_argument(p1 + ":0")});
  EXPECT_EQ(logits_of(*base, zero.get(), kTokens), base_logits);
  EXPECT_NE(ad->id(), ad2->id());
  EXPECT_NE(ad->id(), 0u);
}

// Factors F16 cannot hold exactly: each A and B value is stored rounded to
// 11 significant bits (relative error <= 2^-11), so the delta B A x is off
// by at most about 2 * 2^-11 of its size (A and B each rounded once; random
// signs make it less: ~0.5 * 2^-11 here), bounded by 2 * 2^-11 of how far
// the adapter moves the logits.
TEST_F(Lora, F16FactorsStayWithinTheirRounding) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const std::string path = test::fixture("models/tiny-llama.gguf");
  const auto base = Model::load(path);
  const gguf::File& f = base->file();
  const std::vector<Delta> ds = {random_delta(f, "blk.0.attn_q.weight", 4, 6.0f, 21, false),
                                 random_delta(f, "blk.1.ffn_down.weight", 4, 6.0f, 22, false)};
  std::vector<uint8_t> bytes = read_bytes(path);
  auto file = gguf::File::parse(bytes, "merged");
  for (const Delta& d : ds) merge_into(bytes, *file, d, 0.7f);
  const auto merged = Model::from_file(gguf::File::parse(bytes, "merged"));
  const auto ad = LoraAdapter::load(
      *base, {parse_lora_argument(write_adapter(tmp("any.gguf"), "llama", ds) + ":0.7")});
  const auto want = logits_of(*merged, nullptr, kTokens);
  const double moved = max_rel_diff(want, logits_of(*base, nullptr, kTokens));
  const double err = max_rel_diff(want, logits_of(*base, ad.get(), kTokens));
  EXPECT_GT(moved, 1e-2);
  EXPECT_GT(err, 0.0);  // these values do round
  EXPECT_LT(err, 2e-5 + 2 * 0x1p-11 * moved) << "moved " << moved;
}

// 8-bit factors (LoraType::kQ8): each value is stored as float(q) * d with
// d = max|group| / 127, so it is off by at most d / 2 = max|group| / 254;
// for these Gaussian factors (groups of 32 inputs of A, 16 outputs of B, a
// group's maximum about 2.1 to 2.5 sigma) that is a uniform error of rms
// about 2.5 / 254 / sqrt(3) = 0.6% of sigma per value, independent across
// values, so the delta B A x is off by about sqrt(2) * 0.6% ~ 0.8% of its
// size (0.7% measured). The bound below, 2% of how far the adapter moves
// the logits (0.5% measured), leaves room for the network's nonlinearity;
// a wrong group scale or q off by a step everywhere would exceed it.
TEST_F(Lora, Q8FactorsStayWithinTheirRounding) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const std::string path = test::fixture("models/tiny-llama.gguf");
  const auto base = Model::load(path);
  const gguf::File& f = base->file();
  const std::vector<Delta> ds = {random_delta(f, "blk.0.attn_q.weight", 4, 6.0f, 21, false),
                                 random_delta(f, "blk.1.ffn_down.weight", 4, 6.0f, 22, false)};
  std::vector<uint8_t> bytes = read_bytes(path);
  auto file = gguf::File::parse(bytes, "merged");
  for (const Delta& d : ds) merge_into(bytes, *file, d, 0.7f);
  const auto merged = Model::from_file(gguf::File::parse(bytes, "merged"));
  const std::vector<LoraFile> files = {
      parse_lora_argument(write_adapter(tmp("any.gguf"), "llama", ds) + ":0.7")};
  const auto q8 = LoraAdapter::load(*base, files, backend::LoraType::kQ8);
  const auto f16 = LoraAdapter::load(*base, files);
  const auto want = logits_of(*merged, nullptr, kTokens);
  const double moved = max_rel_diff(want, logits_of(*base, nullptr, kTokens));
  const double err = max_rel_diff(want, logits_of(*base, q8.get(), kTokens));
  const double err_f16 = max_rel_diff(want, logits_of(*base, f16.get(), kTokens));
  EXPECT_GT(moved, 1e-2);
  EXPECT_GT(err, err_f16);  // 8 bits do lose more than F16's 11
  EXPECT_LT(err, 2e-5 + 0.02 * moved) << "moved " << moved;
  // The delta B A from the values the adapter reports (what merging reads):
  // within the rounding above of the F16 one, about 0.8% rms.
  const auto delta = [](const backend::LoraFactors& fa, int64_t j, int64_t c) {
    double d = 0;
    for (int64_t k = 0; k < fa.r; ++k)
      d += static_cast<double>(fa.scale[k]) * fa.a_value(k, c) * fa.b_value(j, k);
    return d;
  };
  for (const auto& [w, fq] : q8->matrices()) {
    ASSERT_EQ(fq->type(), backend::LoraType::kQ8);
    const backend::LoraFactors* fh = f16->find(w);
    ASSERT_NE(fh, nullptr);
    ASSERT_EQ(fh->type(), backend::LoraType::kF16);
    double num = 0, den = 0;
    for (int64_t j = 0; j < fq->n_out; ++j)
      for (int64_t c = 0; c < fq->n_in; ++c) {
        const double h = delta(*fh, j, c), q = delta(*fq, j, c);
        num += (q - h) * (q - h);
        den += h * h;
      }
    EXPECT_LT(std::sqrt(num / den), 0.012);
    EXPECT_GT(std::sqrt(num / den), 0.003);
  }
}

// Rows of different sequences in one step: each gets its own adapter (or
// none), with the bits it gets alone.
TEST_F(Lora, MixedBatchEqualsEachSequenceAlone) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const auto base = Model::load(test::fixture("models/tiny-llama.gguf"));
  const gguf::File& f = base->file();
  const auto a1 = LoraAdapter::load(
      *base, {{write_adapter(tmp("a1.gguf"), "llama",
                             {random_delta(f, "blk.0.attn_k.weight", 3, 3.0f, 7)}),
               1.0f}});
  const auto a2 = LoraAdapter::load(
      *base, {{write_adapter(tmp("a2.gguf"), "llama",
                             {random_delta(f, "blk.1.ffn_up.weight", 5, 5.0f, 8)}),
               1.0f}});
  // a1 twice: its two sequences share each factor row in one segment group.
  expect_mixed_batch_equals_alone(*base, {a1.get(), nullptr, a2.get(), a1.get()}, false);
}

// The same with 8-bit factors, beside an F16 adapter in the same step.
TEST_F(Lora, MixedBatchEqualsEachSequenceAloneQ8) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const auto base = Model::load(test::fixture("models/tiny-llama.gguf"));
  const gguf::File& f = base->file();
  const std::string p1 =
      write_adapter(tmp("q1.gguf"), "llama",
                    {random_delta(f, "blk.0.attn_k.weight", 3, 3.0f, 7, false),
                     random_delta(f, "blk.1.ffn_down.weight", 4, 3.0f, 11, false)});
  const std::string p2 = write_adapter(tmp("q2.gguf"), "llama",
                                       {random_delta(f, "blk.1.ffn_up.weight", 5, 5.0f, 8, false)});
  const auto a1 = LoraAdapter::load(*base, {{p1, 1.0f}}, backend::LoraType::kQ8);
  const auto a2 = LoraAdapter::load(*base, {{p2, 1.0f}});
  expect_mixed_batch_equals_alone(*base, {a1.get(), nullptr, a2.get(), a1.get()}, true);
}

// Phi-3's attn_qkv is one tensor but three matrices: the adapter's B rows are split.
TEST_F(Lora, FusedMatrixTakesItsRowsOfB) {
  SLM_REQUIRE_FIXTURE("models/tiny-phi3.gguf");
  const std::string path = test::fixture("models/tiny-phi3.gguf");
  const auto base = Model::load(path);
  const std::vector<Delta> ds = {random_delta(base->file(), "blk.0.attn_qkv.weight", 4, 4.0f, 9),
                                 random_delta(base->file(), "blk.1.ffn_up.weight", 2, 4.0f, 10)};
  std::vector<uint8_t> bytes = read_bytes(path);
  auto file = gguf::File::parse(bytes, "merged");
  for (const Delta& d : ds) merge_into(bytes, *file, d, 1.0f);
  const auto merged = Model::from_file(gguf::File::parse(bytes, "merged"));
  const auto ad = LoraAdapter::load(*base, {{write_adapter(tmp("phi.gguf"), "phi3", ds), 1.0f}});
  EXPECT_EQ(ad->n_matrices(), 5u);  // q, k, v and gate, up
  const std::vector<int32_t> toks = {1, 5, 9, 200, 31, 77, 900, 4};
  {
    std::vector<uint8_t> same = read_bytes(path);
    const auto copy = Model::from_file(gguf::File::parse(same, "copy"));
    EXPECT_EQ(logits_of(*copy, nullptr, toks), logits_of(*base, nullptr, toks));
    for (const Delta& d : ds) {
      std::vector<uint8_t> b1 = read_bytes(path);
      merge_into(b1, *file, d, 1.0f);
      const auto m1 = Model::from_file(gguf::File::parse(b1, "m1"));
      const auto a1 =
          LoraAdapter::load(*base, {{write_adapter(tmp("phi1.gguf"), "phi3", {d}), 1.0f}});
      EXPECT_LT(max_rel_diff(logits_of(*m1, nullptr, toks), logits_of(*base, a1.get(), toks)), 2e-5)
          << d.name;
    }
  }
  EXPECT_LT(max_rel_diff(logits_of(*merged, nullptr, toks), logits_of(*base, ad.get(), toks)),
            2e-5);
}

// Mixture-of-experts stacks: a pair per expert, written as llama.cpp lays
// them out (lora_a ne [n_in, r, n_expert], lora_b ne [r, n_out, n_expert]).
struct ExpertDelta {
  std::string name;  // e.g. "blk.0.ffn_up_exps.weight", ne [n_in, n_out, n_expert]
  int64_t rank, n_in, n_out, n_expert;
  float alpha;
  std::vector<float> a, b;  // [n_expert][rank][n_in], [n_expert][n_out][rank]
};

ExpertDelta random_expert_delta(const gguf::File& f, const std::string& name, int64_t rank,
                                float alpha, uint32_t seed) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  EXPECT_NE(t, nullptr) << name;
  ExpertDelta d{name, rank, t->ne[0], t->ne[1], t->ne[2], alpha, {}, {}};
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.3f);
  d.a.resize(static_cast<size_t>(d.n_expert * rank * d.n_in));
  d.b.resize(static_cast<size_t>(d.n_expert * d.n_out * rank));
  for (float& x : d.a) x = fp16_to_f32(f32_to_fp16(dist(rng)));  // F16-exact (see random_delta)
  for (float& x : d.b) x = fp16_to_f32(f32_to_fp16(dist(rng)));
  return d;
}

std::string write_expert_adapter(const std::string& path, const std::string& arch,
                                 const std::vector<ExpertDelta>& ds,
                                 const std::vector<Delta>& plain = {}) {
  gguf::Writer w;
  w.add_string("general.architecture", arch);
  w.add_string("general.type", "adapter");
  w.add_string("adapter.type", "lora");
  w.add_f32("adapter.lora.alpha", ds.front().alpha);
  for (const ExpertDelta& d : ds) {
    w.add_tensor(d.name + ".lora_a", DType::F32, {d.n_in, d.rank, d.n_expert}, bytes_of(d.a));
    w.add_tensor(d.name + ".lora_b", DType::F32, {d.rank, d.n_out, d.n_expert}, bytes_of(d.b));
  }
  for (const Delta& d : plain) {
    const int64_t n_in = static_cast<int64_t>(d.a.size()) / d.rank,
                  n_out = static_cast<int64_t>(d.b.size()) / d.rank;
    w.add_tensor(d.name + ".lora_a", DType::F32, {n_in, d.rank}, bytes_of(d.a));
    w.add_tensor(d.name + ".lora_b", DType::F32, {d.rank, n_out}, bytes_of(d.b));
  }
  w.write(path);
  return path;
}

// W_e += scale * alpha / rank * B_e A_e for every expert e, in double.
void merge_experts_into(std::vector<uint8_t>& bytes, const gguf::File& f, const ExpertDelta& d,
                        float scale) {
  const gguf::TensorInfo* t = f.find_tensor(d.name);
  ASSERT_EQ(t->type, DType::F32) << d.name;
  ASSERT_EQ(t->ne[2], d.n_expert);
  const int64_t n_in = d.n_in, n_out = d.n_out, r = d.rank;
  const double s = static_cast<double>(scale) * d.alpha / static_cast<double>(r);
  for (int64_t e = 0; e < d.n_expert; ++e) {
    float* w =
        reinterpret_cast<float*>(bytes.data() + f.data_offset() + t->offset) + e * n_in * n_out;
    const float* a = d.a.data() + e * r * n_in;
    const float* b = d.b.data() + e * n_out * r;
    for (int64_t o = 0; o < n_out; ++o)
      for (int64_t i = 0; i < n_in; ++i) {
        double acc = 0;
        for (int64_t k = 0; k < r; ++k) acc += static_cast<double>(b[o * r + k]) * a[k * n_in + i];
        w[o * n_in + i] = static_cast<float>(w[o * n_in + i] + s * acc);
      }
  }
}

// Largest KL(p || q) over the rows of two logits arrays [rows][n_vocab].
double max_kl(const std::vector<float>& p, const std::vector<float>& q, int64_t n_vocab) {
  EXPECT_EQ(p.size(), q.size());
  double worst = 0;
  for (size_t r0 = 0; r0 + static_cast<size_t>(n_vocab) <= p.size();
       r0 += static_cast<size_t>(n_vocab)) {
    auto logsumexp = [&](const std::vector<float>& v) {
      double mx = -INFINITY, sum = 0;
      for (int64_t i = 0; i < n_vocab; ++i)
        mx = std::max(mx, static_cast<double>(v[r0 + static_cast<size_t>(i)]));
      for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(v[r0 + static_cast<size_t>(i)] - mx);
      return mx + std::log(sum);
    };
    const double lp = logsumexp(p), lq = logsumexp(q);
    double kl = 0;
    for (int64_t i = 0; i < n_vocab; ++i) {
      const double a = p[r0 + static_cast<size_t>(i)] - lp, b = q[r0 + static_cast<size_t>(i)] - lq;
      kl += std::exp(a) * (a - b);
    }
    worst = std::max(worst, kl);
  }
  return worst;
}

// An adapter on expert stacks (and, in the same file, an attention matrix)
// gives the logits of the model whose experts hold W_e + scale B_e A_e.
TEST_F(Lora, ExpertAdapterEqualsMergedExperts) {
  for (const char* fixture : {"models/tiny-moe.gguf", "models/tiny-qwen3moe.gguf"}) {
    SCOPED_TRACE(fixture);
    SLM_REQUIRE_FIXTURE(fixture);
    const std::string path = test::fixture(fixture);
    const auto base = Model::load(path);
    const gguf::File& f = base->file();
    const std::string arch(*f.get_string("general.architecture"));
    const std::vector<ExpertDelta> ex = {
        random_expert_delta(f, "blk.0.ffn_gate_exps.weight", 4, 8.0f, 31),
        random_expert_delta(f, "blk.0.ffn_up_exps.weight", 4, 8.0f, 32),
        random_expert_delta(f, "blk.1.ffn_down_exps.weight", 4, 8.0f, 33)};
    const std::vector<Delta> plain = {random_delta(f, "blk.1.attn_v.weight", 4, 8.0f, 34)};
    const auto ad = LoraAdapter::load(
        *base,
        {parse_lora_argument(write_expert_adapter(tmp("exps.gguf"), arch, ex, plain) + ":0.5")});
    EXPECT_EQ(ad->n_matrices(), static_cast<size_t>(3 * ex[0].n_expert + 1));
    std::vector<uint8_t> bytes = read_bytes(path);
    auto file = gguf::File::parse(bytes, "merged");
    for (const ExpertDelta& d : ex) merge_experts_into(bytes, *file, d, 0.5f);
    for (const Delta& d : plain) merge_into(bytes, *file, d, 0.5f);
    const auto merged = Model::from_file(gguf::File::parse(bytes, "merged"));
    const auto want = logits_of(*merged, nullptr, kTokens);
    const auto got = logits_of(*base, ad.get(), kTokens);
    const int64_t nv = base->config().n_vocab;
    EXPECT_GT(max_rel_diff(want, logits_of(*base, nullptr, kTokens)),
              1e-2);  // the adapter changes the output
    EXPECT_LT(max_rel_diff(want, got), 2e-5);
    EXPECT_LT(max_kl(want, got, nv), 1e-6);

    // merge_lora (`slm merge`) folds each expert's pair into its slice of the stack.
    const std::string out = tmp("merged-exps.gguf");
    ThreadPool pool(2);
    const MergeResult mr = merge_lora(*base, *ad, out, MergeOptions{}, pool);
    EXPECT_EQ(mr.n_merged, 4);  // three expert stacks and attn_v
    const auto folded = Model::load(out);
    const auto got_merged = logits_of(*folded, nullptr, kTokens);
    EXPECT_LT(max_rel_diff(want, got_merged), 2e-5);
    EXPECT_LT(max_kl(got, got_merged, nv), 1e-6);

    // Wrong expert count / a 3-d pair on a plain matrix are refused by name.
    ExpertDelta few = ex[0];
    few.n_expert -= 1;
    few.a.resize(static_cast<size_t>(few.n_expert * few.rank * few.n_in));
    few.b.resize(static_cast<size_t>(few.n_expert * few.n_out * few.rank));
    try {
      LoraAdapter::load(*base, {{write_expert_adapter(tmp("few.gguf"), arch, {few}), 1.0f}});
      ADD_FAILURE() << "an expert count the model does not have was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("experts here"), std::string::npos) << e.what();
    }
    ExpertDelta flat = ex[0];
    flat.name = "blk.0.attn_q.weight";
    try {
      LoraAdapter::load(*base, {{write_expert_adapter(tmp("flat.gguf"), arch, {flat}), 1.0f}});
      ADD_FAILURE() << "a 3-d pair on a plain matrix was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not an expert stack"), std::string::npos) << e.what();
    }
  }
}

// Rows of sequences with different adapters routed to the same expert in
// one step: each row gets its own sequence's expert pair, bit for bit as alone.
TEST_F(Lora, ExpertMixedBatchEqualsEachSequenceAlone) {
  for (const char* fixture : {"models/tiny-moe.gguf", "models/tiny-qwen3moe.gguf"}) {
    SCOPED_TRACE(fixture);
    SLM_REQUIRE_FIXTURE(fixture);
    const auto base = Model::load(test::fixture(fixture));
    const gguf::File& f = base->file();
    const std::string arch(*f.get_string("general.architecture"));
    const auto a1 = LoraAdapter::load(
        *base,
        {{write_expert_adapter(tmp("e1.gguf"), arch,
                               {random_expert_delta(f, "blk.0.ffn_up_exps.weight", 3, 3.0f, 41),
                                random_expert_delta(f, "blk.1.ffn_down_exps.weight", 3, 3.0f, 42)}),
          1.0f}});
    const auto a2 = LoraAdapter::load(
        *base,
        {{write_expert_adapter(tmp("e2.gguf"), arch,
                               {random_expert_delta(f, "blk.0.ffn_up_exps.weight", 5, 5.0f, 43),
                                random_expert_delta(f, "blk.0.ffn_gate_exps.weight", 5, 5.0f, 44)}),
          1.0f}});
    expect_mixed_batch_equals_alone(*base, {a1.get(), nullptr, a2.get(), a1.get()}, true);
  }
}

TEST_F(Lora, BadAdaptersAreRefusedByName) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  SLM_REQUIRE_FIXTURE("models/tiny-moe.gguf");
  const auto base = Model::load(test::fixture("models/tiny-llama.gguf"));
  const gguf::File& f = base->file();
  auto error_of = [&](const Model& m, const std::string& path) -> std::string {
    try {
      LoraAdapter::load(m, {{path, 1.0f}});
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  const Delta q = random_delta(f, "blk.0.attn_q.weight", 2, 2.0f, 11);
  EXPECT_NE(
      error_of(*base, write_adapter(tmp("arch.gguf"), "qwen2", {q})).find("architecture 'qwen2'"),
      std::string::npos);
  // A shape the base matrix does not have.
  Delta wrong = q;
  wrong.a.resize(wrong.a.size() - 2 * 2);  // [2][30]: two inputs short
  EXPECT_NE(
      error_of(*base, write_adapter(tmp("shape.gguf"), "llama", {wrong})).find("takes 32 inputs"),
      std::string::npos);
  Delta unknown = q;
  unknown.name = "blk.7.attn_q.weight";
  EXPECT_NE(error_of(*base, write_adapter(tmp("name.gguf"), "llama", {unknown}))
                .find("no matrix of that name"),
            std::string::npos);
  Delta out = random_delta(f, "output.weight", 2, 2.0f, 12);
  EXPECT_NE(error_of(*base, write_adapter(tmp("out.gguf"), "llama", {out})).find("not supported"),
            std::string::npos);
  // Half a pair.
  {
    gguf::Writer w;
    w.add_string("general.architecture", "llama");
    w.add_string("general.type", "adapter");
    w.add_string("adapter.type", "lora");
    w.add_tensor("blk.0.attn_q.weight.lora_a", DType::F32, {32, 2}, bytes_of(q.a));
    w.write(tmp("half.gguf"));
    EXPECT_NE(error_of(*base, tmp("half.gguf")).find("lora_b' is missing"), std::string::npos);
  }
  // Not an adapter; a value that is not finite.
  EXPECT_NE(error_of(*base, test::fixture("models/tiny-llama.gguf")).find("adapter"),
            std::string::npos);
  Delta nan = q;
  nan.b[3] = NAN;
  EXPECT_NE(error_of(*base, write_adapter(tmp("nan.gguf"), "llama", {nan})).find("not finite"),
            std::string::npos);
  // A 2-d pair for an expert stack is refused, naming the 3-d shape it needs.
  const auto moe = Model::load(test::fixture("models/tiny-moe.gguf"));
  const gguf::TensorInfo* exps = moe->file().find_tensor("blk.0.ffn_up_exps.weight");
  ASSERT_NE(exps, nullptr);
  Delta e{"blk.0.ffn_up_exps.weight", 2, 2.0f,
          std::vector<float>(static_cast<size_t>(2 * exps->ne[0]), 0.1f),
          std::vector<float>(static_cast<size_t>(exps->ne[1] * 2), 0.1f)};
  EXPECT_NE(error_of(*moe, write_adapter(tmp("exps.gguf"), "llama", {e}))
                .find("an expert adapter is 3-d"),
            std::string::npos);
  // PATH:SCALE parsing keeps colons that are not a scale.
  EXPECT_EQ(parse_lora_argument("a:b.gguf").path, "a:b.gguf");
  EXPECT_EQ(parse_lora_argument("x.gguf:0.25").scale, 0.25f);
  EXPECT_EQ(parse_lora_argument("x.gguf:0.25").path, "x.gguf");
}

}  // namespace
}  // namespace slm::model
