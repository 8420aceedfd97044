// The declared-flags parser (cli/args.h) on its own: spellings, repeats,
// defaults, validation messages that name the flag as typed, help text.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/args.h"

namespace slm::cli {
namespace {

Options demo() {
  Options o("demo", "usage: slm demo [options]\n", "notes at the end");
  o.value("--ctx-size,-c", "N", "context size").integer(0, 100).def("8");
  o.value("--temp", "T", "temperature").number().def("0.8");
  o.value("--kind", "K", "kind").choices({"f32", "Q8_0"}).def("f32");
  o.value("--stop", "S", "stop string").repeatable();
  o.value("--parallel", "N", "slots").integer(1, 4).def("2").alias("-np").alias("--slots");
  o.value("--name", "NAME", "a name");
  o.flag("--json", "JSON output");
  return o;
}

Args parse(std::vector<std::string> argv) {
  std::vector<char*> p;
  for (std::string& a : argv) p.push_back(a.data());
  return demo().parse(static_cast<int>(p.size()), p.data());
}

std::string usage_error(std::vector<std::string> argv) {
  try {
    parse(std::move(argv));
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Args, SpellingsDefaultsAndRepeats) {
  const Args a = parse({"-c", "5", "M", "--stop=x", "--stop", "-y", "--name", "a", "--name", "b",
                        "--json", "-np", "3", "--", "-z"});
  EXPECT_EQ(a.get_int("--ctx-size"), 5);
  EXPECT_EQ(a.shown("--ctx-size"), "-c");
  EXPECT_EQ(a.get_all("--stop"),
            (std::vector<std::string>{"x", "-y"}));  // a value may start with '-'
  EXPECT_EQ(*a.get("--name"), "b");                  // the last one wins
  EXPECT_TRUE(a.flag("--json"));
  EXPECT_EQ(a.get_int("--parallel"), 3);
  EXPECT_EQ(a.shown("--parallel"), "-np");
  EXPECT_EQ(a.positional(), (std::vector<std::string>{"M", "-z"}));
  // Absent: the declared default, and has() says it was not given.
  EXPECT_FALSE(a.has("--temp"));
  EXPECT_DOUBLE_EQ(a.get_double("--temp"), 0.8);
  EXPECT_EQ(a.choice("--kind"), "f32");
  EXPECT_FALSE(parse({}).get("--name").has_value());
  const Args b = parse({"-c7", "--kind", "q8_0", "--slots=4", "--temp=-1.5"});
  EXPECT_EQ(b.get_int("--ctx-size"), 7);
  EXPECT_EQ(b.choice("--kind"), "q8_0");
  EXPECT_EQ(b.get_int("--parallel"), 4);
  EXPECT_DOUBLE_EQ(b.get_double("--temp"), -1.5);
  EXPECT_THROW(b.get("--undeclared"), std::logic_error);
}

TEST(Args, UsageErrorsNameTheFlagAsTyped) {
  EXPECT_EQ(usage_error({"--bogus"}), "unknown option --bogus");
  EXPECT_EQ(usage_error({"-x", "1"}), "unknown option -x");
  EXPECT_EQ(usage_error({"-c", "many"}), "option -c: 'many' is not an integer");
  EXPECT_EQ(usage_error({"--ctx-size", "101"}), "option --ctx-size: 101 is out of range [0, 100]");
  EXPECT_EQ(usage_error({"-np", "9"}), "option -np: 9 is out of range [1, 4]");
  EXPECT_EQ(usage_error({"--temp", "hot"}), "option --temp: 'hot' is not a number");
  EXPECT_EQ(usage_error({"--temp", "nan"}), "option --temp: 'nan' is not a number");
  EXPECT_EQ(usage_error({"--kind", "q4"}), "option --kind: expected f32 or q8_0, got 'q4'");
  EXPECT_EQ(usage_error({"-c"}), "option -c needs a value");
  EXPECT_EQ(usage_error({"--json=1"}), "option --json takes no value");
}

TEST(Args, HelpListsEveryFlagWithItsDefault) {
  std::string text;
  try {
    parse({"M", "--bogus", "-h"});
  } catch (const HelpRequest& h) {
    text = h.text;
  }
  EXPECT_EQ(text.rfind("usage: slm demo [options]\n\noptions:\n", 0), 0u) << text;
  EXPECT_NE(text.find("\n  -c, --ctx-size N          context size (default: 8)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\n  -np, --parallel N         slots (default: 2)\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\n  --stop S                  stop string (repeatable)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("\n  -h, --help                print this help and exit\n\nnotes at the end\n"),
      std::string::npos)
      << text;
  EXPECT_EQ(text, demo().help());
}

TEST(Args, DeclarationMistakesAreCaught) {
  Options o("demo", "usage: slm demo\n");
  o.value("--a,-a", "N", "a");
  EXPECT_THROW(o.value("--a", "N", "again"), std::logic_error);
  EXPECT_THROW(o.flag("--b,-a", "same short form"), std::logic_error);
  EXPECT_THROW(o.flag("--c,-cc", "two-letter short form"), std::logic_error);
}

}  // namespace
}  // namespace slm::cli
