// Dynamic pruning (model/sparsity.h, model/calibrate.h): thresholds of zero
// are bit-identical to dense, calibrated thresholds zero the share asked for,
// each token keeps its own mask in batched steps, the sparsity file refuses
// other models and survives truncation and corruption (one slm::Error, never
// a crash), and MoE expert skipping (--moe-top-k, --moe-min-weight) matches
// its references.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "base/error.h"
#include "base/thread_pool.h"
#include "common/fixtures.h"
#include "gguf/writer.h"
#include "kernels/kernels.h"
#include "model/calibrate.h"
#include "model/decode_step.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/session.h"
#include "model/sparsity.h"
#include "model/synth.h"
#include "model/synthetic.h"

namespace slm::test {
namespace {

// Whether this CPU runs int8 column kernels for the copies of a model of
// this mix (AVX-512 with VBMI: every copy type; AVX2: Q4_0 and Q8_0), which
// pay at the levels these tests use; elsewhere set_prune builds a copy only
// where its kernel may beat the dense one (CopiesOnlyWhereTheyMayPay).
bool int8_columns(const std::string& mix) {
  if (kernels::axpy_cols_algo(kernels::active_isa()) != kernels::ColsAlgo::kInt8) return false;
  return kernels::ColumnMatrix::pays_below(DType::Q5_0) > 0 || mix == "Q8_0" || mix == "Q4_0";
}
// Whether this CPU has any column kernel (none on scalar and NEON: no copies are built there).
bool any_column_kernels() {
  return kernels::ColumnMatrix::pays_below(DType::Q8_0) > 0;
}

std::vector<int32_t> some_tokens(int64_t n, int64_t vocab, int64_t salt = 11) {
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 37 + salt) % vocab);
  return t;
}

std::unique_ptr<model::Model> load(const SynthModel& m) {
  return model::Model::from_file(gguf::File::parse(m.gguf, "synthetic.gguf"));
}

std::vector<float> logits(const model::Model& model, const std::vector<int32_t>& tokens,
                          int64_t n_batch = 7) {
  model::SessionOptions so;
  so.n_batch = n_batch;
  model::Session s(model, so);
  ThreadPool pool(2);
  std::vector<float> out;
  s.feed(tokens, pool, &out);
  return out;
}

model::Sparsity uniform(const model::Model& m, float thr,
                        model::FfnRule rule = model::FfnRule::kTeal) {
  model::Sparsity s;
  s.level = 0.5f;
  s.ffn_rule = rule;
  s.base_hash = model::weights_hash(m.file());
  s.thresholds.assign(static_cast<size_t>(m.config().n_layer), {thr, thr, thr, thr, thr});
  return s;
}

void set_sparsity(model::Model& m, model::Sparsity s) {
  model::PruneOptions p;
  p.sparsity = std::make_shared<const model::Sparsity>(std::move(s));
  m.set_prune(p);
}

// The keys and tensor of a sparsity file as written before head pruning
// (Sparsity::to_bytes' layout without sparsity.head_threshold).
gguf::Writer head_writer(const model::Sparsity& s) {
  gguf::Writer w;
  w.add_string("general.type", "sparsity");
  w.add_f32("sparsity.level", s.level);
  w.add_string("sparsity.ffn_rule", s.ffn_rule == model::FfnRule::kCats ? "cats" : "teal");
  w.add_string("sparsity.base_hash", s.base_hash);
  w.add_u32("sparsity.n_layer", static_cast<uint32_t>(s.thresholds.size()));
  const auto* p = reinterpret_cast<const uint8_t*>(s.thresholds.data());
  w.add_tensor("sparsity.thresholds", DType::F32,
               {model::kNumTaps, static_cast<int64_t>(s.thresholds.size())},
               std::span<const uint8_t>(p, s.thresholds.size() * sizeof(s.thresholds[0])));
  return w;
}

// Every row's input of the output matrix (the final norm's output) as the
// forward pass shows it to a tap: [rows][n_embd].
struct HeadInputs final : model::ActivationTap {
  std::vector<float> rows;
  void on_activation(int64_t, model::Tap t, const float* x, int64_t n, int64_t width) override {
    if (t == model::Tap::kHeadIn) rows.assign(x, x + n * width);
  }
};

// Logits of every row of tokens fed as one step ([rows][n_vocab]), and the
// head's inputs that step saw.
std::vector<float> step_logits(const model::Model& m, const std::vector<int32_t>& tokens,
                               HeadInputs* tap = nullptr) {
  model::Session s(m, {});
  model::Scratch scratch(m.config(), static_cast<int64_t>(tokens.size()));
  scratch.set_tap(tap);
  ThreadPool pool(2);
  std::vector<float> out(tokens.size() * static_cast<size_t>(m.config().n_vocab));
  const model::SeqChunk chunk{&s, tokens, out.data(), true, nullptr, nullptr};
  model::forward(m, std::span<const model::SeqChunk>(&chunk, 1), scratch, pool);
  return out;
}

// The reference of head pruning: the dense model's head inputs with every
// |x| < thr set to zero, through the output matrix by the dense kernels.
std::vector<float> zeroed_head_reference(const model::Model& dense,
                                         const std::vector<int32_t>& tokens, float thr,
                                         double* share_zeroed) {
  HeadInputs h;
  step_logits(dense, tokens, &h);
  const int64_t n = static_cast<int64_t>(tokens.size());
  EXPECT_EQ(h.rows.size(), static_cast<size_t>(n * dense.config().n_embd));
  size_t z = 0;
  for (float& v : h.rows)
    if (std::fabs(v) < thr) {
      v = 0;
      ++z;
    }
  *share_zeroed = static_cast<double>(z) / static_cast<double>(h.rows.size());
  std::vector<float> ref(static_cast<size_t>(n * dense.config().n_vocab));
  ThreadPool pool(2);
  backend::Workspace ws;
  ws.pool = &pool;
  dense.backend().linear(dense.weights().output, h.rows.data(), n, ref.data(), ws);
  return ref;
}

// A tied-head llama of mix (2 layers, n_embd 256, n_vocab 320) loaded twice
// from the same bytes: dense as made, pruned with thresholds calibrated on
// tokens for the head's inputs only (head_sparsity of them zeroed; the
// layers' thresholds 0).
struct HeadPruned {
  std::vector<uint8_t> bytes;  // what both models read: declared first, freed last
  std::unique_ptr<model::Model> dense, pruned;
  model::Sparsity sparsity;
};

