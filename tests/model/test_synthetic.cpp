// Features the shared references do not cover, checked against the float64
// forward pass in synthetic.cpp: llama3 rope scaling, head_dim != n_embd /
// n_head, MoE with top-1 and top-8 routing, contexts beyond training length.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/thread_pool.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "kernels/kernels.h"
#include "model/arch.h"
#include "model/model.h"
#include "model/quant_mix.h"
#include "model/session.h"
#include "model/synth.h"
#include "model/synthetic.h"

namespace slm::test {
namespace {

std::vector<int32_t> some_tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 37 + 11) % vocab);
  return t;
}

std::unique_ptr<model::Model> load(const SynthModel& m) {
  return model::Model::from_file(gguf::File::parse(m.gguf, "synthetic.gguf"));
}

// Runs slm over tokens (in chunks of n_batch) and returns the max error
// relative to the largest reference logit.
double max_rel_error(const SynthModel& m, const std::vector<int32_t>& tokens, int threads,
                     int64_t n_batch = 7) {
  const auto model = load(m);
  model::SessionOptions so;
  so.n_batch = n_batch;
  model::Session session(*model, so);
  ThreadPool pool(threads);
  std::vector<float> got;
  session.feed(tokens, pool, &got);
  const std::vector<double> want = reference_forward(m, tokens);
  EXPECT_EQ(got.size(), want.size());
  double max_abs = 0, max_err = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_abs = std::max(max_abs, std::fabs(want[i]));
    max_err = std::max(max_err, std::fabs(want[i] - got[i]));
  }
  return max_err / max_abs;
}

constexpr double kTol = 2e-5;  // float32 accumulation over these small sizes

TEST(Synthetic, PlainLlamaMatchesFloat64) {
  const SynthModel m = make_synth({});
  EXPECT_LT(max_rel_error(m, some_tokens(20, 64), 1), kTol);
  EXPECT_LT(max_rel_error(m, some_tokens(20, 64), 2, 20), kTol);
}

TEST(Synthetic, Llama3RopeScaling) {
  SynthSpec s;
  s.head_dim = 16;
  s.n_head = 2;
  s.n_head_kv = 1;
  s.rope_scaling = "llama3";
  s.rope_factor = 8;
  s.low_freq = 1;
  s.high_freq = 4;
  s.orig_ctx = 64;  // puts the 8 frequencies in all three llama3 bands
  const SynthModel m = make_synth(s);
  const auto tokens = some_tokens(40, 64);
  EXPECT_LT(max_rel_error(m, tokens, 2), kTol);
  // The same divisors given as a rope_freqs.weight tensor give the same logits.
  s.rope_freqs_tensor = true;
  const SynthModel t = make_synth(s);
  EXPECT_LT(max_rel_error(t, tokens, 1), kTol);
  // And scaling really changes the result (the test could not pass by ignoring it).
  s.rope_scaling.clear();
  s.rope_freqs_tensor = false;
  const SynthModel plain = make_synth(s);
  EXPECT_GT(max_rel_error(plain, tokens, 1) + 0.0, 0.0);
  const std::vector<double> a = reference_forward(m, tokens), b = reference_forward(plain, tokens);
  double diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::fabs(a[i] - b[i]));
  EXPECT_GT(diff, 1e-3);
}

// Every family in the table, each checked against the float64 forward that
// reads the same table: NeoX RoPE and q/k/v biases (qwen2), per-head q/k
// RMSNorm (qwen3), experts with qwen3moe's layout, fused q/k/v and gate/up
// with LongRoPE factors (phi3), sliding windows, soft-caps, GeGLU, post norms
// and per-layer RoPE bases (gemma2, gemma3).
TEST(Synthetic, EveryFamilyMatchesFloat64) {
  for (const model::Family& fam : model::families()) {
    SynthSpec s;
    s.arch = std::string(fam.name);
    s.head_dim = 16;  // q wider than n_embd, as in Qwen3
    if (fam.needs_experts) {
      s.n_expert = 4;
      s.n_expert_used = 2;
    }
    if (fam.swa != model::SwaPattern::kNone) s.n_swa = 8;  // shorter than the 21 tokens
    if (fam.name == "gemma2") {
      s.n_layer = 3;          // sliding, global, sliding
      s.attn_softcap = 1.5f;  // small enough to bite on these scores
      s.final_softcap = 3.0f;
    }
    if (fam.name == "gemma3") s.n_layer = 6;  // five sliding, one global
    SCOPED_TRACE(s.arch);
    EXPECT_LT(max_rel_error(make_synth(s), some_tokens(21, 64), 2), kTol);
  }
}

