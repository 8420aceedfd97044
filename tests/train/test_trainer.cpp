// The training forward and backward on whole models: its logits equal
// model::forward's (with and without a LoRA adapter), and the LoRA gradients
// equal central finite differences of the loss on tiny-llama and tiny-qwen3.
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
#include "train/lora_params.h"
#include "train/trainer.h"

namespace slm::train {
namespace {

const std::vector<backend::Role> kAll = {backend::Role::kQ,    backend::Role::kK,  backend::Role::kV,
                                         backend::Role::kO,    backend::Role::kGate, backend::Role::kUp,
                                         backend::Role::kDown};

std::vector<int32_t> some_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(std::min<int64_t>(vocab, 30000)));
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

std::vector<float> model_logits(const model::Model& m, const model::LoraAdapter* ad, const std::vector<int32_t>& tokens) {
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
    GTEST_SKIP() << "quantized activations make the loss of a quantized model too rough for finite differences";
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
  std::mt19937 rng(9);
  double worst = 0;
  int checked = 0;
  for (int trial = 0; trial < 400 && checked < 12; ++trial) {
    LoraPairParams& p = lp.pairs()[rng() % lp.pairs().size()];
    const bool use_a = (trial % 2) == 0;
    std::vector<float>& v = use_a ? p.a : p.b;
    const size_t i = rng() % v.size();
    const float g = (use_a ? p.grad_a : p.grad_b)[i];
    if (std::fabs(g) < 2e-2) continue;  // float loss: only gradients well above its noise
    const float keep = v[i];
    const float h = 1e-2f;
    v[i] = keep + h;
    const double lp_ = tr.run(ex, false).loss;
    v[i] = keep - h;
    const double lm = tr.run(ex, false).loss;
    v[i] = keep;
    const double fd = (lp_ - lm) / (2.0 * h);
    const double err = std::fabs(fd - g) / std::fabs(fd);
    worst = std::max(worst, err);
    ++checked;
    EXPECT_LT(err, 2e-2) << p.name << (use_a ? " A[" : " B[") << i << "] analytic " << g << " fd " << fd;
  }
  std::printf("[ fd       ] %s whole-model LoRA grads: %d coordinates, worst relative error %.3g\n", GetParam(), checked, worst);
  EXPECT_GE(checked, 6);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TrainModel, ::testing::Values("tiny-llama.gguf", "tiny-qwen2.gguf", "tiny-qwen3.gguf", "stories260K.gguf",
                                                                             "small-llama-Q4_K.gguf"),
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