HeadPruned head_pruned(const std::string& mix, const std::vector<int32_t>& tokens,
                       float head_sparsity, ThreadPool& pool) {
  const model::SynthShape shape{"t", "llama", 2, 256, 4, 2, 0, 256, 320, 64, 1e4f, 1e-5f, true};
  HeadPruned h;
  h.bytes = model::synth_bytes(shape, mix, 5, pool);
  h.dense = model::Model::from_file(gguf::File::parse(h.bytes, "q.gguf"));
  h.pruned = model::Model::from_file(gguf::File::parse(h.bytes, "q.gguf"));
  model::CalibrateOptions o;
  o.sparsity = 0;
  o.head_sparsity = head_sparsity;
  h.sparsity = model::calibrate(*h.pruned, tokens, o, pool);
  set_sparsity(*h.pruned, h.sparsity);
  return h;
}

TEST(Sparsity, ZeroThresholdsAreBitIdenticalToDense) {
  const SynthModel sm = make_synth({});
  const auto tokens = some_tokens(20, 64);
  const auto dense_model = load(sm);
  const std::vector<float> dense = logits(*dense_model, tokens);
  for (const model::FfnRule rule : {model::FfnRule::kTeal, model::FfnRule::kCats}) {
    const auto m = load(sm);
    set_sparsity(*m, uniform(*m, 0.0f, rule));
    const std::vector<float> got = logits(*m, tokens);
    ASSERT_EQ(got.size(), dense.size());
    EXPECT_EQ(0, std::memcmp(got.data(), dense.data(), dense.size() * sizeof(float)));
  }
}

// Counts what the pruning zeroed over one pass (forward's PruneStats).
double achieved(const model::Model& m, const std::vector<int32_t>& tokens) {
  model::Session s(m, {});
  model::Scratch scratch(m.config(), static_cast<int64_t>(tokens.size()));
  ThreadPool pool(2);
  const model::SeqChunk chunk{&s, tokens, nullptr, false, nullptr, nullptr};
  model::forward(m, std::span<const model::SeqChunk>(&chunk, 1), scratch, pool);
  const model::PruneStats& st = scratch.prune_stats();
  EXPECT_GT(st.total, 0u);
  return static_cast<double>(st.zeroed) / static_cast<double>(st.total);
}

TEST(Sparsity, CalibratedThresholdsZeroTheRequestedShare) {
  const SynthModel sm = make_synth({});
  const auto tokens = some_tokens(40, 64);
  for (const float level : {0.25f, 0.5f}) {
    const auto m = load(sm);
    ThreadPool pool(2);
    model::CalibrateOptions o;
    o.sparsity = level;
    const model::Sparsity s = model::calibrate(*m, tokens, o, pool);
    ASSERT_EQ(s.thresholds.size(), 2u);
    for (const auto& layer : s.thresholds)
      for (const float t : layer) EXPECT_GT(t, 0.0f);
    set_sparsity(*m, s);
    // On the calibration text itself: the quantile's share, up to the
    // histogram's bin width and the feedback of earlier layers' pruning.
    EXPECT_NEAR(achieved(*m, tokens), level, 0.06) << level;
  }
}

TEST(Sparsity, HigherSparsityDriftsFurtherFromDense) {
  const SynthModel sm = make_synth({});
  const auto tokens = some_tokens(40, 64);
  const std::vector<float> dense = logits(*load(sm), tokens);
  double last = 0;
  for (const float level : {0.2f, 0.6f}) {
    const auto m = load(sm);
    ThreadPool pool(2);
    model::CalibrateOptions o;
    o.sparsity = level;
    set_sparsity(*m, model::calibrate(*m, tokens, o, pool));
    const std::vector<float> got = logits(*m, tokens);
    double err = 0;
    for (size_t i = 0; i < got.size(); ++i) err += std::fabs(got[i] - dense[i]);
    EXPECT_GT(err, last) << level;
    last = err;
  }
}

// Each token is pruned by its own activations: the same tokens fed in one
// chunk, in chunks of 7 and one at a time agree.
TEST(Sparsity, EachTokenKeepsItsOwnMask) {
  for (const model::FfnRule rule : {model::FfnRule::kTeal, model::FfnRule::kCats}) {
    const SynthModel sm = make_synth({});
    const auto tokens = some_tokens(24, 64);
    const auto m = load(sm);
    ThreadPool pool(2);
    model::CalibrateOptions o;
    o.sparsity = 0.5f;
    o.ffn_rule = rule;
    set_sparsity(*m, model::calibrate(*m, tokens, o, pool));
    const std::vector<float> all = logits(*m, tokens, 24);
    const std::vector<float> chunked = logits(*m, tokens, 7);
    const std::vector<float> single = logits(*m, tokens, 1);
    ASSERT_EQ(all.size(), single.size());
    for (size_t i = 0; i < all.size(); ++i) {
      ASSERT_NEAR(all[i], chunked[i], 1e-4) << i;
      ASSERT_NEAR(all[i], single[i], 1e-4) << i;
    }
  }
}

// A decoding step of several sequences (one row each, the server's
// continuous batching) prunes each row by its own activations, never by the
// union of the rows' masks: every sequence's logits equal its step alone bit
// for bit (F32 weights: no column copies, the same dense kernels), and the
// step counts the zeroed inputs of its rows (what /metrics reports).
TEST(Sparsity, BatchedDecodeStepPrunesEachRowOnItsOwn) {
  const SynthModel sm = make_synth({});
  const auto m = load(sm);
  ThreadPool pool(2);
  model::CalibrateOptions o;
  o.sparsity = 0.5f;
  o.head_sparsity = 0.5f;  // the head's inputs too, each row by its own
  set_sparsity(*m, model::calibrate(*m, some_tokens(32, 64), o, pool));
  ASSERT_GT(m->prune().sparsity->head_threshold, 0.0f);
  constexpr int kSeqs = 3;
  model::SessionOptions so;
  so.n_ctx = 32;
  std::vector<std::unique_ptr<model::Session>> owned;
  std::vector<model::Session*> batched, alone;  // the same prompts in two sets of sessions
  for (int i = 0; i < kSeqs; ++i) {
    const auto prompt = some_tokens(4 + i, 64, 5 * i + 1);
    for (auto* set : {&batched, &alone}) {
      owned.push_back(std::make_unique<model::Session>(*m, so));
      owned.back()->feed(prompt, pool, nullptr);
      set->push_back(owned.back().get());
    }
  }
  const std::vector<int32_t> next = {7, 23, 41};
  model::Scratch step(m->config(), 8);
  const std::vector<std::vector<float>> got = decode_step(*m, batched, next, step, pool);
  uint64_t zeroed = 0, total = 0;
  for (size_t i = 0; i < alone.size(); ++i) {
    model::Scratch one(m->config(), 8);
    const std::vector<std::vector<float>> want =
        decode_step(*m, std::span(alone).subspan(i, 1), std::span(next).subspan(i, 1), one, pool);
    EXPECT_EQ(got[i], want[0]) << "sequence " << i;
    zeroed += one.prune_stats().zeroed;
    total += one.prune_stats().total;
  }
  EXPECT_EQ(step.prune_stats().zeroed, zeroed);
  EXPECT_EQ(step.prune_stats().total, total);
  const double share = static_cast<double>(zeroed) / static_cast<double>(total);
  EXPECT_GT(share, 0.25);
  EXPECT_LT(share, 0.75);
}