// A window-only layer keeps a ring of its window plus one step's rows (here
// 8 + 4 = 12 of a 64-token context): the logits still match the float64
// forward over 40 tokens, a prefix is kept or lent only while the ring
// still holds the window its next token reads, and doing so gives the same
// logits as computing straight through.
TEST(Synthetic, SlidingLayersKeepARingOfTheWindow) {
  SynthSpec s;
  s.arch = "gemma3";
  s.n_layer = 6;  // five sliding, one global
  s.n_swa = 8;
  const SynthModel m = make_synth(s);
  const auto tokens = some_tokens(40, 64);
  EXPECT_LT(max_rel_error(m, tokens, 2, 4), kTol);

  const auto model = load(m);
  model::SessionOptions so;
  so.n_batch = 4;
  model::Session a(*model, so), b(*model, so);
  EXPECT_LT(a.cache_bytes(),
            model::Session(*model, {64, 64, false}).cache_bytes());  // smaller than full
  ThreadPool pool(1);
  std::vector<float> straight;
  a.feed(tokens, pool, &straight);
  const int64_t V = model->config().n_vocab;
  auto near = [&](std::span<const float> got, int64_t row) {
    double worst = 0, top = 0;
    for (int64_t i = 0; i < V; ++i) {
      top = std::max(top, std::fabs(static_cast<double>(straight[row * V + i])));
      worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - straight[row * V + i]));
    }
    return worst / top;
  };
  // Ring of 12 holds positions 28..39; position 36 reads back to 29.
  EXPECT_TRUE(a.can_keep(36));
  EXPECT_FALSE(a.can_keep(20));  // its window (13..19) is gone
  EXPECT_TRUE(a.can_keep(0));
  b.copy_prefix(a, 36);
  b.feed(std::span<const int32_t>(tokens).subspan(36), pool);
  EXPECT_LT(near(b.last_logits(), 39), kTol);
  EXPECT_THROW(b.copy_prefix(a, 20), Error);
  a.truncate(37);
  a.feed(std::span<const int32_t>(tokens).subspan(37), pool);
  EXPECT_LT(near(a.last_logits(), 39), kTol);
  EXPECT_THROW(a.truncate(20), Error);
}

TEST(Synthetic, LinearRopeScaling) {
  SynthSpec s;
  s.rope_scaling = "linear";
  s.rope_factor = 4;
  EXPECT_LT(max_rel_error(make_synth(s), some_tokens(24, 64), 2), kTol);
}

TEST(Synthetic, HeadDimDiffersFromEmbdOverHeads) {
  SynthSpec s;
  s.n_embd = 32;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.head_dim = 24;  // q has 96 columns, three times n_embd / n_head
  EXPECT_LT(max_rel_error(make_synth(s), some_tokens(18, 64), 2), kTol);
}

TEST(Synthetic, MoeTop1) {
  SynthSpec s;
  s.n_expert = 8;
  s.n_expert_used = 1;
  s.n_ff = 16;
  EXPECT_LT(max_rel_error(make_synth(s), some_tokens(25, 64), 1), kTol);
  EXPECT_LT(max_rel_error(make_synth(s), some_tokens(25, 64), 2, 25), kTol);
}

TEST(Synthetic, MoeTop8) {
  SynthSpec s;
  s.n_expert = 8;
  s.n_expert_used = 8;
  s.n_ff = 16;
  EXPECT_LT(max_rel_error(make_synth(s), some_tokens(25, 64), 2), kTol);
}

