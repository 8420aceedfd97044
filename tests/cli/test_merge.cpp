// slm merge end to end: the merged model's logits equal the base's with the
// adapter applied at run time (`slm logits --lora`): KL below 1e-6 when the
// merged matrices stay F32 (plain and fused Phi-3 tensors), and within the
// re-quantization noise when they are written as Q8_0; tensors the adapter
// does not touch are copied byte for byte; refusals leave no output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cli/run_cmd.h"
#include "common/fixtures.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"

namespace slm::test {
namespace {

template <class T>
std::span<const uint8_t> bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

// A random rank-r adapter (alpha 2r, A and B uniform in +-amplitude) on every base tensor named in
// targets (per layer: "attn_q" -> blk.N.attn_q.weight) that the file has.
std::set<std::string> write_adapter(const std::string& base, const std::string& path,
                                    const std::vector<std::string>& targets, int64_t r,
                                    uint32_t seed, float amplitude = 0.4f) {
  const auto f = gguf::File::open(base);
  gguf::Writer w;
  w.add_string("general.architecture", std::string(*f->get_string("general.architecture")));
  w.add_string("general.type", "adapter");
  w.add_string("adapter.type", "lora");
  w.add_f32("adapter.lora.alpha", static_cast<float>(2 * r));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-amplitude, amplitude);
  std::set<std::string> names;
  for (const gguf::TensorInfo& t : f->tensors()) {
    const std::string name(t.name);
    bool hit = false;
    for (const std::string& s : targets)
      hit = hit ||
            (name.find("." + s + ".weight") != std::string::npos && name.rfind("blk.", 0) == 0);
    if (!hit) continue;
    const int64_t n_in = t.ne[0], n_out = t.ne[1];
    std::vector<float> a(static_cast<size_t>(r * n_in)), b(static_cast<size_t>(n_out * r));
    for (float& x : a) x = u(rng);
    for (float& x : b) x = u(rng);
    w.add_tensor(name + ".lora_a", DType::F32, {n_in, r}, bytes_of(a));
    w.add_tensor(name + ".lora_b", DType::F32, {r, n_out}, bytes_of(b));
    names.insert(name);
  }
  w.write(path);
  return names;
}

const char* kTokens = "1 5 9 200 31 7 64 3 100 17 250 42";

std::vector<float> logits(const std::string& args, const std::string& out) {
  const CmdResult r =
      run_slm("logits " + args + " --tokens '" + kTokens + "' --out " + sh_quote(out));
  EXPECT_EQ(r.code, 0) << r.err;
  const std::string bytes = slurp(out);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// The largest KL(p || q) over positions, in nats, p and q softmaxes of rows of n_vocab.
double max_kl(const std::vector<float>& p_logits, const std::vector<float>& q_logits,
              size_t n_pos) {
  EXPECT_EQ(p_logits.size(), q_logits.size());
  if (p_logits.size() != q_logits.size() || n_pos == 0) return INFINITY;
  const size_t V = p_logits.size() / n_pos;
  double worst = 0;
  for (size_t t = 0; t < n_pos; ++t) {
    const auto lse = [&](const std::vector<float>& z) {
      double mx = -INFINITY, s = 0;
      for (size_t i = 0; i < V; ++i) mx = std::max(mx, static_cast<double>(z[t * V + i]));
      for (size_t i = 0; i < V; ++i) s += std::exp(z[t * V + i] - mx);
      return mx + std::log(s);
    };
    const double lp = lse(p_logits), lq = lse(q_logits);
    double kl = 0;
    for (size_t i = 0; i < V; ++i) {
      const double a = p_logits[t * V + i] - lp, b = q_logits[t * V + i] - lq;
      kl += std::exp(a) * (a - b);
    }
    worst = std::max(worst, kl);
  }
  return worst;
}

constexpr size_t kPositions = 12;

class CliMerge : public ::testing::Test {
 protected:
  void SetUp() override { dir = temp_dir(); }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::string dir;
};

TEST_F(CliMerge, F32MergeEqualsRunTimeAdapterAndCopiesTheRest) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const std::string base = fixture("models/tiny-llama.gguf");
  const std::string adapter = dir + "/a.gguf", merged = dir + "/merged.gguf";
  const std::set<std::string> adapted = write_adapter(
      base, adapter,
      {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}, 4, 1);
  ASSERT_GE(adapted.size(), 7u);
  const CmdResult r = run_slm("merge --model " + sh_quote(base) + " --lora " +
                              sh_quote(adapter + ":0.7") + " -o " + sh_quote(merged) + " -t 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find(std::to_string(adapted.size()) + " of "), std::string::npos) << r.err;

  const auto want = logits("--model " + sh_quote(base) + " --lora " + sh_quote(adapter + ":0.7"),
                           dir + "/want.f32");
  const auto plain = logits("--model " + sh_quote(base), dir + "/base.f32");
  const auto got = logits("--model " + sh_quote(merged), dir + "/got.f32");
  const double kl = max_kl(want, got, kPositions), moved = max_kl(want, plain, kPositions);
  std::printf(
      "[ merge    ] tiny-llama F32: KL(base+adapter || merged) %.3g, KL(base+adapter || base) "
      "%.3g\n",
      kl, moved);
  EXPECT_LT(kl, 1e-6);
  EXPECT_GT(moved, 1e-3);  // the adapter matters, so the check above can fail

  const auto fb = gguf::File::open(base), fm = gguf::File::open(merged);
  ASSERT_EQ(fb->tensors().size(), fm->tensors().size());
  ASSERT_EQ(fb->metadata().size(), fm->metadata().size());
  for (size_t i = 0; i < fb->metadata().size(); ++i)
    EXPECT_EQ(fb->metadata()[i].key, fm->metadata()[i].key);
  for (size_t i = 0; i < fb->tensors().size(); ++i) {
    const gguf::TensorInfo &a = fb->tensors()[i], &b = fm->tensors()[i];
    ASSERT_EQ(a.name, b.name);
    EXPECT_EQ(a.type, b.type) << a.name;
    ASSERT_EQ(a.n_bytes, b.n_bytes) << a.name;
    const bool same = std::memcmp(a.data, b.data, a.n_bytes) == 0;
    EXPECT_EQ(same, adapted.count(std::string(a.name)) == 0) << a.name;
  }
}

// `slm eval --lora` (perplexity and multiple choice) scores the text as the
// F32-merged model does: the adapter reaches every row of both paths.
TEST_F(CliMerge, EvalWithLoraEqualsEvalOfMergedModel) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const std::string base = fixture("models/tiny-llama.gguf");
  const std::string adapter = dir + "/a.gguf", merged = dir + "/merged.gguf";
  write_adapter(base, adapter, {"attn_q", "attn_v", "ffn_up", "ffn_down"}, 4, 3, 0.2f);
  ASSERT_EQ(run_slm("merge --model " + sh_quote(base) + " --lora " + sh_quote(adapter + ":0.8") +
                    " -o " + sh_quote(merged))
                .code,
            0);
  std::string text;
  for (int i = 0; i < 40; ++i)
    text += "The little cat sat on the warm mat and looked at the birds in the tree. ";
  write_file(dir, "t.txt", text);
  std::string tasks;
  for (int i = 0; i < 6; ++i)
    tasks += R"({"context": "The dog ran to the", "endings": ["park and played.", "moon.", )"
             R"("house to sleep.", "tree of birds."], "label": )" +
             std::to_string(i % 4) + "}\n";
  write_file(dir, "c.jsonl", tasks);
  const auto eval = [&](const std::string& model, const std::string& extra) {
    const CmdResult r = run_slm("eval --model " + sh_quote(model) + extra + " --json -t 1");
    EXPECT_EQ(r.code, 0) << r.err;
    return nlohmann::json::parse(r.out.empty() ? "{}" : r.out);
  };
  const std::string ppl = " --file " + sh_quote(dir + "/t.txt") + " -c 32",
                    mc = " --choices " + sh_quote(dir + "/c.jsonl");
  const std::string lora = " --lora " + sh_quote(adapter + ":0.8");
  const auto with = eval(base, lora + ppl), merged_ppl = eval(merged, ppl), plain = eval(base, ppl);
  const double a = with.value("perplexity", 0.0), b = merged_ppl.value("perplexity", -1.0),
               c = plain.value("perplexity", 0.0);
  std::printf("[ merge    ] eval perplexity: base %.6f, --lora %.6f, merged %.6f\n", c, a, b);
  EXPECT_NEAR(a, b, 1e-4 * b);
  EXPECT_GT(std::fabs(a - c), 1e-2 * c);  // the adapter matters here
  const auto mc_with = eval(base, lora + mc), mc_merged = eval(merged, mc);
  for (const char* k : {"acc", "acc_norm_tokens", "acc_norm_chars"})
    EXPECT_EQ(mc_with[k].dump(), mc_merged[k].dump()) << k;
}

TEST_F(CliMerge, RequantizedMergeStaysWithinQuantizationNoise) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const std::string base = fixture("models/tiny-llama.gguf");
  const std::string adapter = dir + "/a.gguf", merged = dir + "/q8.gguf",
                    requant = dir + "/q8-zero.gguf";
  // An adapter of a realistic size: deltas well below the weights' range.
  write_adapter(base, adapter,
                {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}, 4,
                2, 0.1f);
  CmdResult r = run_slm("merge --model " + sh_quote(base) + " --lora " + sh_quote(adapter) +
                        " -o " + sh_quote(merged) + " --type q8_0");
  ASSERT_EQ(r.code, 0) << r.err;
  // The same matrices re-quantized with a zero delta: the noise of Q8_0 alone.
  r = run_slm("merge --model " + sh_quote(base) + " --lora " + sh_quote(adapter + ":0") + " -o " +
              sh_quote(requant) + " --type Q8_0");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto fm = gguf::File::open(merged);
  int n_q8 = 0;
  for (const gguf::TensorInfo& t : fm->tensors()) n_q8 += t.type == DType::Q8_0;
  EXPECT_GE(n_q8, 7);