// Decoding one token reads the pruned matrices through their column copies
// (Q8_0, Q5_0, Q4_0, K-quants); a step of many rows multiplies the zeroed inputs densely.
// Both give the same logits up to the copy's requantization.
TEST(Sparsity, ColumnCopiesAgreeWithDenseOverZeroedInputs) {
  if (!int8_columns("Q8_0")) GTEST_SKIP() << "no int8 column kernels on this CPU";
  // 256 wide so that K-quants fill their super-blocks (Q4_K_M: Q4_K with
  // Q6_K for v and some downs, copied as Q5_0 and Q8_0).
  const model::SynthShape shape{"t", "llama", 2, 256, 4, 2, 0, 256, 300, 64, 1e4f, 1e-5f, false};
  for (const std::string mix : {"Q8_0", "Q4_0", "Q5_0", "Q4_K_M"}) {
    if (!int8_columns(mix)) continue;
    ThreadPool pool(2);
    const std::vector<uint8_t> bytes = model::synth_bytes(shape, mix, 3, pool);
    const auto m = model::Model::from_file(gguf::File::parse(bytes, "q.gguf"));
    const auto tokens = some_tokens(24, 300);
    const std::vector<float> dense = logits(*m, tokens, 24);
    model::CalibrateOptions o;
    o.sparsity = 0.5f;
    set_sparsity(*m, model::calibrate(*m, tokens, o, pool));
    EXPECT_GT(m->column_bytes(), 0u) << mix;
    const std::vector<float> batched = logits(*m, tokens, 24);  // dense kernels, zeroed inputs
    const std::vector<float> decoded = logits(*m, tokens, 1);   // column copies
    double scale = 0, diff = 0, drift = 0;
    for (size_t i = 0; i < dense.size(); ++i) {
      scale += std::fabs(dense[i]);
      diff += std::fabs(decoded[i] - batched[i]);
      drift += std::fabs(batched[i] - dense[i]);
    }
    // The copy's rounding (Q8_0: about 0.5% per product; Q4_0: up to a
    // step) moves some activations of this random model across a threshold,
    // which later layers amplify; it stays below what pruning itself does.
    EXPECT_LT(diff, (mix == "Q8_0" ? 0.5 : 1.0) * drift) << mix;
    EXPECT_GT(diff, 0.0) << mix << ": decoding did not go through the copies";
    EXPECT_LT(diff, 0.5 * scale) << mix;
  }
}

// On AVX2 (int8 column kernels for Q4_0 and Q8_0 only) set_prune builds a
// copy only where a token's kept share may fall below its cut-off: at half
// the inputs pruned a Q5_0 model gets none (no AVX2 code runs its copies) and
// decodes through the dense kernels on the zeroed inputs, the same bits as a
// pass of one token through them; Q4_0 and Q8_0 models get and use them.
TEST(Sparsity, CopiesOnlyWhereTheyMayPay) {
  const auto isas = kernels::available_isas();
  if (std::find(isas.begin(), isas.end(), kernels::Isa::kAvx2) == isas.end())
    GTEST_SKIP() << "no AVX2 on this CPU";
  const kernels::Isa before = kernels::active_isa();
  ASSERT_TRUE(kernels::set_active_isa(kernels::Isa::kAvx2));
  const model::SynthShape shape{"t", "llama", 2, 256, 4, 2, 0, 256, 300, 64, 1e4f, 1e-5f, false};
  ThreadPool pool(2);
  const auto tokens = some_tokens(24, 300);
  using P = model::StepProfile;
  // Column products of one decoded token after the prompt.
  auto column_calls = [&](const model::Model& m) {
    P prof;
    model::Session s(m, {});
    model::Scratch scratch(m.config(), 24);
    model::forward(m,
                   std::span<const model::SeqChunk>(std::vector<model::SeqChunk>{
                       {&s, tokens, nullptr, false, nullptr, nullptr}}),
                   scratch, pool);
    scratch.set_profile(&prof);
    const int32_t next = 5;
    const model::SeqChunk one{&s,     std::span<const int32_t>(&next, 1), nullptr, false, nullptr,
                              nullptr};
    model::forward(m, std::span<const model::SeqChunk>(&one, 1), scratch, pool);
    uint64_t n = 0;
    for (const P::Part part : {P::kQkv, P::kO, P::kGateUp, P::kDown}) n += prof.calls[part][1];
    return n;
  };
  for (const auto& [mix, level, copies] :
       {std::tuple{"Q5_0", 0.5f, false}, std::tuple{"Q8_0", 0.5f, true},
        std::tuple{"Q4_0", 0.5f, true}}) {
    const std::vector<uint8_t> bytes = model::synth_bytes(shape, mix, 3, pool);
    const auto m = model::Model::from_file(gguf::File::parse(bytes, "q.gguf"));
    model::CalibrateOptions o;
    o.sparsity = level;
    set_sparsity(*m, model::calibrate(*m, tokens, o, pool));
    EXPECT_EQ(m->column_bytes() > 0, copies) << mix << " at " << level;
    EXPECT_EQ(column_calls(*m) > 0, copies) << mix << " at " << level;
    if (!copies) {
      // One token per step through the dense kernels equals a step of all of them.
      EXPECT_EQ(logits(*m, tokens, 1), logits(*m, tokens, 24)) << mix;
    }
  }
  kernels::set_active_isa(before);
}