TEST(Synthetic, ChunkedPromptEqualsOneTokenAtATime) {
  const SynthModel m = make_synth({});
  const auto model = load(m);
  const auto tokens = some_tokens(30, 64);
  ThreadPool pool(2);
  model::SessionOptions so;
  so.n_batch = 8;
  model::Session a(*model, so);
  std::vector<float> all;
  a.feed(tokens, pool, &all);
  model::Session b(*model, so);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::span<const float> row = b.decode(tokens[i], pool);
    for (int64_t v = 0; v < 64; ++v) ASSERT_NEAR(row[v], all[i * 64 + v], 1e-4) << i;
  }
}

// A prompt step (prefill attention blocks, row-parallel norms and adds, the
// wide matmul tiles) gives each row the very bits that decoding the tokens
// one at a time gives: heads of 64 (the vector loops, head pairs) and a
// chunk of 32 rows that spans two attention blocks, then a second chunk at a
// prefix.
TEST(Synthetic, PromptStepEqualsOneTokenAtATimeBitForBit) {
  SynthSpec spec;
  spec.head_dim = 64;
  const SynthModel m = make_synth(spec);
  const auto model = load(m);
  const auto tokens = some_tokens(45, 64);
  ThreadPool pool(2);
  model::SessionOptions so;
  so.n_batch = 32;
  model::Session a(*model, so);
  std::vector<float> all;
  a.feed(tokens, pool, &all);
  model::Session b(*model, so);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::span<const float> row = b.decode(tokens[i], pool);
    for (int64_t v = 0; v < 64; ++v) ASSERT_EQ(row[v], all[i * 64 + v]) << "token " << i;
  }
}

// Loading repacks each matrix on the given threads (Model::load -t): the
// same packed bytes and the same logits bits as on one thread, with
// matrices large enough to be split (Q8_0 gate/up/down of 512 x 1536:
// 816 KiB each, several packing tasks) and a Q4_K_M mix of types. Where the
// CPU has no tiles nothing is packed, and the logits must still agree.
TEST(Synthetic, LoadingOnSeveralThreadsGivesTheSameBits) {
  const model::SynthShape shape{"t", "llama", 2, 512, 8, 4, 0, 1536, 256, 64, 1e4f, 1e-5f, false};
  ThreadPool pool(2);
  const auto tokens = some_tokens(9, 256);
  for (const char* mix : {"Q8_0", "Q4_K_M"}) {
    const std::vector<uint8_t> bytes = model::synth_bytes(shape, mix, 7, pool);
    std::vector<float> one;
    size_t one_bytes = 0;
    for (int threads : {1, 3}) {
      const auto m = model::Model::from_file(gguf::File::parse(bytes, "t.gguf"), threads);
      model::Session session(*m, {});
      std::vector<float> out;
      session.feed(tokens, pool, &out);
      if (threads == 1) {
        one = std::move(out);
        one_bytes = m->packed_bytes();
        // (where this CPU has tiles for the types: not under qemu's aarch64)
        if (kernels::PackedMatrix::pays(DType::Q8_0)) {
          ASSERT_GT(one_bytes, size_t{2} << 20) << mix;
        }
        continue;
      }
      EXPECT_EQ(m->packed_bytes(), one_bytes) << mix;
      ASSERT_EQ(out.size(), one.size()) << mix;
      EXPECT_EQ(0, std::memcmp(out.data(), one.data(), one.size() * sizeof(float))) << mix;
    }
  }
}

