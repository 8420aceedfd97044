// The training forward and backward on whole models: its logits equal
// model::forward's (with and without a LoRA adapter), and the LoRA gradients
// equal central finite differences of the loss on tiny-llama and tiny-qwen3;
// so do those of the DPO loss. On mixtures of experts, the expert stacks'
// per-expert pairs too (only routed experts get gradients), and a trained
// adapter saved, loaded and merged gives the trainer's logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <vector>

#include "base/error.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "common/fixtures.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "kernels/kernels.h"
#include "model/lora.h"
#include "model/lora_merge.h"
#include "model/model.h"
#include "model/session.h"
#include "train/dpo.h"
#include "train/full_params.h"
#include "train/linear_grad.h"
#include "train/lora_params.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace slm::train {
namespace {

const std::vector<backend::Role> kAll = {
    backend::Role::kQ,    backend::Role::kK,  backend::Role::kV,   backend::Role::kO,
    backend::Role::kGate, backend::Role::kUp, backend::Role::kDown};

// Central finite differences of loss() against the analytic gradients in lp,
// on up to 12 random LoRA coordinates (A and B in turn) whose gradient is
// above min_grad (the loss is float: smaller ones drown in its noise). Each
// relative error must stay under 2e-2; returns the worst and how many were checked.
struct FdResult {
  double worst = 0;
  int checked = 0;
};
template <typename Loss>
FdResult check_lora_fd(LoraParams& lp, uint32_t seed, int max_trials, float min_grad, Loss loss,
                       bool stacks_only = false) {
  std::mt19937 rng(seed);
  FdResult r;
  std::vector<LoraPairParams*> pool;
  for (LoraPairParams& p : lp.pairs())
    if (!stacks_only || p.n_expert > 0) pool.push_back(&p);
  if (pool.empty()) return r;
  for (int trial = 0; trial < max_trials && r.checked < 12; ++trial) {
    LoraPairParams& p = *pool[rng() % pool.size()];
    const bool use_a = (trial % 2) == 0;
    std::vector<float>& v = use_a ? p.a : p.b;
    const size_t i = rng() % v.size();
    const float g = (use_a ? p.grad_a : p.grad_b)[i];
    if (std::fabs(g) < min_grad) continue;
    const float keep = v[i];
    const float h = 1e-2f;
    v[i] = keep + h;
    const double lp_ = loss();
    v[i] = keep - h;
    const double lm = loss();
    v[i] = keep;
    const double fd = (lp_ - lm) / (2.0 * h);
    const double err = std::fabs(fd - g) / std::fabs(fd);
    r.worst = std::max(r.worst, err);
    ++r.checked;
    EXPECT_LT(err, 2e-2) << p.name << (use_a ? " A[" : " B[") << i << "] analytic " << g << " fd "
                         << fd;
  }
  return r;
}

std::vector<int32_t> some_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& x : t)
    x = static_cast<int32_t>(rng() % static_cast<uint32_t>(std::min<int64_t>(vocab, 30000)));
  return t;
}

// A and B both random, so every gradient path is live.
void randomize(LoraParams& lp, uint32_t seed, float sb) {
  std::mt19937 rng(seed);
  lp.init(seed);
  std::normal_distribution<float> d(0.0f, sb);
  for (LoraPairParams& p : lp.pairs())
    for (float& x : p.b) x = d(rng);
}

std::vector<float> model_logits(const model::Model& m, const model::LoraAdapter* ad,
                                const std::vector<int32_t>& tokens) {
  model::SessionOptions so;
  so.n_ctx = 64;
  so.kv_type = DType::F32;
  model::Session s(m, so);
  s.set_adapter(ad);
  ThreadPool pool(2);
  std::vector<float> out;
  s.feed(tokens, pool, &out);
  return out;
}

double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double mx = 0, md = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    mx = std::max(mx, std::fabs(static_cast<double>(b[i])));
    md = std::max(md, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return md / mx;
}

class TrainModel : public ::testing::TestWithParam<const char*> {};