// set_prune builds the copies (stacked groups, single matrices, the head)
// on several threads: the same copies, so decoding gives the same bits.
TEST(Sparsity, CopiesBuiltOnSeveralThreadsDecodeTheSameBits) {
  if (!any_column_kernels()) GTEST_SKIP() << "no column kernels on this CPU";
  // (a vocabulary of 320: the head's rows a multiple of 32, as its copy needs)
  const model::SynthShape shape{"t", "llama", 3, 256, 4, 2, 0, 256, 320, 64, 1e4f, 1e-5f, false};
  ThreadPool pool(2);
  const std::vector<uint8_t> bytes = model::synth_bytes(shape, "Q4_K_M", 5, pool);
  const auto tokens = some_tokens(12, 320);
  std::vector<float> one;
  size_t one_bytes = 0;
  for (int threads : {1, 3, 64}) {
    const auto m = model::Model::from_file(gguf::File::parse(bytes, "q.gguf"));
    model::Sparsity sp = uniform(*m, 0.02f);
    sp.head_threshold = 0.02f;
    model::PruneOptions p;
    p.sparsity = std::make_shared<const model::Sparsity>(std::move(sp));
    p.threads = threads;
    m->set_prune(p);
    ASSERT_NE(m->weights().output.columns, nullptr);
    ASSERT_NE(m->weights().layers[2].ffn_down.columns, nullptr);
    const std::vector<float> decoded = logits(*m, tokens, 1);
    if (threads == 1) {
      one = decoded;
      one_bytes = m->column_bytes();
      continue;
    }
    EXPECT_EQ(m->column_bytes(), one_bytes) << threads;
    ASSERT_EQ(decoded.size(), one.size());
    EXPECT_EQ(std::memcmp(decoded.data(), one.data(), one.size() * sizeof(float)), 0) << threads;
  }
}

// The backend's stacked copy of a group that reads one input (q/k/v:
// Q4_0, or Q4_K and Q5_K, both copied as Q5_0) against each matrix's own
// copy: the group's product, and any one matrix asked for alone, bit for
// bit; the parts' shares of the bytes add up to the copies alone. A group
// of two copy types (Q5_0 and Q8_0: copied matrix by matrix) as well.
TEST(Sparsity, StackedColumnCopiesEqualEachMatrixsOwn) {
  const int64_t cols = 256;
  const std::vector<std::vector<std::pair<DType, int64_t>>> groups = {
      {{DType::Q4_0, 256}, {DType::Q4_0, 64}, {DType::Q4_0, 64}},
      {{DType::Q4_K, 128}, {DType::Q5_K, 32}},
      {{DType::Q4_K, 128}, {DType::Q6_K, 32}}};
  const backend::Backend& be = backend::cpu();
  ThreadPool pool(2);
  backend::Workspace ws;
  ws.pool = &pool;
  std::mt19937 rng(8);
  std::normal_distribution<float> dist(0, 1);
  std::vector<float> x(static_cast<size_t>(cols));
  for (float& v : x) v = dist(rng);
  std::vector<int32_t> idx;
  for (int32_t i = 0; i < cols; ++i)
    if (std::fabs(x[static_cast<size_t>(i)]) > 0.8f)
      idx.push_back(i);
    else
      x[static_cast<size_t>(i)] = 0;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const auto& g = groups[gi];
    std::vector<std::vector<uint8_t>> bytes;
    std::vector<backend::Linear> st(g.size()), own(g.size());
    std::vector<backend::Linear*> group;
    for (size_t i = 0; i < g.size(); ++i) {
      const auto [t, rows] = g[i];
      std::vector<float> w(static_cast<size_t>(rows * cols));
      for (float& v : w) v = dist(rng);
      const size_t rb = static_cast<size_t>(row_bytes(t, cols));
      bytes.emplace_back(rb * static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r)
        kernels::traits(kernels::Isa::kScalar, t)
            .quantize_row(w.data() + r * cols, bytes.back().data() + r * rb, cols);
      st[i].view = own[i].view = {t, bytes.back().data(), rows, cols};
      group.push_back(&st[i]);
      ASSERT_TRUE(be.prepare_columns(own[i]));
    }
    ASSERT_TRUE(be.prepare_columns(std::span<backend::Linear* const>(group)));
    size_t shares = 0, alone = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      ASSERT_NE(st[i].columns, nullptr);
      shares += st[i].columns->size_bytes();
      alone += own[i].columns->size_bytes();
    }
    EXPECT_EQ(shares, alone) << gi;  // stacked or not, the same bytes
    std::vector<std::vector<float>> ys(g.size()), want(g.size());
    std::vector<backend::LinearOut> outs;
    for (size_t i = 0; i < g.size(); ++i) {
      ys[i].assign(static_cast<size_t>(g[i].second), NAN);
      want[i].assign(ys[i].size(), NAN);
      outs.push_back({&st[i], ys[i].data()});
      be.linear_columns(own[i], x.data(), idx, want[i].data(), ws);
    }
    be.linear_columns(outs, x.data(), idx, ws);
    for (size_t i = 0; i < g.size(); ++i) {
      for (float v : want[i]) ASSERT_FALSE(std::isnan(v));
      EXPECT_EQ(0, std::memcmp(ys[i].data(), want[i].data(), want[i].size() * sizeof(float)))
          << "group " << gi << " matrix " << i;
      std::vector<float> one(want[i].size(), NAN);
      be.linear_columns(st[i], x.data(), idx, one.data(), ws);
      EXPECT_EQ(0, std::memcmp(one.data(), want[i].data(), want[i].size() * sizeof(float)))
          << "group " << gi << " matrix " << i << " alone";
    }
    // Reversed order: not the stack's, so each out goes its own way.
    std::vector<backend::LinearOut> rev(outs.rbegin(), outs.rend());
    for (auto& y : ys) std::fill(y.begin(), y.end(), NAN);
    be.linear_columns(rev, x.data(), idx, ws);
    for (size_t i = 0; i < g.size(); ++i)
      EXPECT_EQ(0, std::memcmp(ys[i].data(), want[i].data(), want[i].size() * sizeof(float)))
          << "group " << gi << " matrix " << i << " reversed";
  }
}

TEST(Sparsity, FileRoundTripsAndRefusesOtherModels) {
  const SynthModel a = make_synth({});
  SynthSpec other;
  other.seed = 2;
  const SynthModel b = make_synth(other);
  const auto ma = load(a), mb = load(b);
  EXPECT_NE(model::weights_hash(ma->file()), model::weights_hash(mb->file()));
  model::Sparsity s = uniform(*ma, 0.25f, model::FfnRule::kCats);
  s.thresholds[1][3] = 0.5f;
  const std::vector<uint8_t> bytes = s.to_bytes();
  const model::Sparsity r = model::Sparsity::parse(bytes, "s.gguf");
  EXPECT_EQ(r.base_hash, s.base_hash);
  EXPECT_EQ(r.ffn_rule, model::FfnRule::kCats);
  EXPECT_EQ(r.thresholds, s.thresholds);
  EXPECT_FLOAT_EQ(r.level, 0.5f);
  EXPECT_NO_THROW(r.check_base(*ma, "s.gguf"));
  try {
    r.check_base(*mb, "s.gguf");
    FAIL() << "accepted another model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("calibrated for another model"), std::string::npos)
        << e.what();
  }
  // Through set_prune too.
  model::PruneOptions p;
  p.sparsity = std::make_shared<const model::Sparsity>(r);
  EXPECT_THROW(mb->set_prune(p), Error);
}

