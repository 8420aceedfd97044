// One CLI grammar across every command: -h / --help on stdout with exit 0,
// `slm help CMD`, `slm --version`, exit code 2 for usage errors (naming the
// option as typed and pointing at --help), the model as a positional
// argument, and one prompt source for `slm run`.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "cli/run_cmd.h"
#include "common/fixtures.h"

namespace slm::test {
namespace {

std::string stories() { return sh_quote(fixture("models/stories260K.gguf")); }

// The command names `slm --help` lists.
std::vector<std::string> commands() {
  const CmdResult r = run_slm("--help");
  std::vector<std::string> out;
  std::istringstream in(r.out);
  std::string line;
  bool listing = false;
  while (std::getline(in, line)) {
    if (line == "commands:") {
      listing = true;
    } else if (listing && line.rfind("  ", 0) == 0) {
      out.push_back(line.substr(2, line.find(' ', 2) - 2));
    } else if (listing) {
      break;
    }
  }
  return out;
}

TEST(Grammar, TopLevelHelpAndUnknownCommand) {
  const CmdResult r = run_slm("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out.rfind("usage: slm COMMAND", 0), 0u) << r.out;
  EXPECT_EQ(r.err, "");
  const CmdResult none = run_slm("");
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("usage: slm COMMAND"), std::string::npos);
  const CmdResult bad = run_slm("frobnicate");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("unknown command 'frobnicate'"), std::string::npos) << bad.err;
}

TEST(Grammar, EveryCommandHasHelpOnStdout) {
  const std::vector<std::string> cmds = commands();
  ASSERT_GE(cmds.size(), 10u);
  for (const std::string& c : cmds) {
    for (const char* flag : {"--help", "-h"}) {
      const CmdResult r = run_slm(c + " " + flag);
      EXPECT_EQ(r.code, 0) << c << " " << flag << ": " << r.err;
      EXPECT_EQ(r.out.rfind("usage: slm " + c, 0), 0u) << c << " " << flag << ":\n" << r.out;
      EXPECT_EQ(r.err, "") << c << " " << flag;
    }
    const CmdResult h = run_slm("help " + c);
    EXPECT_EQ(h.code, 0) << c;
    EXPECT_EQ(h.out, run_slm(c + " --help").out) << c;
  }
}

TEST(Grammar, Version) {
  const CmdResult r = run_slm("--version");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("slm ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("compiler: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("kernels: scalar"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cpu features: "), std::string::npos) << r.out;
}

TEST(Grammar, UsageErrorsExitWithTwoAndNameTheOptionAsTyped) {
  for (const std::string& c : commands()) {
    const CmdResult r = run_slm(c + " --no-such-flag");
    EXPECT_EQ(r.code, 2) << c << ": " << r.err;
    EXPECT_EQ(r.err, "slm " + c + ": error: unknown option --no-such-flag; see `slm " + c + " --help`\n") << c;
  }
  const CmdResult n = run_slm("run -m " + stories() + " -p hi -n many");
  EXPECT_EQ(n.code, 2) << n.err;
  EXPECT_EQ(n.err, "slm run: error: option -n: 'many' is not an integer; see `slm run --help`\n");
  const CmdResult missing = run_slm("run -m " + stories() + " -p");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("option -p needs a value"), std::string::npos) << missing.err;
  // A runtime error is 1.
  const CmdResult gone = run_slm("run -m /nonexistent/model.gguf -p hi");
  EXPECT_EQ(gone.code, 1) << gone.err;
}

TEST(Grammar, ModelAsPositionalArgument) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const CmdResult a = run_slm("run " + stories() + " 'Once upon' --temp 0 -n 8 -t 1");
  const CmdResult b = run_slm("run --model " + stories() + " -p 'Once upon' --temp 0 -n 8 -t 1");
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_GT(a.out.size(), 5u);
  EXPECT_EQ(a.out.back(), '\n');  // output ends with a newline
  const CmdResult bench = run_slm("bench " + stories() + " -p 8 -n 4 -r 1 -t 1 --json");
  EXPECT_EQ(bench.code, 0) << bench.err;
  const CmdResult extra = run_slm("bench " + stories() + " other");
  EXPECT_EQ(extra.code, 2);
  EXPECT_NE(extra.err.find("unexpected argument 'other'"), std::string::npos) << extra.err;
}

TEST(Grammar, RunTakesOnePromptSource) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const CmdResult r = run_slm("run " + stories() + " -p hi --file /etc/hostname");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("give the prompt once: -p and --file cannot be used together"), std::string::npos) << r.err;
  const CmdResult both = run_slm("run " + stories() + " hello -p hi");
  EXPECT_EQ(both.code, 2) << both.err;
}

}  // namespace
}  // namespace slm::test