// Continuous batching: several sequences at different positions advanced in
// one forward step give the logits each gets alone.
TEST(Synthetic, BatchedStepEqualsSeparateSequences) {
  for (const int64_t n_expert : {0, 8}) {
    SynthSpec spec;
    spec.n_expert = n_expert;
    spec.n_expert_used = n_expert ? 2 : 0;
    const SynthModel m = make_synth(spec);
    const auto model = load(m);
    ThreadPool pool(2);
    const std::vector<std::vector<int32_t>> prompts = {
        some_tokens(5, 64), some_tokens(12, 64), {7}};
    std::vector<std::unique_ptr<model::Session>> alone, batched;
    for (const auto& p : prompts) {
      alone.push_back(std::make_unique<model::Session>(*model, model::SessionOptions{}));
      batched.push_back(std::make_unique<model::Session>(*model, model::SessionOptions{}));
      alone.back()->feed(p, pool);
    }
    // Batched: one step holds the whole of prompt 0 and 2 plus half of prompt 1...
    model::Scratch scratch(model->config(), 32);
    std::vector<float> out0(64), out2(64);
    std::vector<model::SeqChunk> step1 = {
        {batched[0].get(), prompts[0], out0.data(), false},
        {batched[1].get(), std::span<const int32_t>(prompts[1]).first(6), nullptr, false},
        {batched[2].get(), prompts[2], out2.data(), false}};
    model::forward(*model, step1, scratch, pool);
    // ...the next step the rest of prompt 1 beside decode tokens of the others.
    const int32_t d0 = 3, d2 = 9;
    std::vector<float> out1(64), out0b(64);
    std::vector<model::SeqChunk> step2 = {
        {batched[0].get(), std::span<const int32_t>(&d0, 1), out0b.data(), false},
        {batched[1].get(), std::span<const int32_t>(prompts[1]).subspan(6), out1.data(), false},
        {batched[2].get(), std::span<const int32_t>(&d2, 1), out2.data(), false}};
    for (int64_t v = 0; v < 64; ++v) ASSERT_NEAR(out0[v], alone[0]->last_logits()[v], 1e-4);
    model::forward(*model, step2, scratch, pool);
    for (int64_t v = 0; v < 64; ++v) ASSERT_NEAR(out1[v], alone[1]->last_logits()[v], 1e-4);
    const auto a0 = alone[0]->decode(d0, pool);
    for (int64_t v = 0; v < 64; ++v) ASSERT_NEAR(batched[0]->last_logits()[v], a0[v], 1e-4);
    const auto a2 = alone[2]->decode(d2, pool);
    for (int64_t v = 0; v < 64; ++v) ASSERT_NEAR(out2[v], a2[v], 1e-4);
    EXPECT_EQ(batched[1]->n_past(), 12);
  }
}

TEST(Synthetic, SharedPrefixIsReused) {
  const SynthModel m = make_synth({});  // the model borrows m.gguf: keep it alive
  const auto model = load(m);
  ThreadPool pool(1);
  const auto prefix = some_tokens(10, 64);
  model::Session a(*model, {});
  a.feed(prefix, pool);
  const std::vector<int32_t> tail = {5, 6, 7};
  model::Session b(*model, {});
  b.copy_prefix(a, 10);
  b.feed(tail, pool);
  model::Session c(*model, {});
  std::vector<int32_t> whole = prefix;
  whole.insert(whole.end(), tail.begin(), tail.end());
  c.feed(whole, pool);
  for (int64_t v = 0; v < 64; ++v) ASSERT_NEAR(b.last_logits()[v], c.last_logits()[v], 1e-5) << v;
}

TEST(Synthetic, ContextBeyondTrainingIsRefusedUnlessAllowed) {
  const SynthModel m = make_synth({});  // trained context 64
  const auto model = load(m);
  model::SessionOptions so;
  so.n_ctx = 100;
  EXPECT_THROW(model::Session(*model, so), Error);
  so.allow_beyond_train_ctx = true;
  model::Session session(*model, so);
  ThreadPool pool(1);
  const auto tokens = some_tokens(90, 64);
  std::vector<float> got;
  session.feed(tokens, pool, &got);
  EXPECT_EQ(session.n_past(), 90);
  // A full context is an error, not silent truncation.
  EXPECT_THROW(session.feed(some_tokens(11, 64), pool), Error);
  EXPECT_EQ(session.n_past(), 90);
  session.feed(some_tokens(10, 64), pool);
  EXPECT_EQ(session.n_past(), 100);
}

TEST(Synthetic, BadTokenIdsAreRefused) {
  const SynthModel m = make_synth({});
  const auto model = load(m);
  model::Session session(*model, {});
  ThreadPool pool(1);
  EXPECT_THROW(session.feed(std::vector<int32_t>{1, 64}, pool), Error);
  EXPECT_THROW(session.feed(std::vector<int32_t>{-1}, pool), Error);
  EXPECT_THROW(session.feed(std::vector<int32_t>{}, pool), Error);
  EXPECT_EQ(session.n_past(), 0);
}