TEST(Sparsity, RefusesBadValuesNamingThem) {
  const SynthModel a = make_synth({});
  const auto m = load(a);
  model::Sparsity s = uniform(*m, 0.1f);
  s.thresholds[0][2] = -1.0f;
  try {
    model::Sparsity::parse(s.to_bytes(), "bad.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ffn_in"), std::string::npos) << e.what();
  }
  s.thresholds[0][2] = NAN;
  EXPECT_THROW(model::Sparsity::parse(s.to_bytes(), "bad.gguf"), Error);
  // A model file is not a sparsity file.
  EXPECT_THROW(model::Sparsity::parse(a.gguf, "model.gguf"), Error);
  // The head's threshold: negative, infinite, NaN or not a number at all.
  s.thresholds[0][2] = 0.1f;
  for (const float bad : {-0.5f, INFINITY, NAN}) {
    gguf::Writer w = head_writer(s);
    w.add_f32("sparsity.head_threshold", bad);
    try {
      model::Sparsity::parse(w.to_bytes(), "bad.gguf");
      FAIL() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("sparsity.head_threshold"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("bad.gguf"), std::string::npos) << e.what();
    }
  }
  gguf::Writer w = head_writer(s);
  w.add_string("sparsity.head_threshold", "0.5");
  EXPECT_THROW(model::Sparsity::parse(w.to_bytes(), "bad.gguf"), Error);
}

// A file written before head pruning existed (the keys and tensor only, no
// sparsity.head_threshold) still loads, prunes the layers as before and
// leaves the head dense: no head copy, and the same logits as a file whose
// head threshold is 0.
TEST(Sparsity, OldFormatFileStillLoadsWithADenseHead) {
  if (!any_column_kernels()) GTEST_SKIP() << "no column kernels on this CPU";
  const model::SynthShape shape{"t", "llama", 2, 64, 4, 2, 0, 96, 320, 64, 1e4f, 1e-5f, true};
  ThreadPool pool(2);
  const std::vector<uint8_t> bytes = model::synth_bytes(shape, "Q8_0", 3, pool);
  const auto tokens = some_tokens(12, 320);
  const auto cal = model::Model::from_file(gguf::File::parse(bytes, "q.gguf"));
  model::CalibrateOptions o;
  o.sparsity = 0.4f;
  o.head_sparsity = 0.4f;
  const model::Sparsity now = model::calibrate(*cal, tokens, o, pool);
  ASSERT_GT(now.head_threshold, 0.0f);
  const std::vector<uint8_t> old_file = head_writer(now).to_bytes();  // what the old writer wrote
  const model::Sparsity old = model::Sparsity::parse(old_file, "old.gguf");
  EXPECT_EQ(old.thresholds, now.thresholds);
  EXPECT_EQ(old.head_threshold, 0.0f);
  model::Sparsity no_head = now;
  no_head.head_threshold = 0;
  EXPECT_EQ(no_head.to_bytes(), old_file);  // a file without head pruning is the old format
  auto run = [&](const model::Sparsity& sp, size_t* column_bytes) {
    const auto m = model::Model::from_file(gguf::File::parse(bytes, "q.gguf"));
    set_sparsity(*m, sp);
    *column_bytes = m->column_bytes();
    return logits(*m, tokens, 1);
  };
  size_t old_bytes = 0, zero_bytes = 0, head_bytes = 0;
  const std::vector<float> a = run(old, &old_bytes), b = run(no_head, &zero_bytes);
  const std::vector<float> c = run(now, &head_bytes);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  EXPECT_EQ(old_bytes, zero_bytes);
  // The head's copy: Q8_0 [n_vocab, n_embd] as Q8_0 columns, 34 bytes per 32 weights.
  EXPECT_EQ(head_bytes - old_bytes, static_cast<size_t>(320 / 32 * 34 * 64));
  EXPECT_NE(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float)));
}

// Fuzz-style: every truncation and many random corruptions of a valid file
// either parse to valid thresholds or throw slm::Error; nothing else.
TEST(Sparsity, FuzzedFilesGiveOneErrorNeverACrash) {
  const SynthModel a = make_synth({});
  const auto m = load(a);
  model::Sparsity orig = uniform(*m, 0.3f);
  orig.head_threshold = 0.2f;  // the optional key is fuzzed too
  const std::vector<uint8_t> good = orig.to_bytes();
  auto try_parse = [&](const std::vector<uint8_t>& bytes, bool must_match) {
    try {
      const model::Sparsity s = model::Sparsity::parse(bytes, "fuzz.gguf");
      for (const auto& layer : s.thresholds)
        for (const float t : layer) EXPECT_TRUE(std::isfinite(t) && t >= 0);
      EXPECT_TRUE(std::isfinite(s.head_threshold) && s.head_threshold >= 0);
      if (must_match) {
        EXPECT_EQ(s.thresholds, orig.thresholds);
        EXPECT_EQ(s.head_threshold, orig.head_threshold);
      }
      return 0;
    } catch (const Error&) {
      return 1;
    }
  };
  // Only the writer's trailing alignment padding (under 32 bytes) may be
  // cut without an error, and then nothing read changes.
  size_t shortest_ok = good.size();
  for (size_t n = 0; n < good.size(); ++n)
    if (try_parse(std::vector<uint8_t>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)),
                  true) == 0)
      shortest_ok = std::min(shortest_ok, n);
  EXPECT_GT(shortest_ok + 32, good.size());
  std::mt19937 rng(7);
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> bad = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) bad[rng() % bad.size()] = static_cast<uint8_t>(rng());
    try_parse(bad, false);
  }
}