TEST_P(TrainModel, LogitsEqualModelForward) {
  const std::string rel = std::string("models/") + GetParam();
  SLM_REQUIRE_FIXTURE(rel);
  const auto m = model::Model::load(test::fixture(rel));
  ThreadPool pool(2);
  const auto tokens = some_tokens(20, m->config().n_vocab, 7);
  {
    Trainer tr(*m, nullptr, 32, pool);
    std::vector<float> got;
    tr.logits(tokens, got);
    const auto want = model_logits(*m, nullptr, tokens);
    ASSERT_EQ(got.size(), want.size());
    const double e = max_rel(got, want);
    std::printf("[ logits   ] %s base: max |diff| / max |logit| %.3g\n", GetParam(), e);
    EXPECT_LT(e, 1e-4);
  }
  LoraParams lp(*m, {4, 8.0f, kAll});
  randomize(lp, 3, 0.2f);
  // Values F16 holds exactly (and alpha / rank = 2): the adapter's F16
  // copies (model/lora.h) then equal the trainer's F32 parameters.
  for (LoraPairParams& p : lp.pairs()) {
    for (float& x : p.a) x = fp16_to_f32(f32_to_fp16(x));
    for (float& x : p.b) x = fp16_to_f32(f32_to_fp16(x));
  }
  Trainer tr(*m, &lp, 32, pool);
  std::vector<float> got;
  tr.logits(tokens, got);
  const auto ad = lp.to_adapter("test");
  const auto want = model_logits(*m, ad.get(), tokens);
  const double e = max_rel(got, want);
  std::vector<float> base;
  Trainer(*m, nullptr, 32, pool).logits(tokens, base);
  const double moved = max_rel(want, base);
  std::printf("[ logits   ] %s lora: max |diff| / max |logit| %.3g (the adapter moves them %.3g)\n",
              GetParam(), e, moved);
  // The run-time adapter (F16 factors, its own summation order) and the
  // trainer's F32 pairs agree to float rounding; where the base's matrices
  // quantize their input rows to int8 (Q8_0, K-quants), one rounding step of
  // difference can flip an int8 code and grow to about 1e-2 of the logits of
  // these random models, still far below the adapter's own effect.
  const bool quantized_input = m->weights().layers[0].wq.view.type != DType::F32 &&
                               m->weights().layers[0].wq.view.type != DType::F16;
  EXPECT_LT(e, quantized_input ? 2e-2 : 1e-4);
  EXPECT_GT(moved, 10 * e);
}

TEST_P(TrainModel, LoraGradientsMatchFiniteDifferences) {
  const std::string rel = std::string("models/") + GetParam();
  SLM_REQUIRE_FIXTURE(rel);
  const auto m = model::Model::load(test::fixture(rel));
  if (m->weights().layers[0].wq.view.type != DType::F32)
    GTEST_SKIP() << "quantized activations make the loss of a quantized model too rough for finite "
                    "differences";
  ThreadPool pool(2);
  LoraParams lp(*m, {4, 8.0f, kAll});
  randomize(lp, 11, 0.1f);
  Trainer tr(*m, &lp, 32, pool);
  Example ex;
  ex.tokens = some_tokens(12, m->config().n_vocab, 5);
  ex.target.assign(ex.tokens.size(), 1);
  ex.target[3] = 0;  // a hole in the loss mask
  lp.zero_grad();
  tr.run(ex, true);
  const FdResult fd = check_lora_fd(lp, 9, 400, 2e-2f, [&] { return tr.run(ex, false).loss; });
  std::printf("[ fd       ] %s whole-model LoRA grads: %d coordinates, worst relative error %.3g\n",
              GetParam(), fd.checked, fd.worst);
  EXPECT_GE(fd.checked, 6);
}

