// `slm convert` end to end: every folder of ../shared/fixtures/hf converted
// and run against llama.cpp's reference logits (hf/README.md), output types
// per --type, a truncated shard refused with no output left, and the
// command's usage errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/run_cmd.h"
#include "common/fixtures.h"
#include "convert/convert.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "model/reference.h"
#include "model/session.h"
#include "tokenizer/tokenizer.h"

namespace slm {
namespace {

namespace fs = std::filesystem;

std::string temp_out(const std::string& name) {
  static const std::string dir = test::temp_dir();
  return dir + "/" + name;
}

std::vector<std::string> hf_folders() {
  std::vector<std::string> names;
  const fs::path dir = test::fixture("hf");
  if (!fs::exists(dir)) return {"missing"};
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && fs::exists(e.path() / "config.json")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// hf/reference/NAME.*.json, else reference/NAME.*.json ("" when none).
std::string reference_for(const std::string& name) {
  for (const char* sub : {"hf/reference", "reference"}) {
    const fs::path dir = test::fixture(sub);
    if (!fs::exists(dir)) continue;
    std::vector<std::string> hits;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string f = e.path().filename().string();
      if (f.rfind(name + ".", 0) == 0 && e.path().extension() == ".json") hits.push_back(std::string(sub) + "/" + f);
    }
    std::sort(hits.begin(), hits.end());
    if (!hits.empty()) return hits.front();
  }
  return "";
}

class ConvertFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(ConvertFixture, MatchesReferenceLogits) {
  SLM_REQUIRE_FIXTURE("hf");
  const std::string name = GetParam();
  const std::string ref_json = reference_for(name);
  ASSERT_FALSE(ref_json.empty()) << "no reference for hf/" << name;
  const std::string out = temp_out(name + "-F32.gguf");
  convert::ConvertOptions options;
  options.type = DType::F32;
  convert::convert_hf(test::fixture("hf/" + name), out, options);

  const test::Reference ref = test::load_reference(test::fixtures_dir(), ref_json);
  const auto model = model::Model::load(out);
  ASSERT_EQ(model->config().n_vocab, ref.n_vocab);

  // The converted tokenizer reproduces the reference prompt's ids.
  const std::string prompt_file = test::fixture("reference/prompts/" + ref.prompt + ".txt");
  if (fs::exists(prompt_file)) {
    std::ifstream in(prompt_file, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), {});
    const auto file = gguf::File::open(out);
    const auto tok = tokenizer::Tokenizer::from_gguf(*file);
    EXPECT_EQ(tok.encode(text, true, true), ref.prompt_tokens);
  }

  std::vector<int32_t> tokens = ref.prompt_tokens;
  tokens.insert(tokens.end(), ref.greedy_tokens.begin(), ref.greedy_tokens.end());
  const int64_t rows = static_cast<int64_t>(ref.logits.size()) / ref.n_vocab;
  ASSERT_LE(rows, static_cast<int64_t>(tokens.size()));
  tokens.resize(rows);
  model::SessionOptions so;
  so.n_ctx = std::max<int64_t>(static_cast<int64_t>(tokens.size()), 16);
  so.allow_beyond_train_ctx = true;
  model::Session session(*model, so);
  ThreadPool pool(2);
  std::vector<float> logits;
  session.feed(tokens, pool, &logits);

  // F32: the same argmax on every row, max difference <= 5e-3 x max |logit|.
  const int64_t V = ref.n_vocab;
  int argmax_mismatch = 0;
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = &ref.logits[r * V];
    const float* b = &logits[r * V];
    float max_abs = 0, max_err = 0;
    for (int64_t i = 0; i < V; ++i) {
      max_abs = std::max(max_abs, std::fabs(a[i]));
      max_err = std::max(max_err, std::fabs(a[i] - b[i]));
    }
    worst = std::max(worst, static_cast<double>(max_err / max_abs));
    argmax_mismatch += std::max_element(a, a + V) - a != std::max_element(b, b + V) - b;
  }
  EXPECT_EQ(argmax_mismatch, 0) << name;
  EXPECT_LE(worst, 5e-3) << name;
  RecordProperty("max_err_ratio", std::to_string(worst));
  fs::remove(out);
}