// Head pruning alone (layer thresholds 0, so the head's inputs are the
// dense model's): the logits equal the zeroed inputs' product by the dense
// output matrix bit for bit (F32: every row goes through the dense kernels),
// and the step counts what the head zeroed.
TEST(Sparsity, HeadPruningMatchesZeroedInputsThroughTheDenseHead) {
  const SynthModel sm = make_synth({});
  const auto tokens = some_tokens(20, 64);
  const auto dense = load(sm);
  const auto m = load(sm);
  ThreadPool pool(2);
  model::CalibrateOptions o;
  o.sparsity = 0;  // layers dense
  o.head_sparsity = 0.5f;
  model::Sparsity sp = model::calibrate(*m, tokens, o, pool);
  for (const auto& layer : sp.thresholds)
    for (const float t : layer) ASSERT_EQ(t, 0.0f);
  ASSERT_GT(sp.head_threshold, 0.0f);
  set_sparsity(*m, sp);
  double share = 0;
  const std::vector<float> want = zeroed_head_reference(*dense, tokens, sp.head_threshold, &share);
  EXPECT_NEAR(share, 0.5, 0.06);  // calibrated on these tokens: the quantile's share
  const std::vector<float> got = step_logits(*m, tokens);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)));
  const std::vector<float> unpruned = step_logits(*dense, tokens);
  EXPECT_NE(0, std::memcmp(got.data(), unpruned.data(), got.size() * sizeof(float)));
  // One token per step (decoding: one row through the head at a time).
  const std::vector<float> per_token = logits(*m, tokens, 1);
  ASSERT_EQ(per_token.size(), want.size());
  EXPECT_EQ(0, std::memcmp(per_token.data(), want.data(), want.size() * sizeof(float)));
}

// The same through the head's column copy: a tied Q8_0 output matrix (the
// embedding table, whose lookup keeps reading the original) decoded one
// token at a time reads only the kept inputs' columns. It agrees with the
// reference up to the summation order and the dense kernels' Q8 activations,
// far closer than pruning moves the logits.
TEST(Sparsity, HeadColumnCopyMatchesZeroedInputsReference) {
  if (!int8_columns("Q8_0")) GTEST_SKIP() << "no int8 column kernels on this CPU";
  for (const std::string mix : {"Q8_0", "Q4_0", "Q4_K_M"}) {
    if (!int8_columns(mix)) continue;
    ThreadPool pool(2);
    const auto tokens = some_tokens(16, 320);
    const HeadPruned hp = head_pruned(mix, tokens, 0.5f, pool);
    const auto& dense = hp.dense;
    const auto& m = hp.pruned;
    const model::Sparsity& sp = hp.sparsity;
    EXPECT_GT(m->column_bytes(), 0u) << mix << ": no head copy";
    double share = 0;
    const std::vector<float> want =
        zeroed_head_reference(*dense, tokens, sp.head_threshold, &share);
    const std::vector<float> unpruned = step_logits(*dense, tokens);
    const size_t V = 320;
    const std::vector<float> got = logits(*m, tokens, 1);  // a step per token: the copy
    ASSERT_EQ(got.size(), want.size());
    for (size_t t = 0; t < tokens.size(); ++t) {
      double diff = 0, drift = 0, scale = 0;
      for (size_t j = 0; j < V; ++j) {
        diff += std::fabs(got[t * V + j] - want[t * V + j]);
        drift += std::fabs(want[t * V + j] - unpruned[t * V + j]);
        scale += std::fabs(unpruned[t * V + j]);
      }
      EXPECT_GT(drift, 0.0) << mix << " row " << t;
      EXPECT_LT(diff, 0.1 * drift) << mix << " row " << t;
      EXPECT_LT(diff, 0.02 * scale) << mix << " row " << t;
    }
  }
}

// A row that keeps more of the head's inputs than its column copy pays for
// (ColumnMatrix::pays_below: 80% of them for a Q8_0 copy) goes through the dense
// output matrix: one token per step equals the zeroed inputs' rows through
// the dense kernels one at a time, bit for bit, although the copy exists.
TEST(Sparsity, HeadRowsKeepingMostInputsUseTheDenseKernels) {
  if (!int8_columns("Q8_0")) GTEST_SKIP() << "no int8 column kernels on this CPU";
  ThreadPool pool(2);
  const auto tokens = some_tokens(16, 320);
  const HeadPruned hp = head_pruned("Q8_0", tokens, 0.1f, pool);
  const auto& dense = hp.dense;
  const auto& m = hp.pruned;
  const model::Sparsity& sp = hp.sparsity;
  ASSERT_GT(m->column_bytes(), 0u);
  HeadInputs h;
  step_logits(*dense, tokens, &h);
  const int64_t E = dense->config().n_embd, V = dense->config().n_vocab;
  const double below = kernels::ColumnMatrix::pays_below(dense->weights().output.view.type);
  std::vector<float> want(static_cast<size_t>(V) * tokens.size());
  backend::Workspace ws;
  ws.pool = &pool;
  for (size_t t = 0; t < tokens.size(); ++t) {
    float* row = h.rows.data() + t * static_cast<size_t>(E);
    int64_t kept = 0;
    for (int64_t i = 0; i < E; ++i) {
      if (std::fabs(row[i]) < sp.head_threshold) row[i] = 0;
      kept += row[i] != 0;
    }
    ASSERT_GE(static_cast<double>(kept), below * static_cast<double>(E)) << "row " << t;
    dense->backend().linear(dense->weights().output, row, 1, want.data() + t * V, ws);
  }
  const std::vector<float> got = logits(*m, tokens, 1);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)));
}

// CATS's cut decided on the pre-activation (GateCut's intervals) equals the
// scalar definition |gate_activation(g)| < thr for every float: a dense
// sweep, the ends themselves and a few ulps either side, random magnitudes
// and the special values, for thresholds below, near and above the dip
// (SiLU's -0.2785, tanh-GELU's -0.1700).
TEST(GateCut, AgreesWithTheActivationEverywhere) {
  std::mt19937 rng(7);
  for (const backend::Activation act : {backend::Activation::kSilu, backend::Activation::kGeluTanh})
    for (const float thr : {0.0f, 1e-6f, 1e-3f, 0.05f, 0.1699f, 0.17f, 0.1701f, 0.2784f, 0.2785f,
                            0.2786f, 0.3f, 1.0f, 50.0f}) {
      const model::GateCut gc(act, thr);
      size_t n_cut = 0, n = 0;
      auto check = [&](float g) {
        const bool want = std::fabs(model::gate_activation(act, g)) < thr;
        ASSERT_EQ(gc.cut(g), want)
            << "act " << static_cast<int>(act) << " thr " << thr << " g " << g;
        n_cut += want;
        ++n;
      };
      for (float g = -120.0f; g <= 120.0f; g += 1.0f / 1024) check(g);
      // Every float within 64 ulps of any point where the answer flips.
      float prev = -130.0f;
      bool prev_cut = gc.cut(prev);
      for (float g = -130.0f; g <= 130.0f; g += 1.0f / 4096) {
        if (gc.cut(g) != prev_cut) {
          float u = prev;
          for (int k = 0; k < 64; ++k) u = std::nextafter(u, -1e30f);
          for (int k = 0; k < 192; ++k, u = std::nextafter(u, 1e30f)) check(u);
        }
        prev = g;
        prev_cut = gc.cut(g);
      }
      std::uniform_real_distribution<float> e(-30.0f, 8.0f);
      for (int i = 0; i < 20000; ++i) {
        const float g = std::exp2(e(rng)) * (i % 2 ? 1.0f : -1.0f);
        check(g);
      }
      for (const float g :
           {0.0f, -0.0f, 1e-45f, -1e-45f, 3e38f, -3e38f, std::numeric_limits<float>::infinity(),
            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()})
        check(g);
      if (thr == 0.0f) {
        EXPECT_EQ(n_cut, 0u);
      }
      if (thr >= 0.05f) {
        EXPECT_GT(n_cut, n / 20) << thr;
      }
    }
}