TEST(Synthetic, HostileConfigsAreRefusedWithTheKeyNamed) {
  SynthSpec s;
  s.n_head_kv = 3;  // does not divide 4 heads
  try {
    load(make_synth(s));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("attention.head_count_kv"), std::string::npos) << e.what();
  }
  gguf::Writer u;
  u.add_string("general.architecture", "gpt-j");
  try {
    model::Model::from_file(gguf::File::parse(u.to_bytes(), "gpt-j.gguf"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported architecture 'gpt-j'"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace slm::test

namespace slm::test {
namespace {

// Quantization mixes of slm synth follow llama.cpp's recipe (model/quant_mix.h;
// the full tables are in test_quantize.cpp).
TEST(SynthMix, KQuantMixAndFallbacks) {
  const model::MixModelFacts m{24, 0, 4, true};
  auto mix_type = [&](const char* mix, const char* tensor, int64_t row_len) {
    return model::mix_type(*model::find_quant_mix(mix), tensor, row_len, m);
  };
  EXPECT_EQ(mix_type("Q4_K_M", "blk.0.attn_q.weight", 2048), DType::Q4_K);
  EXPECT_EQ(mix_type("Q4_K_M", "blk.0.attn_v.weight", 2048), DType::Q6_K);    // first eighth
  EXPECT_EQ(mix_type("Q4_K_M", "blk.4.ffn_down.weight", 2048), DType::Q4_K);  // (4-3)%3 != 2
  EXPECT_EQ(mix_type("Q4_K_M", "blk.5.ffn_down.weight", 2048), DType::Q6_K);  // every third
  EXPECT_EQ(mix_type("Q4_K_M", "output.weight", 2048), DType::Q6_K);
  // 896-wide rows cannot hold 256-element K blocks.
  EXPECT_EQ(mix_type("Q4_K_M", "blk.1.attn_q.weight", 896), DType::Q5_0);
  EXPECT_EQ(mix_type("Q4_K_M", "output.weight", 896), DType::Q8_0);
  EXPECT_EQ(mix_type("Q4_0", "output.weight", 896), DType::Q8_0);  // Q6_K does not fit 896
  EXPECT_EQ(mix_type("Q4_0", "blk.0.ffn_up.weight", 896), DType::Q4_0);
  EXPECT_EQ(mix_type("Q8_0", "output.weight", 896), DType::Q8_0);
  EXPECT_FALSE(model::is_quantizable("blk.0.ffn_gate_inp.weight", 2));  // routers stay F32
  EXPECT_EQ(model::find_quant_mix("Q9_9"), nullptr);
  ThreadPool pool(1);
  EXPECT_THROW(model::synth_bytes(model::find_synth_shape("qwen2.5-0.5b"), "Q9_9", 1, pool), Error);
}

// `slm synth --list` shows synth_file_size as each shape's size per type: it
// is the size of the file write_synth makes, for every mix (shrunk shapes of
// a dense and an MoE family keep the test fast; the arithmetic is the same).
TEST(Synthetic, EstimatedFileSizeIsTheWrittenSize) {
  ThreadPool pool(2);
  for (const char* name : {"qwen2.5-0.5b", "moe-1.3b", "gemma-3-1b"}) {
    model::SynthShape small = model::find_synth_shape(name);
    small.n_vocab = 1024;
    small.n_layer = 2;
    small.n_ff = 512;
    if (small.n_ff_expert > 0) small.n_ff_expert = 256;
    if (small.n_expert > 0) {
      small.n_expert = 4;
      small.n_expert_used = 2;
    }
    for (const char* mix : {"F16", "Q8_0", "Q4_K_M"})
      EXPECT_EQ(model::synth_file_size(small, mix), model::synth_bytes(small, mix, 1, pool).size())
          << name << " " << mix;
  }
}

}  // namespace
}  // namespace slm::test
