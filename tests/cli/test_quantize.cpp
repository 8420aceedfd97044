// End-to-end tests of slm quantize: help, usage errors (exit 2 naming the
// argument), runtime errors (exit 1) that leave no output file, a truncated
// imatrix, requantize refusal, Ctrl-C, and a file that loads and runs.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "cli/run_cmd.h"
#include "common/fixtures.h"
#include "gguf/writer.h"

namespace slm::test {
namespace {

namespace fs = std::filesystem;

const std::string& dir() {
  static const std::string d = temp_dir();
  return d;
}

std::string out_path(const std::string& name) {
  return dir() + "/" + name;
}

bool leaves_nothing(const std::string& path) {
  return !fs::exists(path) && !fs::exists(path + ".tmp");
}

TEST(QuantizeCli, HelpAndUsageErrors) {
  const CmdResult help = run_slm("quantize --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("Q4_K_M"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("--imatrix"), std::string::npos);
  EXPECT_NE(run_slm("help quantize").out.find("--allow-requantize"), std::string::npos);
  EXPECT_NE(run_slm("--help").out.find("quantize"), std::string::npos);

  const std::string out = out_path("usage.gguf");
  const CmdResult unknown = run_slm("quantize in.gguf " + sh_quote(out) + " Q9_9");
  EXPECT_EQ(unknown.code, 2);
  EXPECT_NE(unknown.err.find("'Q9_9'"), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("slm quantize --help"), std::string::npos) << unknown.err;
  const CmdResult missing = run_slm("quantize in.gguf " + sh_quote(out));
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("TYPE"), std::string::npos) << missing.err;
  const CmdResult extra = run_slm("quantize a b Q4_0 c");
  EXPECT_EQ(extra.code, 2);
  EXPECT_NE(extra.err.find("'c'"), std::string::npos) << extra.err;
  const CmdResult flag = run_slm("quantize a b Q4_0 --bogus");
  EXPECT_EQ(flag.code, 2);
  EXPECT_NE(flag.err.find("--bogus"), std::string::npos) << flag.err;
  const CmdResult threads = run_slm("quantize a b Q4_0 -t 0");
  EXPECT_EQ(threads.code, 2);
  EXPECT_NE(threads.err.find("-t"), std::string::npos) << threads.err;
  EXPECT_TRUE(leaves_nothing(out));
}

TEST(QuantizeCli, MissingInputFails) {
  const std::string out = out_path("missing.gguf");
  const CmdResult r =
      run_slm("quantize " + sh_quote(dir() + "/nope.gguf") + " " + sh_quote(out) + " Q4_0");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("nope.gguf"), std::string::npos) << r.err;
  EXPECT_TRUE(leaves_nothing(out));
}

TEST(QuantizeCli, QuantizesAndTheResultRuns) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string out = out_path("stories-q8.gguf");
  const CmdResult r = run_slm("quantize " + sh_quote(fixture("models/stories260K.gguf")) + " " +
                              sh_quote(out) + " Q8_0 --pure -t 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("blk.0.attn_q.weight"), std::string::npos) << r.err;  // progress lines
  EXPECT_NE(r.err.find("-> Q8_0"), std::string::npos) << r.err;
  // Sizes in binary units, as every other command prints them.
  EXPECT_TRUE(std::regex_search(r.err, std::regex(R"(\d+\.\d (KiB|MiB) -> +\d+\.\d (KiB|MiB)\n)")))
      << r.err;
  EXPECT_EQ(r.err.find(" MB"), std::string::npos) << r.err;
  const CmdResult run = run_slm("run " + sh_quote(out) + " -p '' --temp 0 -n 8");
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_FALSE(run.out.empty());
  fs::remove(out);
}

TEST(QuantizeCli, TruncatedImatrixFailsNamingTheFile) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string im = out_path("cut.dat");
  {
    std::ofstream f(im, std::ios::binary);
    const int32_t header[] = {3, 19};  // three entries promised; the first name cut short
    f.write(reinterpret_cast<const char*>(header), sizeof header);
    f.write("blk.0.attn", 10);
  }
  const std::string out = out_path("imatrix.gguf");
  const CmdResult r = run_slm("quantize " + sh_quote(fixture("models/stories260K.gguf")) + " " +
                              sh_quote(out) + " Q4_K_M --imatrix " + sh_quote(im));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cut.dat"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
  EXPECT_TRUE(leaves_nothing(out));
}

TEST(QuantizeCli, RequantizeRefusedWithoutTheFlag) {
  SLM_REQUIRE_FIXTURE("models/small-llama-Q4_0.gguf");
  const std::string out = out_path("requant.gguf");
  const std::string in = sh_quote(fixture("models/small-llama-Q4_0.gguf"));
  const CmdResult r = run_slm("quantize " + in + " " + sh_quote(out) + " Q8_0");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--allow-requantize"), std::string::npos) << r.err;
  EXPECT_TRUE(leaves_nothing(out));
  const CmdResult ok = run_slm("quantize " + in + " " + sh_quote(out) + " Q8_0 --allow-requantize");
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_TRUE(fs::exists(out));
  fs::remove(out);
}

// SIGINT mid-run: exit non-zero with no OUT and no temporary file. The input
// is one wide F32 matrix (96 MB) whose Q2_K fit on one thread takes seconds;
// the signal comes once the temporary output exists (the handler is in
// place by then).
TEST(QuantizeCli, InterruptLeavesNothing) {
  const std::string in = out_path("wide.gguf"), out = out_path("interrupted.gguf");
  {
    gguf::Writer w;
    w.add_string("general.architecture", "llama");
    w.add_tensor_lazy("blk.0.ffn_up.weight", DType::F32, {3072, 8192}, [](uint8_t* dst) {
      float* x = reinterpret_cast<float*>(dst);
      for (int64_t i = 0; i < int64_t{3072} * 8192; ++i)
        x[i] = static_cast<float>((i * 7919) % 1000) * 1e-3f - 0.5f;
    });
    w.write(in);
  }
  const std::string tmp = sh_quote(out + ".tmp");
  const std::string script =
      std::string(SLM_BIN) + " quantize " + sh_quote(in) + " " + sh_quote(out) +
      " Q2_K -t 1 2>/dev/null & pid=$!; for i in $(seq 200); do [ -e " + tmp +
      " ] && break; sleep 0.05; done; sleep 0.05; kill -INT $pid; wait $pid; echo $?";
  std::FILE* p = popen(("sh -c " + sh_quote(script)).c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[32] = {};
  ASSERT_NE(std::fgets(buf, sizeof buf, p), nullptr);
  pclose(p);
  EXPECT_EQ(std::atoi(buf), 1) << buf;  // the error path, not a kill by the signal
  EXPECT_TRUE(leaves_nothing(out));
  fs::remove(in);
}

}  // namespace
}  // namespace slm::test
