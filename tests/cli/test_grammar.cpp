// One CLI grammar across every command: -h / --help on stdout with exit 0,
// `slm help CMD`, `slm --version`, exit code 2 for usage errors (naming the
// option as typed and pointing at --help), the model as a positional
// argument, and one prompt source for `slm run`.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "cli/run_cmd.h"
#include "common/fixtures.h"

namespace slm::test {
namespace {

std::string stories() {
  return sh_quote(fixture("models/stories260K.gguf"));
}

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

// One row of `slm help --flags`, cells unescaped.
struct FlagRow {
  std::string command, flag, shorts, def, help;
};

std::vector<FlagRow> flag_table(const std::string& text) {
  std::vector<FlagRow> rows;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("| ", 0) != 0) continue;
    std::vector<std::string> cells;
    std::string cur;
    for (size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
        cur += '|';
        ++i;
      } else if (line[i] == '|') {
        const size_t b = cur.find_first_not_of(' '), e = cur.find_last_not_of(' ');
        cells.push_back(b == std::string::npos ? "" : cur.substr(b, e - b + 1));
        cur.clear();
      } else {
        cur += line[i];
      }
    }
    if (cells.size() != 5 || cells[0] == "command") continue;
    rows.push_back({cells[0], cells[1], cells[2], cells[3], cells[4]});
  }
  return rows;
}

// The table of every command's flags comes from the same declarations as
// each --help, so they agree: every row's flag, short forms and default are
// in that command's help, and every command `slm --help` lists has rows.
TEST(Grammar, FlagTableAgreesWithEveryHelp) {
  const CmdResult table = run_slm("help --flags");
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("| command | flag | short | default | help |\n", 0), 0u) << table.out;
  const std::vector<FlagRow> rows = flag_table(table.out);
  ASSERT_GE(rows.size(), 100u);
  std::map<std::string, std::string> helps;
  for (const std::string& c : commands()) {
    helps[c] = run_slm(c + " --help").out;
    EXPECT_TRUE(std::any_of(rows.begin(), rows.end(), [&](const FlagRow& r) {
      return r.command == c;
    })) << c;
  }
  std::map<std::string, std::set<std::string>>
      short_meaning;  // "-c" -> the long names it stands for
  for (const FlagRow& r : rows) {
    ASSERT_TRUE(helps.count(r.command)) << r.command << " is in the table but not in `slm --help`";
    const std::string& help = helps[r.command];
    // The help line: "  -c, --ctx-size N   context size ... (default: 0)".
    std::string spelled;
    std::istringstream shorts(r.shorts);
    for (std::string s; std::getline(shorts, s, ',');)
      spelled += s.substr(s.find_first_not_of(' ')) + ", ";
    const std::string name = r.flag.substr(0, r.flag.find(' '));
    const size_t at = help.find("\n  " + spelled + r.flag + " ");
    ASSERT_NE(at, std::string::npos)
        << r.command << ": no line for '" << spelled << r.flag << "' in\n"
        << help;
    const std::string line = help.substr(at + 1, help.find('\n', at + 1) - at - 1);
    EXPECT_NE(line.find(r.help), std::string::npos) << r.command << " " << r.flag << ": " << line;
    if (!r.def.empty()) {
      EXPECT_NE(line.find("(default: " + r.def + ")"), std::string::npos) << line;
    } else {
      EXPECT_EQ(line.find("(default: "), std::string::npos) << line;
    }
    if (!r.shorts.empty()) short_meaning[r.shorts].insert(name);
  }
  // One short form means one thing in every command.
  for (const auto& [s, names] : short_meaning) {
    std::string all;
    for (const std::string& n : names) all += n + " ";
    EXPECT_EQ(names.size(), 1u) << s << " stands for " << all;
  }
  // The llama.cpp-compatible ones.
  for (const auto& [s, name] : std::map<std::string, std::string>{{"-m", "--model"},
                                                                  {"-p", "--prompt"},
                                                                  {"-n", "--n-predict"},
                                                                  {"-c", "--ctx-size"},
                                                                  {"-t", "--threads"},
                                                                  {"-s", "--seed"},
                                                                  {"-f", "--file"},
                                                                  {"-h", "--help"}})
    EXPECT_EQ(short_meaning[s], std::set<std::string>{name}) << s;
}

// Every command that takes a context (--ctx-size) can be told to go beyond
// the model's training length, so the hint slm gives when it refuses names
// a switch that exists there. `info` only estimates memory for -c: it
// refuses nothing; `train` sets the new model's training context with -c.
TEST(Grammar, EveryCommandTakingAContextHasAllowLongContext) {
  const CmdResult table = run_slm("help --flags");
  ASSERT_EQ(table.code, 0) << table.err;
  std::set<std::string> with_ctx, with_allow;
  for (const FlagRow& r : flag_table(table.out)) {
    if (r.flag.rfind("--ctx-size", 0) == 0) with_ctx.insert(r.command);
    if (r.flag == "--allow-long-context") with_allow.insert(r.command);
  }
  EXPECT_TRUE(with_ctx.count("serve") && with_ctx.count("finetune")) << table.out;
  with_ctx.erase("info");
  with_ctx.erase("train");
  EXPECT_EQ(with_ctx, with_allow);
}

TEST(Grammar, Version) {
  const CmdResult r = run_slm("--version");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("slm ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("compiler: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("kernels: scalar"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cpu features: "), std::string::npos) << r.out;
  // The commit is the one built, not the one cmake last configured: it is
  // refreshed at every build (cmake/git_commit.cmake).
  std::string head;
  if (FILE* p = popen(
          ("git -C " + sh_quote(SLM_SOURCE_DIR) + " rev-parse --short=12 HEAD 2>/dev/null").c_str(),
          "r")) {
    char buf[64];
    while (std::fgets(buf, sizeof buf, p) != nullptr) head += buf;
    if (pclose(p) != 0) head.clear();
  }
  while (!head.empty() && (head.back() == '\n' || head.back() == '\r')) head.pop_back();
  if (!head.empty()) {
    EXPECT_NE(r.out.substr(0, r.out.find('\n')).find("(commit " + head + ")"), std::string::npos)
        << r.out << " vs HEAD " << head;
  }
}

TEST(Grammar, UsageErrorsExitWithTwoAndNameTheOptionAsTyped) {
  for (const std::string& c : commands()) {
    const CmdResult r = run_slm(c + " --no-such-flag");
    EXPECT_EQ(r.code, 2) << c << ": " << r.err;
    EXPECT_EQ(r.err,
              "slm " + c + ": error: unknown option --no-such-flag; see `slm " + c + " --help`\n")
        << c;
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
  const CmdResult bench = run_slm("bench " + stories() + " --n-prompt 8 -n 4 -r 1 -t 1 --json");
  EXPECT_EQ(bench.code, 0) << bench.err;
  const CmdResult extra = run_slm("bench " + stories() + " other");
  EXPECT_EQ(extra.code, 2);
  EXPECT_NE(extra.err.find("unexpected argument 'other'"), std::string::npos) << extra.err;
}

TEST(Grammar, RunTakesOnePromptSource) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const CmdResult r = run_slm("run " + stories() + " -p hi --file /etc/hostname");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("give the prompt once: -p and --file cannot be used together"),
            std::string::npos)
      << r.err;
  const CmdResult both = run_slm("run " + stories() + " hello -p hi");
  EXPECT_EQ(both.code, 2) << both.err;
}

}  // namespace
}  // namespace slm::test