// The DPO loss's LoRA gradients (the weighted difference of the two sides'
// backward passes) against central differences of the loss itself, with a
// random adapter so that the policy differs from the reference (adapter off).
TEST_P(TrainModel, DpoGradientsMatchFiniteDifferences) {
  const std::string rel = std::string("models/") + GetParam();
  SLM_REQUIRE_FIXTURE(rel);
  const auto m = model::Model::load(test::fixture(rel));
  if (m->weights().layers[0].wq.view.type != DType::F32)
    GTEST_SKIP() << "quantized activations make the loss of a quantized model too rough for finite "
                    "differences";
  ThreadPool pool(2);
  LoraParams lp(*m, {4, 8.0f, kAll});
  randomize(lp, 13, 0.1f);
  Trainer tr(*m, &lp, 32, pool);
  PreferencePair p;
  const auto prompt = some_tokens(6, m->config().n_vocab, 21);
  for (auto [ex, seed] : {std::pair{&p.chosen, 22u}, std::pair{&p.rejected, 23u}}) {
    ex->tokens = prompt;
    for (const int32_t t : some_tokens(5, m->config().n_vocab, seed)) ex->tokens.push_back(t);
    ex->target.assign(ex->tokens.size(), 0);
    std::fill(ex->target.begin() + 6, ex->target.end(), 1);  // the prompt is masked
  }
  // beta keeps beta * margin near 1, where the sigmoid is not saturated.
  const std::vector<RefLogp> ref = Dpo(tr, &lp, 1.0).reference_logps({&p, 1});
  const double margin = Dpo(tr, &lp, 1.0).pair(p, ref[0], false).reward_margin;
  Dpo dpo(tr, &lp, std::min(1.0, 1.0 / std::fabs(margin)));
  lp.zero_grad();
  const DpoStats at = dpo.pair(p, ref[0], true);
  EXPECT_NE(at.reward_margin, 0.0);  // the policy is not the reference
  EXPECT_NEAR(at.loss, neg_log_sigmoid(at.reward_margin), 1e-12);
  // Gradients accumulate: two half-weight passes on top of one full pass double it.
  std::vector<float> once;
  for (const std::span<float> g : lp.grads()) once.insert(once.end(), g.begin(), g.end());
  dpo.pair(p, ref[0], true, 0.5f);
  dpo.pair(p, ref[0], true, 0.5f);
  size_t k = 0;
  double acc_err = 0;
  for (const std::span<float> g : lp.grads())
    for (const float x : g)
      acc_err = std::max(acc_err, std::fabs(static_cast<double>(x) - 2.0 * once[k++]));
  double gmax = 0;
  for (const float x : once) gmax = std::max(gmax, std::fabs(static_cast<double>(x)));
  EXPECT_LT(acc_err, 1e-4 * gmax);
  lp.zero_grad();
  dpo.pair(p, ref[0], true);
  const FdResult fd =
      check_lora_fd(lp, 17, 800, 1e-2f, [&] { return dpo.pair(p, ref[0], false).loss; });
  std::printf(
      "[ fd       ] %s DPO LoRA grads (beta * margin %.3f): %d coordinates, worst relative error "
      "%.3g\n",
      GetParam(), at.reward_margin, fd.checked, fd.worst);
  EXPECT_GE(fd.checked, 6);
}

// Full training: the forward over the F32 masters equals the base model's,
// and the gradient of every weight tensor (embedding, norms, each matrix,
// output, biases and q/k norms where present, a mixture's router and expert
// stacks) matches central finite
// differences at its largest-gradient coordinate and at one random
// coordinate with a live gradient. A quantized base is refused, naming the
// tensor's type.
TEST_P(TrainModel, FullGradientsMatchFiniteDifferences) {
  const std::string rel = std::string("models/") + GetParam();
  SLM_REQUIRE_FIXTURE(rel);
  const auto m = model::Model::load(test::fixture(rel));
  if (const std::string why = FullParams::unsupported_reason(*m); !why.empty()) {
    EXPECT_NE(why.find("LoRA"), std::string::npos) << why;
    EXPECT_THROW(FullParams fp(*m), Error);
    GTEST_SKIP() << why;
  }
  ThreadPool pool(2);
  FullParams fp(*m);
  Trainer tr(*m, fp, 32, pool);
  const auto tokens = some_tokens(12, m->config().n_vocab, 5);
  {
    std::vector<float> got;
    tr.logits(tokens, got);
    const double e = max_rel(got, model_logits(*m, nullptr, tokens));
    EXPECT_LT(e, 1e-4);
  }
  Example ex;
  ex.tokens = tokens;
  ex.target.assign(ex.tokens.size(), 1);
  ex.target[3] = 0;  // a hole in the loss mask
  fp.zero_grad();
  tr.run(ex, true);
  const auto loss = [&] { return tr.run(ex, false).loss; };
  std::mt19937 rng(9);
  std::map<std::string, double> worst;  // per kind of tensor
  int checked = 0;
  for (FullTensor& t : fp.tensors()) {
    std::vector<size_t> coords;
    size_t best = 0;
    for (size_t i = 0; i < t.grad.size(); ++i)
      if (std::fabs(t.grad[i]) > std::fabs(t.grad[best])) best = i;
    coords.push_back(best);
    for (int trial = 0; trial < 200; ++trial) {
      const size_t i = rng() % t.grad.size();
      if (std::fabs(t.grad[i]) < 1e-2f * std::fabs(t.grad[best]) || std::fabs(t.grad[i]) < 2e-3f)
        continue;
      coords.push_back(i);
      break;
    }
    for (const size_t i : coords) {
      const float g = t.grad[i];
      ASSERT_GT(std::fabs(g), 1e-4f) << t.name << ": no live gradient";
      const float keep = t.value[i];
      const float h = std::max(1e-2f, 1e-2f * std::fabs(keep));
      t.value[i] = keep + h;
      const double lp = loss();
      t.value[i] = keep - h;
      const double lm = loss();
      t.value[i] = keep;
      const double fd = (lp - lm) / (2.0 * static_cast<double>(h));
      const double err = std::fabs(fd - g) / std::fabs(fd);
      // 2% relative, plus the difference quotient's own noise: the loss is
      // summed in float (a few 1e-6 of a loss near 5, divided by 2h = 0.02:
      // about 4e-4 absolute). Smaller or Richardson-combined steps measured
      // worse, so the noise, not the h^2 term, bounds small gradients such as
      // tiny-qwen2's k bias (0.0164 analytic, 0.0168 fd on the scalar path).
      EXPECT_LT(std::fabs(fd - g), 2e-2 * std::fabs(fd) + 4e-4)
          << t.name << "[" << i << "] analytic " << g << " fd " << fd;
      worst[t.label] = std::max(worst[t.label], err);
      ++checked;
    }
  }
  std::printf("[ fd       ] %s full grads, %d coordinates; worst relative error per kind:",
              GetParam(), checked);
  for (const auto& [kind, e] : worst) std::printf(" %s %.2g", kind.c_str(), e);
  std::printf("\n");
  // Every kind the model has was checked (a mixture: its router and expert stacks).
  for (const char* kind : {"embedding", "norm", "q", "k", "v", "o"})
    EXPECT_TRUE(worst.count(kind)) << kind;
  const std::vector<const char*> ffn_kinds =
      m->config().is_moe()
          ? std::vector<const char*>{"router", "gate experts", "up experts", "down experts"}
          : std::vector<const char*>{"gate", "up", "down"};
  for (const char* kind : ffn_kinds) EXPECT_TRUE(worst.count(kind)) << kind;
  if (m->weights().layers[0].has_qkv_bias()) {
    EXPECT_TRUE(worst.count("bias"));
  }
}

