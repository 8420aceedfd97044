// End-to-end tests of slm grammar: exit codes 0 / 1 (with the byte offset) / 2.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/run_cmd.h"
#include "common/fixtures.h"

namespace slm::test {
namespace {

std::string write(const std::string& name, const std::string& text) {
  static const std::string dir = temp_dir();
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return sh_quote(path);
}

TEST(GrammarCli, JsonSchemaCheck) {
  const std::string schema =
      write("s.json", R"({"type":"object","properties":{"n":{"type":"integer","minimum":1}},"required":["n"]})");
  const CmdResult ok = run_slm("grammar check --json-schema " + schema + " --input " + write("ok.json", "{\"n\": 12}"));
  EXPECT_EQ(ok.code, 0) << ok.out << ok.err;
  const CmdResult bad = run_slm("grammar check --json-schema " + schema + " --input " + write("bad.json", "{\"n\": 0}"));
  EXPECT_EQ(bad.code, 1) << bad.out << bad.err;
  EXPECT_NE(bad.out.find("byte 6"), std::string::npos) << bad.out;
  const CmdResult shortdoc = run_slm("grammar check --json-schema " + schema + " --input " + write("short.json", "{\"n\": 1"));
  EXPECT_EQ(shortdoc.code, 1);
  EXPECT_NE(shortdoc.out.find("byte 7"), std::string::npos) << shortdoc.out;
}

TEST(GrammarCli, GbnfCheckAndPrint) {
  const std::string g = write("g.gbnf", "root ::= \"a\"+ \"b\"\n");
  EXPECT_EQ(run_slm("grammar check --grammar " + g + " --input " + write("d1", "aab")).code, 0);
  const CmdResult r = run_slm("grammar check --grammar " + g + " --input " + write("d2", "aac"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("byte 2"), std::string::npos) << r.out;
  const CmdResult p = run_slm("grammar gbnf --json-schema " + write("t.json", R"({"type":"boolean"})"));
  EXPECT_EQ(p.code, 0);
  EXPECT_NE(p.out.find("root ::="), std::string::npos);
}

TEST(GrammarCli, UsageErrorsExitTwo) {
  const std::string g = write("g2.gbnf", "root ::= \"a\"\n");
  EXPECT_EQ(run_slm("grammar").code, 2);
  EXPECT_EQ(run_slm("grammar check --input " + g).code, 2);                        // no grammar
  EXPECT_EQ(run_slm("grammar check --grammar " + g).code, 2);                      // no input
  EXPECT_EQ(run_slm("grammar check --grammar " + g + " --json-schema x --input y").code, 2);
  EXPECT_EQ(run_slm("grammar frob --grammar " + g).code, 2);
  EXPECT_EQ(run_slm("grammar check --bogus 1").code, 2);
  const CmdResult bad = run_slm("grammar check --grammar " + write("bad.gbnf", "root ::= [a\n") +
                                " --input " + g);
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("1:10: unterminated character class"), std::string::npos) << bad.err;
  const CmdResult schema = run_slm("grammar check --json-schema " +
                                   write("u.json", R"({"properties":{"x":{"propertyNames":{}}}})") +
                                   " --input " + g);
  EXPECT_EQ(schema.code, 2);
  EXPECT_NE(schema.err.find("/properties/x/propertyNames"), std::string::npos) << schema.err;
}

TEST(GrammarCli, BenchPrintsMaskTimesAsJson) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const std::string schema = write("b.json", R"({"type":"object","properties":{"a":{"type":"integer"}}})");
  const CmdResult r = run_slm("grammar bench --model " + sh_quote(fixture("models/tiny-llama.gguf")) +
                              " --json-schema " + schema + " --input " + write("b.doc", "{\"a\": 123}"));
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["complete"], true);
  EXPECT_GT(j["tokens"].get<int>(), 0);
  EXPECT_GE(j["mask_us"]["p99"].get<double>(), j["mask_us"]["p50"].get<double>());
  EXPECT_TRUE(j.contains("compile_us"));
  const CmdResult bad = run_slm("grammar bench --model " + sh_quote(fixture("models/tiny-llama.gguf")) +
                                " --json-schema " + schema + " --input " + write("b2.doc", "{\"a\": x}"));
  EXPECT_EQ(bad.code, 1) << bad.out;
}

}  // namespace
}  // namespace slm::test
