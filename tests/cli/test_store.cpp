// slm pull / list / rm end to end, without a network: a pull from a loopback
// port nothing listens on fails at once with the cause and a hint, and
// partial downloads show in `slm list` and go with `slm rm`.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "cli/run_cmd.h"
#include "common/fixtures.h"
#include "store/store.h"
#include "store/store_test_util.h"

namespace slm::test {
namespace {

// A loopback port that was free a moment ago and that nothing listens on.
int closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

TEST(Pull, UnreachableHubFailsFastNamingTheCause) {
  const TempDir home;
  const ScopedEnv slm_home("SLM_HOME", home.path().string());
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(closed_port());
  const ScopedEnv hf("HF_ENDPOINT", endpoint);
  const auto start = std::chrono::steady_clock::now();
  const CmdResult r = run_slm("pull test-owner/tiny-GGUF/stories260K.gguf", "", 60);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_LT(secs, 5.0) << r.err;
  // What it is doing comes first, then one error line with the cause and a hint.
  EXPECT_EQ(r.err.rfind("slm pull: downloading " + endpoint +
                            "/test-owner/tiny-GGUF/resolve/main/stories260K.gguf\n",
                        0),
            0u)
      << r.err;
  EXPECT_NE(r.err.find("Connection refused"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("HF_ENDPOINT"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;
  // Nothing was received, so nothing is left behind.
  const CmdResult list = run_slm("list");
  EXPECT_EQ(list.code, 0) << list.err;
  EXPECT_NE(list.out.find("no models"), std::string::npos) << list.out;
  // The empty store says how to fill it, both ways a pull is written.
  EXPECT_NE(list.out.find("slm pull OWNER/REPO:QUANT"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("slm pull OWNER/REPO/FILE.gguf"), std::string::npos) << list.out;
  // A failed pull leaves no empty folder for the repository either.
  EXPECT_FALSE(std::filesystem::exists(home.path() / "models" / "test-owner--tiny-GGUF"));
}

TEST(Store, ListShowsPartialDownloadsAndRmRemovesThem) {
  const TempDir home;
  const ScopedEnv slm_home("SLM_HOME", home.path().string());
  const auto part = home.path() / "models" / "owner--repo-GGUF" / "half.gguf.part";
  write_file(part, std::string(2048, 'x'));
  CmdResult r = run_slm("list");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("owner/repo-GGUF/half.gguf"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("partial"), std::string::npos) << r.out;
  r = run_slm("rm half.gguf");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("removed the partial download owner/repo-GGUF/half.gguf"), std::string::npos)
      << r.out;
  EXPECT_FALSE(std::filesystem::exists(part));
  r = run_slm("rm half.gguf");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no model named 'half.gguf'"), std::string::npos) << r.err;
}

// A model in the store lists with what its header says: architecture, the
// quantization of most weight bytes, parameters and the file's date.
TEST(Store, ListShowsArchitectureQuantizationParametersAndDate) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const TempDir home;
  const ScopedEnv slm_home("SLM_HOME", home.path().string());
  const auto dest = home.path() / "models" / "owner--tiny-GGUF" / "stories260K.gguf";
  std::filesystem::create_directories(dest.parent_path());
  std::filesystem::copy_file(fixture("models/stories260K.gguf"), dest);
  store::ModelEntry e;
  e.name = "owner/tiny-GGUF/stories260K.gguf";
  e.file = "owner--tiny-GGUF/stories260K.gguf";
  e.size = std::filesystem::file_size(dest);
  store::Store(home.path()).add(e, true);
  const CmdResult r = run_slm("list");
  ASSERT_EQ(r.code, 0) << r.err;
  const size_t header = r.out.find("NAME");
  ASSERT_NE(header, std::string::npos) << r.out;
  for (const char* col : {"ARCH", "QUANT", "PARAMS", "DATE"})
    EXPECT_NE(r.out.find(col, header), std::string::npos) << col << "\n" << r.out;
  const size_t row = r.out.find("* owner/tiny-GGUF/stories260K.gguf");
  ASSERT_NE(row, std::string::npos) << r.out;
  const std::string line = r.out.substr(row, r.out.find('\n', row) - row);
  EXPECT_NE(line.find(" llama "), std::string::npos) << line;
  EXPECT_NE(line.find(" F32 "), std::string::npos) << line;
  EXPECT_NE(line.find(" 293K "), std::string::npos) << line;
  EXPECT_NE(line.find(" 20"), std::string::npos) << line;  // the year of the file's date
}

}  // namespace
}  // namespace slm::test