  const auto want =
      logits("--model " + sh_quote(base) + " --lora " + sh_quote(adapter), dir + "/want.f32");
  const auto plain = logits("--model " + sh_quote(base), dir + "/base.f32");
  const auto got = logits("--model " + sh_quote(merged), dir + "/got.f32");
  const auto noise_logits = logits("--model " + sh_quote(requant), dir + "/noise.f32");
  const double kl = max_kl(want, got, kPositions), noise = max_kl(plain, noise_logits, kPositions);
  const double moved = max_kl(want, plain, kPositions);
  std::printf(
      "[ merge    ] tiny-llama Q8_0: KL(base+adapter || merged) %.3g, Q8_0 noise KL(base || "
      "requantized) %.3g, "
      "KL(base+adapter || base) %.3g\n",
      kl, noise, moved);
  EXPECT_GT(moved, 10 * kl);  // the adapter's effect is far above the merge's error
  // Documented bound: the merged Q8_0 model may be as far from base + adapter
  // as re-quantizing the base alone moves the base (tiny-llama's random
  // weights give peaky logits: that noise is a KL of about 6e-3 here), with a
  // factor 2 of slack for the merged matrices' slightly wider range.
  EXPECT_GT(noise, 0.0);
  EXPECT_LT(kl, 2 * noise);
}