// Records the gate's pre-activation and down's input of every step
// (Tap::kGate, Tap::kDownIn) of one layer.
struct GateTap final : model::ActivationTap {
  int64_t layer = 0;
  std::vector<float> gate, down_in;
  void on_activation(int64_t l, model::Tap t, const float* x, int64_t n, int64_t width) override {
    if (l != layer) return;
    if (t == model::Tap::kGate) gate.insert(gate.end(), x, x + n * width);
    if (t == model::Tap::kDownIn) down_in.insert(down_in.end(), x, x + n * width);
  }
};

// CATS decoding (one token a step, down's column copy over the uncut rows
// listed by the cut itself): down's input is zero exactly where
// |act(gate)| < thr, and the logits agree with the same file fed as one
// batch (dense kernels over the cut rows) up to the copy's rounding.
TEST(Sparsity, CatsDecodeCutsExactlyTheSmallGates) {
  if (!any_column_kernels()) GTEST_SKIP() << "no column kernels on this CPU";
  const model::SynthShape shape{"t", "llama", 2, 256, 4, 2, 0, 256, 320, 64, 1e4f, 1e-5f, false};
  ThreadPool pool(2);
  const std::vector<uint8_t> bytes = model::synth_bytes(shape, "Q8_0", 3, pool);
  const auto m = model::Model::from_file(gguf::File::parse(bytes, "q.gguf"));
  const auto tokens = some_tokens(16, 320);
  model::CalibrateOptions o;
  o.sparsity = 0.5f;
  o.ffn_rule = model::FfnRule::kCats;
  const model::Sparsity sp = model::calibrate(*m, tokens, o, pool);
  set_sparsity(*m, sp);
  for (int64_t layer = 0; layer < 2; ++layer) {
    const float thr = sp.threshold(layer, model::Tap::kGate);
    ASSERT_GT(thr, 0.0f);
    GateTap tap;
    tap.layer = layer;
    model::Session s(*m, {});
    model::Scratch scratch(m->config(), 1);
    scratch.set_tap(&tap);
    uint64_t zeroed = 0, total = 0;
    for (const int32_t t : tokens) {
      const model::SeqChunk c{&s,     std::span<const int32_t>(&t, 1), nullptr, false, nullptr,
                              nullptr};
      model::forward(*m, std::span<const model::SeqChunk>(&c, 1), scratch, pool);
      zeroed += scratch.prune_stats().zeroed;
      total += scratch.prune_stats().total;
    }
    ASSERT_EQ(tap.gate.size(), tap.down_in.size());
    size_t cut = 0;
    for (size_t i = 0; i < tap.gate.size(); ++i) {
      const bool want = std::fabs(model::gate_activation(m->config().ffn_act, tap.gate[i])) < thr;
      cut += want;
      ASSERT_EQ(tap.down_in[i] == 0.0f, want) << "layer " << layer << " gate " << i;
    }
    const double share = static_cast<double>(cut) / static_cast<double>(tap.gate.size());
    EXPECT_GT(share, 0.3) << layer;
    EXPECT_LT(share, 0.7) << layer;
    EXPECT_GT(zeroed, 0u);
    EXPECT_LT(zeroed, total);
  }
  const auto unpruned = model::Model::from_file(gguf::File::parse(bytes, "q.gguf"));
  const std::vector<float> dense = logits(*unpruned, tokens, 16);
  const std::vector<float> batched = logits(*m, tokens, 16);
  const std::vector<float> decoded = logits(*m, tokens, 1);
  double diff = 0, drift = 0;
  for (size_t i = 0; i < batched.size(); ++i) {
    diff += std::fabs(decoded[i] - batched[i]);
    drift += std::fabs(batched[i] - dense[i]);
  }
  // As ColumnCopiesAgreeWithDenseOverZeroedInputs: the copy's rounding moves
  // a few gates of this random model across the threshold, which later
  // layers amplify; it stays below what pruning itself does.
  EXPECT_GT(diff, 0.0) << "decoding did not go through the copies";
  EXPECT_LT(diff, 0.5 * drift);
}

// Decoding reads the head's column copy over exactly the inputs the
// threshold kept (listed while zeroing): bit for bit the backend's column
// product over the zeroed row's non-zero entries, found by a separate scan.
TEST(Sparsity, HeadDecodeReadsTheCopyOverTheKeptInputsBitForBit) {
  if (!int8_columns("Q8_0")) GTEST_SKIP() << "no int8 column kernels on this CPU";
  for (const std::string mix : {"Q8_0", "Q4_0"}) {
    ThreadPool pool(2);
    const auto tokens = some_tokens(12, 320);
    const HeadPruned hp = head_pruned(mix, tokens, 0.6f, pool);
    const auto& dense = hp.dense;
    const auto& m = hp.pruned;
    const model::Sparsity& sp = hp.sparsity;
    ASSERT_NE(m->weights().output.columns, nullptr) << mix;
    HeadInputs h;
    step_logits(*dense, tokens, &h);
    const int64_t E = dense->config().n_embd, V = dense->config().n_vocab;
    std::vector<float> want(static_cast<size_t>(V) * tokens.size());
    backend::Workspace ws;
    ws.pool = &pool;
    for (size_t t = 0; t < tokens.size(); ++t) {
      float* row = h.rows.data() + t * static_cast<size_t>(E);
      std::vector<int32_t> kept;
      for (int64_t i = 0; i < E; ++i) {
        if (std::fabs(row[i]) < sp.head_threshold) row[i] = 0;
        if (row[i] != 0) kept.push_back(static_cast<int32_t>(i));
      }
      ASSERT_LT(static_cast<double>(kept.size()),
                kernels::ColumnMatrix::pays_below(m->weights().output.view.type) *
                    static_cast<double>(E));
      m->backend().linear_columns(m->weights().output, row, kept, want.data() + t * V, ws);
    }
    const std::vector<float> got = logits(*m, tokens, 1);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float))) << mix;
  }
}