// --recompute keeps only each layer's input and recomputes the rest in the
// backward: the same loss and gradients bit for bit, over two examples of
// different lengths accumulated into the same gradients.
TEST_P(TrainModel, RecomputeGivesTheSameLossAndGradients) {
  const std::string rel = std::string("models/") + GetParam();
  SLM_REQUIRE_FIXTURE(rel);
  const auto m = model::Model::load(test::fixture(rel));
  ThreadPool pool(2);
  std::vector<Example> exs(2);
  for (size_t i = 0; i < exs.size(); ++i) {
    exs[i].tokens = some_tokens(static_cast<int64_t>(14 - 5 * i), m->config().n_vocab,
                                static_cast<uint32_t>(30 + i));
    exs[i].target.assign(exs[i].tokens.size(), 1);
  }
  std::vector<double> losses[2];
  std::vector<float> grads[2];
  for (const bool recompute : {false, true}) {
    LoraParams lp(*m, {4, 8.0f, kAll});
    randomize(lp, 11, 0.1f);
    Trainer tr(*m, &lp, 16, pool, recompute);
    lp.zero_grad();
    for (const Example& ex : exs) losses[recompute].push_back(tr.run(ex, true, 0.5f).loss);
    for (const std::span<float> g : lp.grads())
      grads[recompute].insert(grads[recompute].end(), g.begin(), g.end());
  }
  EXPECT_EQ(losses[0], losses[1]);
  ASSERT_EQ(grads[0].size(), grads[1].size());
  EXPECT_EQ(0, std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)));
  EXPECT_TRUE(std::any_of(grads[0].begin(), grads[0].end(), [](float g) { return g != 0.0f; }));
}