TEST_F(CliMerge, FusedTensorsTakeEachPartsDelta) {
  SLM_REQUIRE_FIXTURE("models/tiny-phi3.gguf");
  const std::string base = fixture("models/tiny-phi3.gguf");
  const std::string adapter = dir + "/a.gguf", merged = dir + "/merged.gguf";
  const auto adapted = write_adapter(base, adapter, {"attn_qkv", "attn_output", "ffn_down"}, 3, 3);
  ASSERT_GE(adapted.size(), 3u);
  const CmdResult r = run_slm("merge --model " + sh_quote(base) + " --lora " + sh_quote(adapter) +
                              " -o " + sh_quote(merged));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto want =
      logits("--model " + sh_quote(base) + " --lora " + sh_quote(adapter), dir + "/want.f32");
  const auto plain = logits("--model " + sh_quote(base), dir + "/base.f32");
  const auto got = logits("--model " + sh_quote(merged), dir + "/got.f32");
  const double kl = max_kl(want, got, kPositions);
  std::printf("[ merge    ] tiny-phi3 fused qkv F32: KL %.3g\n", kl);
  EXPECT_LT(kl, 1e-6);
  EXPECT_GT(max_kl(want, plain, kPositions), 1e-3);
}

TEST_F(CliMerge, Refusals) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  SLM_REQUIRE_FIXTURE("models/tiny-phi3.gguf");
  const std::string base = sh_quote(fixture("models/tiny-llama.gguf"));
  const std::string phi_adapter = dir + "/phi.gguf", out = dir + "/out.gguf";
  write_adapter(fixture("models/tiny-phi3.gguf"), phi_adapter, {"attn_qkv"}, 2, 4);
  CmdResult r = run_slm("merge --model " + base + " --lora " + sh_quote(phi_adapter) + " -o " +
                        sh_quote(out));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("architecture 'phi3'"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));
  r = run_slm("merge --model " + base + " --lora " + sh_quote(phi_adapter) + " -o " +
              sh_quote(out) + " --type Q9_X");
  EXPECT_EQ(r.code, 2) << r.err;
  r = run_slm("merge --model " + base + " -o " + sh_quote(out));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace slm::test