// StepProfile: decoding with 50% pruned inputs times q/k/v, o, gate/up and
// down through the column copies and pruning's own passes; a prompt's step
// of many rows goes through the dense kernels; without a profile nothing
// is counted.
TEST(Sparsity, ProfileSeesColumnAndDenseProducts) {
  if (!int8_columns("Q8_0")) GTEST_SKIP() << "no int8 column kernels on this CPU";
  const model::SynthShape shape{"t", "llama", 2, 256, 4, 2, 0, 256, 320, 64, 1e4f, 1e-5f, false};
  ThreadPool pool(2);
  const std::vector<uint8_t> bytes = model::synth_bytes(shape, "Q8_0", 3, pool);
  const auto m = model::Model::from_file(gguf::File::parse(bytes, "q.gguf"));
  const auto tokens = some_tokens(16, 320);
  model::CalibrateOptions o;
  o.sparsity = 0.5f;
  set_sparsity(*m, model::calibrate(*m, tokens, o, pool));
  model::StepProfile prof;
  model::Session s(*m, {});
  model::Scratch scratch(m->config(), 16);
  scratch.set_profile(&prof);
  const model::SeqChunk prompt{&s, tokens, nullptr, false, nullptr, nullptr};
  model::forward(*m, std::span<const model::SeqChunk>(&prompt, 1), scratch, pool);
  using P = model::StepProfile;
  for (const P::Part part : {P::kQkv, P::kO, P::kGateUp, P::kDown}) {
    EXPECT_EQ(prof.calls[part][0], 2u) << P::kNames[part];  // a call per layer
    EXPECT_EQ(prof.calls[part][1], 0u) << P::kNames[part];
  }
  prof = {};
  const int32_t next = 5;
  const model::SeqChunk one{&s,     std::span<const int32_t>(&next, 1), nullptr, false, nullptr,
                            nullptr};
  model::forward(*m, std::span<const model::SeqChunk>(&one, 1), scratch, pool);
  for (const P::Part part : {P::kQkv, P::kO, P::kGateUp, P::kDown}) {
    EXPECT_EQ(prof.calls[part][0] + prof.calls[part][1], 2u) << P::kNames[part];
    EXPECT_GT(prof.calls[part][1], 0u) << P::kNames[part];
    EXPECT_GT(prof.ns[part][1], 0.0) << P::kNames[part];
  }
  // 4 taps in each of 2 layers, and a kept list per column product.
  uint64_t column_calls = 0;
  for (const P::Part part : {P::kQkv, P::kO, P::kGateUp, P::kDown})
    column_calls += prof.calls[part][1];
  EXPECT_EQ(prof.calls[P::kPrune][0], 8u + column_calls);
  scratch.set_profile(nullptr);
  const P before = prof;
  model::forward(*m, std::span<const model::SeqChunk>(&one, 1), scratch, pool);
  EXPECT_EQ(0, std::memcmp(&before, &prof, sizeof prof));
}

// MoE expert skipping against references: K = n_expert_used and P = 0 are
// the model as it is, bit for bit; K = 1 equals the same weights in a file
// that routes top-1 (itself checked against the float64 reference in
// test_synthetic.cpp's MoeTop1).
TEST(MoeSkipping, TopKAndMinWeightAgainstReferences) {
  SynthSpec spec;
  spec.n_expert = 8;
  spec.n_expert_used = 2;
  spec.n_ff = 16;
  SynthSpec top1 = spec;
  top1.n_expert_used = 1;
  const SynthModel sm = make_synth(spec), s1 = make_synth(top1);
  const auto tokens = some_tokens(25, 64);
  const std::vector<float> dense = logits(*load(sm), tokens);
  const std::vector<float> ref1 = logits(*load(s1), tokens);
  auto with = [&](int64_t k, float p) {
    const auto m = load(sm);
    model::PruneOptions o;
    o.moe_top_k = k;
    o.moe_min_weight = p;
    m->set_prune(o);
    return logits(*m, tokens);
  };
  const std::vector<float> k2 = with(2, 0.0f), k1 = with(1, 0.0f);
  EXPECT_EQ(0, std::memcmp(k2.data(), dense.data(), dense.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(k1.data(), ref1.data(), ref1.size() * sizeof(float)));
  EXPECT_NE(0, std::memcmp(k1.data(), dense.data(), dense.size() * sizeof(float)));
  // P = 0.5 drops the second of two renormalised weights unless they tie:
  // with renormalising routers that is top-1 exactly.
  if (load(sm)->config().expert_weights_norm) {
    const std::vector<float> p = with(0, 0.5000001f);
    EXPECT_EQ(0, std::memcmp(p.data(), ref1.data(), ref1.size() * sizeof(float)));
  }
  // Too many experts, or a dense model, are refused.
  model::PruneOptions bad;
  bad.moe_top_k = 3;
  EXPECT_THROW(load(sm)->set_prune(bad), Error);
  EXPECT_THROW(load(make_synth({}))->set_prune(model::PruneOptions{nullptr, 1, 0}), Error);
}

// The tiny-moe fixture: K = n_expert_used is the default bit for bit; fewer
// experts change the logits but keep them finite.
TEST(MoeSkipping, TinyMoeFixture) {
  SLM_REQUIRE_FIXTURE("models/tiny-moe.gguf");
  const auto tokens = some_tokens(16, 32);
  auto run = [&](int64_t k) {
    auto m = model::Model::load(fixture("models/tiny-moe.gguf"));
    model::PruneOptions o;
    o.moe_top_k = k;
    m->set_prune(o);
    return logits(*m, tokens);
  };
  const auto m = model::Model::load(fixture("models/tiny-moe.gguf"));
  const int64_t used = m->config().n_expert_used;
  ASSERT_GT(used, 1);
  const std::vector<float> dense = run(0), same = run(used), one = run(1);
  EXPECT_EQ(0, std::memcmp(same.data(), dense.data(), dense.size() * sizeof(float)));
  EXPECT_NE(0, std::memcmp(one.data(), dense.data(), dense.size() * sizeof(float)));
  for (const float v : one) ASSERT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace slm::test
