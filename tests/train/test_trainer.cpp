// The training forward and backward on whole models: its logits equal
// model::forward's (with and without a LoRA adapter), and the LoRA gradients
// equal central finite differences of the loss on tiny-llama and tiny-qwen3;
// so do those of the DPO loss.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "base/error.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "common/fixtures.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/session.h"
#include "train/dpo.h"
#include "train/lora_params.h"
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
FdResult check_lora_fd(LoraParams& lp, uint32_t seed, int max_trials, float min_grad, Loss loss) {
  std::mt19937 rng(seed);
  FdResult r;
  for (int trial = 0; trial < max_trials && r.checked < 12; ++trial) {
    LoraPairParams& p = lp.pairs()[rng() % lp.pairs().size()];
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
  std::printf("[ logits   ] %s lora: max |diff| / max |logit| %.3g\n", GetParam(), e);
  EXPECT_LT(e, 1e-4);
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

INSTANTIATE_TEST_SUITE_P(Fixtures, TrainModel,
                         ::testing::Values("tiny-llama.gguf", "tiny-qwen2.gguf", "tiny-qwen3.gguf",
                                           "stories260K.gguf", "small-llama-Q4_K.gguf"),
                         [](const auto& info) {
                           std::string s = info.param;
                           s = s.substr(0, s.find('.'));
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

TEST(Train, RefusesMixtureOfExperts) {
  SLM_REQUIRE_FIXTURE("models/tiny-moe.gguf");
  const auto m = model::Model::load(test::fixture("models/tiny-moe.gguf"));
  ThreadPool pool(1);
  try {
    Trainer tr(*m, nullptr, 8, pool);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mixture-of-experts"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace slm::train
