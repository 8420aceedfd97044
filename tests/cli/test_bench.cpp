// slm bench end to end on stories260K: its table stays aligned, counts read
// as people write them, and numbers that would mislead come with a warning.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/bench_table.h"
#include "cli/run_cmd.h"
#include "common/fixtures.h"

namespace slm::test {
namespace {

// Display width of a UTF-8 line (code points; the table has no wide characters).
size_t width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

TEST(Bench, TableIsAlignedAndWarningsAreGiven) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  // 600 prompt tokens: past stories260K's 128-token training context.
  const CmdResult r =
      run_slm("bench " + sh_quote(fixture("models/stories260K.gguf")) +
              " --n-prompt 600 -n 4 -r 1 -t " + std::to_string(cores + 1) + " --bandwidth-gbs 10");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: " + std::to_string(cores + 1) + " threads on " +
                       std::to_string(cores) + " cores"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("exceed the model's training context of 128"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("293K params"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1.1 MiB, "), std::string::npos) << r.out;  // the file size in binary units
  std::vector<std::string> table;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] == '|') table.push_back(line);
  ASSERT_EQ(table.size(), 4u) << r.out;
  for (const std::string& line : table) EXPECT_EQ(width(line), width(table[0])) << r.out;
  EXPECT_EQ(table[2].rfind("| pp600 ", 0), 0u) << r.out;
  EXPECT_EQ(table[3].rfind("| tg4   ", 0), 0u) << r.out;
}

// On a terminal a long run shows what it is doing (warm-up, repetition i/n)
// and clears that line before the table; through a pipe nothing of it.
TEST(Bench, ProgressOnATerminalOnly) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string args = "bench " + sh_quote(fixture("models/stories260K.gguf")) +
                           " --n-prompt 16 -n 4 -r 2 --bandwidth-gbs 10";
  if (std::system("command -v script >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "no script(1) for a pty";
  // script(1) runs slm on a pseudo-terminal (stdout and stderr both) and
  // copies what it wrote to its own stdout.
  const std::string dir = temp_dir();
  const int rc = std::system(("script -qec " + sh_quote(std::string(SLM_BIN) + " " + args) +
                              " /dev/null </dev/null >" + dir + "/tty")
                                 .c_str());
  CmdResult tty;
  tty.out = slurp(dir + "/tty");
  ASSERT_EQ(rc, 0) << tty.out;
  EXPECT_NE(tty.out.find("\rwarming up..."), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.find("\rrepetition 2/2..."), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.find("\r\033[Kmodel: "), std::string::npos) << tty.out;
  const CmdResult piped = run_slm(args);
  ASSERT_EQ(piped.code, 0) << piped.err;
  EXPECT_EQ(piped.err.find("warming up"), std::string::npos) << piped.err;
}

// Numbers a real run may give (a six-digit rate, a spread wider than the
// five columns once reserved for it) keep every bar and every "±" in line.
TEST(Bench, TableStaysAlignedForWideNumbers) {
  const std::string t = cli::bench_table({{"pp512", 123456.789, 15291.57}, {"tg128", 12.5, 0.01}});
  std::vector<std::string> lines;
  std::istringstream in(t);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u) << t;
  for (const std::string& line : lines) EXPECT_EQ(width(line), width(lines[0])) << t;
  EXPECT_EQ(lines[2], "| pp512 | 123456.79 ± 15291.57 |") << t;
  EXPECT_EQ(lines[3], "| tg128 |     12.50 ±     0.01 |") << t;
  EXPECT_EQ(lines[2].find("±"), lines[3].find("±")) << t;
  // Ordinary numbers keep the usual width.
  EXPECT_EQ(
      cli::bench_table({{"tg4", 30673.27, 67.53}}),
      "| test |              t/s |\n|------|------------------|\n| tg4  | 30673.27 ± 67.53 |\n");
}

// --depth fills the cache before the tests and is reported; the cache's
// size follows --kv-type (f32 twice f16, per position) and the depth.
TEST(Bench, DepthAndKvTypeAreReported) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  auto kv_bytes = [](const std::string& out) {
    const size_t at = out.find("\"kv_bytes\": ");
    return at == std::string::npos ? -1.0 : std::atof(out.c_str() + at + 12);
  };
  std::map<std::string, double> bytes;
  for (const std::string kv : {"f32", "f16"}) {
    const CmdResult r =
        run_slm("bench " + sh_quote(fixture("models/stories260K.gguf")) +
                " -d 40 --n-prompt 0 -n 4 -r 1 --json --bandwidth-gbs 10 --kv-type " + kv);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("\"depth\": 40,"), std::string::npos) << r.out;
    bytes[kv] = kv_bytes(r.out);
  }
  EXPECT_GT(bytes["f16"], 0);
  EXPECT_EQ(bytes["f32"], 2 * bytes["f16"]);
  const CmdResult d =
      run_slm("bench " + sh_quote(fixture("models/stories260K.gguf")) +
              " -d 80 --n-prompt 0 -n 4 -r 1 --json --bandwidth-gbs 10 --kv-type f16");
  ASSERT_EQ(d.code, 0) << d.err;
  // 85 positions against 45: the cache grows with the depth.
  EXPECT_NEAR(kv_bytes(d.out) / bytes["f16"], 85.0 / 45.0, 1e-9) << d.out;
}

}  // namespace
}  // namespace slm::test