INSTANTIATE_TEST_SUITE_P(Hf, ConvertFixture, ::testing::ValuesIn(hf_folders()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

TEST(Convert, TiedLlamaHasNoOutputMatrix) {
  SLM_REQUIRE_FIXTURE("hf/tiny-llama3");
  const std::string out = temp_out("tied.gguf");
  convert::ConvertOptions options;
  options.type = DType::F32;
  convert::convert_hf(test::fixture("hf/tiny-llama3"), out, options);
  const auto f = gguf::File::open(out);
  EXPECT_EQ(f->find_tensor("output.weight"), nullptr);
  EXPECT_NE(f->find_tensor("token_embd.weight"), nullptr);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_string("tokenizer.ggml.pre"), "qwen2");
  EXPECT_TRUE(f->get_string("tokenizer.chat_template").has_value());
  fs::remove(out);
}

TEST(Convert, TypeOptionSetsTensorTypes) {
  SLM_REQUIRE_FIXTURE("hf/tiny-qwen3");
  for (DType t : {DType::F16, DType::BF16, DType::Q8_0}) {
    const std::string out = temp_out("typed.gguf");
    convert::ConvertOptions options;
    options.type = t;
    convert::convert_hf(test::fixture("hf/tiny-qwen3"), out, options);
    const auto f = gguf::File::open(out);
    for (const char* m : {"token_embd.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight"}) {
      const gguf::TensorInfo* ti = f->find_tensor(m);
      ASSERT_NE(ti, nullptr) << m;
      EXPECT_EQ(ti->type, t) << m << " for " << dtype_name(t);
    }
    for (const char* v : {"output_norm.weight", "blk.0.attn_norm.weight", "blk.0.attn_q_norm.weight"}) {
      const gguf::TensorInfo* ti = f->find_tensor(v);
      ASSERT_NE(ti, nullptr) << v;
      EXPECT_EQ(ti->type, DType::F32) << v;  // norms stay F32
    }
    // Loads and runs.
    const auto model = model::Model::load(out);
    model::SessionOptions so;
    so.n_ctx = 16;
    model::Session session(*model, so);
    ThreadPool pool(1);
    std::vector<float> logits;
    session.feed(std::vector<int32_t>{151644, 872}, pool, &logits);
    EXPECT_TRUE(std::all_of(logits.begin(), logits.end(), [](float x) { return std::isfinite(x); }));
    fs::remove(out);
  }
}

TEST(Convert, TruncatedShardIsACleanErrorWithNoOutput) {
  SLM_REQUIRE_FIXTURE("hf/tiny-llama3");
  const fs::path src = test::fixture("hf/tiny-llama3");
  const fs::path dir = temp_out("truncated");
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(src)) {
    const std::string f = e.path().filename().string();
    if (f == "model-00002-of-00002.safetensors") {
      std::ifstream in(e.path(), std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), {});
      bytes.resize(bytes.size() - 100);
      std::ofstream(dir / f, std::ios::binary) << bytes;
    } else if (!fs::exists(dir / f)) {
      fs::create_symlink(e.path(), dir / f);
    }
  }
  const std::string out = temp_out("truncated.gguf");
  try {
    convert::convert_hf(dir.string(), out, {});
    FAIL() << "a truncated shard was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model-00002-of-00002.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".tmp"));
}

TEST(Convert, MissingFolderAndUnknownArchitecture) {
  EXPECT_THROW(convert::convert_hf("/nonexistent/hf", temp_out("x.gguf"), {}), Error);
  const fs::path dir = temp_out("gptneox");
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << R"({"architectures": ["GPTNeoXForCausalLM"]})";
  try {
    convert::convert_hf(dir.string(), temp_out("x.gguf"), {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("GPTNeoXForCausalLM"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(temp_out("x.gguf")));
}

TEST(ConvertCli, UsageErrorsExitTwo) {
  EXPECT_EQ(test::run_slm("convert --help").code, 0);
  EXPECT_NE(test::run_slm("convert --help").out.find("slm convert HF_DIR"), std::string::npos);
  const test::CmdResult none = test::run_slm("convert");
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("slm convert --help"), std::string::npos) << none.err;
  EXPECT_EQ(test::run_slm("convert /tmp").code, 2);  // no -o
  EXPECT_EQ(test::run_slm("convert /tmp -o x.gguf --type Q4_0").code, 2);
  EXPECT_EQ(test::run_slm("convert /nonexistent/hf -o " + temp_out("y.gguf")).code, 1);
}

TEST(ConvertCli, ConvertsAFixture) {
  SLM_REQUIRE_FIXTURE("hf/tiny-qwen3");
  const std::string out = temp_out("cli.gguf");
  const test::CmdResult r =
      test::run_slm("convert " + test::sh_quote(test::fixture("hf/tiny-qwen3")) + " -o " + out + " --type Q8_0");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out));
  fs::remove(out);
}

}  // namespace
}  // namespace slm