// The trainer's transposed products read weights through the backend (the
// packed form where the model was packed and its file pages released): the
// same bits as reading the file's rows.
TEST_P(TrainModel, TransposedProductThroughTheBackendEqualsTheFileRows) {
  const std::string rel = std::string("models/") + GetParam();
  SLM_REQUIRE_FIXTURE(rel);
  const auto m = model::Model::load(test::fixture(rel));
  ThreadPool pool(2);
  const model::LayerWeights& lw = m->weights().layers[0];
  if (lw.wq.view.type == DType::Q8_0 && kernels::PackedMatrix::pays(DType::Q8_0)) {
    EXPECT_NE(lw.wq.prepared, nullptr) << "the packed path is not exercised";
  }
  std::vector<const backend::Linear*> ws = {&lw.wq, &m->weights().output};
  if (lw.ffn_down.present()) ws.push_back(&lw.ffn_down);
  if (!lw.down_exps.empty()) ws.push_back(&lw.down_exps[1]);
  for (const backend::Linear* w : ws) {
    const int64_t n = 9;
    std::vector<float> dy(static_cast<size_t>(n * w->rows()));
    std::mt19937 rng(4);
    std::normal_distribution<float> d;
    for (float& x : dy) x = d(rng);
    std::vector<float> a(static_cast<size_t>(n * w->cols())), b(a.size());
    input_grad(w->view, dy.data(), n, a.data(), false, pool);
    input_grad(m->backend(), *w, dy.data(), n, b.data(), false, pool);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
        << GetParam() << " role " << backend::role_name(w->role)
        << (w->prepared ? " (packed)" : "");
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TrainModel,
                         ::testing::Values("tiny-llama.gguf", "tiny-qwen2.gguf", "tiny-qwen3.gguf",
                                           "stories260K.gguf", "small-llama-Q4_K.gguf",
                                           "small-llama-Q8_0.gguf", "tiny-moe.gguf",
                                           "tiny-qwen3moe.gguf"),
                         [](const auto& info) {
                           std::string s = info.param;
                           s = s.substr(0, s.find('.'));
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

TEST(Train, RefusesGemma) {
  SLM_REQUIRE_FIXTURE("models/tiny-gemma2.gguf");
  const auto m = model::Model::load(test::fixture("models/tiny-gemma2.gguf"));
  ThreadPool pool(1);
  try {
    Trainer tr(*m, nullptr, 8, pool);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'gemma2' family is not supported"), std::string::npos)
        << e.what();
  }
}

// On a mixture of experts, gate/up/down targets fall on the expert stacks:
// one entry per stack holding a pair per expert (llama.cpp's 3-d layout).
TEST(Train, MixtureOfExpertsAdaptsExpertStacks) {
  SLM_REQUIRE_FIXTURE("models/tiny-moe.gguf");
  const auto m = model::Model::load(test::fixture("models/tiny-moe.gguf"));
  const model::ModelConfig& c = m->config();
  LoraParams lp(*m, {4, 8.0f, kAll});
  ASSERT_EQ(lp.pairs().size(), static_cast<size_t>(7 * c.n_layer));
  int stacks = 0;
  for (const LoraPairParams& p : lp.pairs()) {
    if (p.name.find("_exps.") == std::string::npos) {
      EXPECT_NE(p.name.find(".attn_"), std::string::npos) << p.name;
      EXPECT_EQ(p.n_expert, 0) << p.name;
      continue;
    }
    ++stacks;
    EXPECT_EQ(p.n_expert, c.n_expert) << p.name;
    EXPECT_EQ(p.a.size(), static_cast<size_t>(c.n_expert * p.rank * p.n_in)) << p.name;
    EXPECT_EQ(p.b.size(), static_cast<size_t>(c.n_expert * p.n_out * p.rank)) << p.name;
    EXPECT_EQ(lp.find(p.w), nullptr) << p.name;  // reached through find_stack only
  }
  EXPECT_EQ(stacks, 3 * c.n_layer);
  const model::LayerWeights& l0 = m->weights().layers[0];
  ASSERT_NE(lp.find_stack(l0.down_exps), nullptr);
  EXPECT_EQ(lp.find_stack(l0.down_exps)->n_in, c.n_ff_expert);
  EXPECT_EQ(LoraParams(*m, {4, 8.0f, {backend::Role::kQ}}).find_stack(l0.up_exps), nullptr);
}

// The expert pairs' gradients against finite differences (12 coordinates
// of the stacks only), and experts no position that reaches the loss routed
// to get no gradient: perturbing their pair leaves the loss bit for bit.
class TrainMoe : public ::testing::TestWithParam<const char*> {};

TEST_P(TrainMoe, ExpertLoraGradientsMatchFiniteDifferences) {
  const std::string rel = std::string("models/") + GetParam();
  SLM_REQUIRE_FIXTURE(rel);
  const auto m = model::Model::load(test::fixture(rel));
  if (m->weights().layers[0].wq.view.type != DType::F32) GTEST_SKIP() << "quantized fixture";
  ThreadPool pool(2);
  LoraParams lp(
      *m, {4,
           8.0f,
           {backend::Role::kQ, backend::Role::kGate, backend::Role::kUp, backend::Role::kDown}});
  randomize(lp, 17, 0.1f);
  Trainer tr(*m, &lp, 32, pool);
  Example ex;
  ex.tokens = some_tokens(12, m->config().n_vocab, 21);
  ex.target.assign(ex.tokens.size(), 1);
  lp.zero_grad();
  tr.run(ex, true);
  const FdResult fd = check_lora_fd(
      lp, 5, 800, 2e-2f, [&] { return tr.run(ex, false).loss; }, true);
  std::printf("[ fd       ] %s expert LoRA grads: %d coordinates, worst relative error %.3g\n",
              GetParam(), fd.checked, fd.worst);
  EXPECT_GE(fd.checked, 8);

  // Two tokens: only row 0 reaches the loss, so at most n_expert_used
  // experts per layer have a gradient; the others must not move it.
  Example two;
  two.tokens = some_tokens(2, m->config().n_vocab, 33);
  two.target = {0, 1};
  lp.zero_grad();
  const double base = tr.run(two, true).loss;
  int silent = 0, live = 0;
  for (LoraPairParams& p : lp.pairs()) {
    if (p.n_expert == 0) continue;
    const int64_t per_b = p.n_out * p.rank;
    for (int64_t e = 0; e < p.n_expert; ++e) {
      const float* ga = p.grad_a_of(e);
      const float* gb = p.grad_b_of(e);
      const bool zero = std::all_of(ga, ga + p.rank * p.n_in, [](float g) { return g == 0; }) &&
                        std::all_of(gb, gb + per_b, [](float g) { return g == 0; });
      if (!zero) {
        ++live;
        continue;
      }
      ++silent;
      float& v = p.b[static_cast<size_t>(e * per_b + per_b / 2)];
      const float keep = v;
      v += 0.5f;
      EXPECT_EQ(tr.run(two, false).loss, base) << p.name << " expert " << e;
      v = keep;
    }
  }
  const int64_t n_stacks = 3 * m->config().n_layer;
  EXPECT_LE(live, n_stacks * m->config().n_expert_used);
  EXPECT_GE(live, n_stacks);
  EXPECT_GT(silent, 0);
}

// Full training of a mixture: with two tokens only row 0 reaches the loss,
// so in each layer at most n_expert_used experts of each stack have a
// gradient. Each live expert's largest coordinate matches central finite
// differences; every silent expert's whole slice can change without moving
// the loss by a bit (it got no rows), and the router's gradient matches too.
TEST_P(TrainMoe, FullExpertGradientsComeFromRoutedRowsOnly) {
  const std::string rel = std::string("models/") + GetParam();
  SLM_REQUIRE_FIXTURE(rel);
  const auto m = model::Model::load(test::fixture(rel));
  ASSERT_EQ(FullParams::unsupported_reason(*m), "");
  ThreadPool pool(2);
  FullParams fp(*m);
  Trainer tr(*m, fp, 32, pool);
  Example two;
  two.tokens = some_tokens(2, m->config().n_vocab, 33);
  two.target = {0, 1};
  fp.zero_grad();
  const double base = tr.run(two, true).loss;
  const auto fd_at = [&](FullTensor& t, size_t i) {
    const float keep = t.value[i];
    const float h = std::max(1e-2f, 1e-2f * std::fabs(keep));
    t.value[i] = keep + h;
    const double lp = tr.run(two, false).loss;
    t.value[i] = keep - h;
    const double lm = tr.run(two, false).loss;
    t.value[i] = keep;
    return (lp - lm) / (2.0 * static_cast<double>(h));
  };
  int live = 0, silent = 0, stacks = 0, routers = 0;
  for (FullTensor& t : fp.tensors()) {
    if (t.label == "router") {
      ++routers;
      const auto best = std::max_element(t.grad.begin(), t.grad.end(), [](float a, float b) {
        return std::fabs(a) < std::fabs(b);
      });
      const size_t i = static_cast<size_t>(best - t.grad.begin());
      ASSERT_GT(std::fabs(t.grad[i]), 1e-4f) << t.name;
      const double fd = fd_at(t, i);
      EXPECT_LT(std::fabs(fd - t.grad[i]), 2e-2 * std::fabs(fd) + 4e-4)
          << t.name << "[" << i << "] analytic " << t.grad[i] << " fd " << fd;
      continue;
    }
    if (t.label.find(" experts") == std::string::npos) continue;
    ++stacks;
    ASSERT_EQ(t.shape.size(), 3u) << t.name;
    const size_t per = static_cast<size_t>(t.shape[0] * t.shape[1]);
    for (int64_t e = 0; e < t.shape[2]; ++e) {
      const size_t o = static_cast<size_t>(e) * per;
      const auto g0 = t.grad.begin() + static_cast<std::ptrdiff_t>(o);
      const auto best =
          std::max_element(g0, g0 + static_cast<std::ptrdiff_t>(per),
                           [](float a, float b) { return std::fabs(a) < std::fabs(b); });
      if (*best != 0.0f) {
        ++live;
        const size_t i = static_cast<size_t>(best - t.grad.begin());
        const double fd = fd_at(t, i);
        EXPECT_LT(std::fabs(fd - t.grad[i]), 2e-2 * std::fabs(fd) + 4e-4)
            << t.name << " expert " << e << " [" << i - o << "] analytic " << t.grad[i] << " fd "
            << fd;
        continue;
      }
      ++silent;
      const std::vector<float> keep(t.value.begin() + static_cast<std::ptrdiff_t>(o),
                                    t.value.begin() + static_cast<std::ptrdiff_t>(o + per));
      for (size_t i = o; i < o + per; ++i) t.value[i] = 1.5f * t.value[i] + 0.1f;
      EXPECT_EQ(tr.run(two, false).loss, base) << t.name << " expert " << e;
      std::copy(keep.begin(), keep.end(), t.value.begin() + static_cast<std::ptrdiff_t>(o));
    }
  }
  const int64_t n_layer = m->config().n_layer;
  EXPECT_EQ(routers, n_layer);
  EXPECT_EQ(stacks, 3 * n_layer);
  EXPECT_LE(live, stacks * m->config().n_expert_used);
  EXPECT_GE(live, stacks);
  EXPECT_GT(silent, 0);
  std::printf("[ full moe ] %s: %d live expert slices checked by finite differences, %d silent\n",
              GetParam(), live, silent);
}

// Train a few steps with expert targets, save the adapter, load it as the
// run-time path does (LoraAdapter::load: `slm logits --lora`), and merge it
// (`slm merge`): both give the trainer's logits.
TEST_P(TrainMoe, ExpertAdapterRoundTripAndMerge) {
  const std::string rel = std::string("models/") + GetParam();
  SLM_REQUIRE_FIXTURE(rel);
  const auto m = model::Model::load(test::fixture(rel));
  if (m->weights().layers[0].wq.view.type != DType::F32) GTEST_SKIP() << "quantized fixture";
  ThreadPool pool(2);
  LoraParams lp(*m, {8, 16.0f, kAll});
  lp.init(3);
  Trainer tr(*m, &lp, 32, pool);
  AdamW opt({0.9f, 0.999f, 1e-8f, 0.0f});
  Example ex;
  ex.tokens = some_tokens(24, m->config().n_vocab, 41);
  ex.target.assign(ex.tokens.size(), 1);
  const auto params = lp.params();
  const auto grads = lp.grads();
  double first = 0, last = 0;
  for (int step = 0; step < 8; ++step) {
    lp.zero_grad();
    last = tr.run(ex, true, 1.0f / static_cast<float>(ex.n_targets())).loss;
    if (step == 0) first = last;
    opt.step(params, grads, 1e-2f);
  }
  EXPECT_LT(last, first);
  // Every expert stack moved: the routed experts learned.
  for (const LoraPairParams& p : lp.pairs())
    if (p.n_expert > 0) {
      EXPECT_TRUE(std::any_of(p.b.begin(), p.b.end(), [](float v) { return v != 0; })) << p.name;
    }
  // Values F16 holds exactly: the run-time adapter's F16 copies then equal
  // the trainer's F32 parameters (see LogitsEqualModelForward).
  for (LoraPairParams& p : lp.pairs()) {
    for (float& x : p.a) x = fp16_to_f32(f32_to_fp16(x));
    for (float& x : p.b) x = fp16_to_f32(f32_to_fp16(x));
  }
  const auto tokens = some_tokens(20, m->config().n_vocab, 43);
  std::vector<float> want, base;
  tr.logits(tokens, want);
  Trainer(*m, nullptr, 32, pool).logits(tokens, base);

  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/slm-train-moe-adapter-" + GetParam();
  const std::string merged_path = path + ".merged.gguf";
  lp.save(path);
  const auto f = gguf::File::open(path);
  const auto* ta = f->find_tensor("blk.0.ffn_up_exps.weight.lora_a");
  const auto* tb = f->find_tensor("blk.0.ffn_up_exps.weight.lora_b");
  ASSERT_NE(ta, nullptr);
  ASSERT_NE(tb, nullptr);
  const model::ModelConfig& c = m->config();
  EXPECT_EQ(ta->n_dims, 3);
  EXPECT_EQ(ta->ne[0], c.n_embd);
  EXPECT_EQ(ta->ne[1], 8);
  EXPECT_EQ(ta->ne[2], c.n_expert);
  EXPECT_EQ(tb->ne[0], 8);
  EXPECT_EQ(tb->ne[1], c.n_ff_expert);
  EXPECT_EQ(tb->ne[2], c.n_expert);

  const auto ad = model::LoraAdapter::load(*m, {{path, 1.0f}});
  EXPECT_EQ(ad->n_matrices(), static_cast<size_t>(c.n_layer * (4 + 3 * c.n_expert)));
  const auto got = model_logits(*m, ad.get(), tokens);
  const double e = max_rel(got, want), moved = max_rel(want, base);
  std::printf("[ moe lora ] %s loaded adapter vs trainer: %.3g (the adapter moves them %.3g)\n",
              GetParam(), e, moved);
  EXPECT_LT(e, 1e-4);
  EXPECT_GT(moved, 100 * e);

  model::merge_lora(*m, *ad, merged_path, {}, pool);
  const auto merged = model::Model::load(merged_path);
  const auto mg = model_logits(*merged, nullptr, tokens);
  const double em = max_rel(mg, want);
  std::printf("[ moe lora ] %s merged model vs trainer: %.3g\n", GetParam(), em);
  EXPECT_LT(em, 1e-4);
  std::remove(path.c_str());
  std::remove(merged_path.c_str());
}
// Hostile expert adapters: a stack with the wrong expert count or rows is
// refused naming the tensor; every truncation and many byte corruptions of
// a trained adapter give one slm::Error (or a file that still loads), never
// a crash.
TEST(Train, DamagedExpertAdaptersAreRefused) {
  SLM_REQUIRE_FIXTURE("models/tiny-moe.gguf");
  const auto m = model::Model::load(test::fixture("models/tiny-moe.gguf"));
  const model::ModelConfig& c = m->config();
  const std::string dir = ::testing::TempDir();
  const auto error_of = [&](const std::string& path) -> std::string {
    try {
      model::LoraAdapter::load(*m, {{path, 1.0f}});
      return "";
    } catch (const Error& e) {
      return e.what();
    }
  };
  const std::string name = "blk.1.ffn_down_exps.weight";
  for (const auto& [ne, n_out] :
       {std::pair{c.n_expert - 1, c.n_embd}, {c.n_expert, c.n_embd + 1}}) {
    gguf::Writer w;
    w.add_string("general.architecture", "llama");
    w.add_string("general.type", "adapter");
    w.add_string("adapter.type", "lora");
    w.add_f32("adapter.lora.alpha", 4.0f);
    const int64_t r = 2, n_in = c.n_ff_expert;
    const std::vector<float> a(static_cast<size_t>(n_in * r * ne), 0.1f);
    const std::vector<float> b(static_cast<size_t>(r * n_out * ne), 0.1f);
    const auto bytes = [](const std::vector<float>& v) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4);
    };
    w.add_tensor(name + ".lora_a", DType::F32, {n_in, r, ne}, bytes(a));
    w.add_tensor(name + ".lora_b", DType::F32, {r, n_out, ne}, bytes(b));
    const std::string path = dir + "/slm-bad-exps.gguf";
    w.write(path);
    const std::string err = error_of(path);
    EXPECT_NE(err.find(name), std::string::npos) << err;
    EXPECT_NE(err.find("expert"), std::string::npos) << err;
    std::remove(path.c_str());
  }

  LoraParams lp(*m, {2, 4.0f, kAll});
  randomize(lp, 5, 0.1f);
  const std::string good = dir + "/slm-moe-adapter-fuzz.gguf";
  lp.save(good);
  std::string bytes;
  {
    std::ifstream f(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  ASSERT_EQ(error_of(good), "");
  const std::string bad = dir + "/slm-moe-adapter-fuzz-bad.gguf";
  // An slm::Error (its text) or "" for a load; anything else fails the test.
  const auto try_bytes = [&](const std::string& b) {
    {
      std::ofstream f(bad, std::ios::binary | std::ios::trunc);
      f.write(b.data(), static_cast<std::streamsize>(b.size()));
    }
    return error_of(bad);
  };
  std::mt19937 rng(7);
  int cuts = 0, refused = 0;
  for (size_t cut = 0; cut < bytes.size(); cut += 1 + rng() % 61, ++cuts)
    refused += !try_bytes(bytes.substr(0, cut)).empty();
  EXPECT_EQ(refused, cuts);  // every truncation cuts into a tensor's data or the header
  for (int i = 0; i < 400; ++i) {
    std::string b = bytes;
    // Mostly the header (keys, tensor infos), sometimes the data.
    const size_t at = (i % 4 != 0) ? rng() % std::min<size_t>(b.size(), 4096) : rng() % b.size();
    b[at] = static_cast<char>(rng() & 0xff);
    (void)try_bytes(b);
  }
  EXPECT_GT(cuts, 10);
  std::remove(good.c_str());
  std::remove(bad.c_str());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TrainMoe,
                         ::testing::Values("tiny-moe.gguf", "tiny-qwen3moe.gguf"),
                         [](const auto& info) {
                           std::string s = info.param;
                           s = s.substr(0, s.find('.'));
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace slm::train
