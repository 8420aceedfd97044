// Tool-call syntaxes per family (engine/tool_calls.h): detection from the
// fixture chat templates, parsing of real-looking answers (whole and streamed
// in small pieces), and the required-call grammar accepting exactly calls whose
// arguments validate.
#include "engine/tool_calls.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "common/fixtures.h"
#include "base/error.h"
#include "grammar/grammar.h"
#include "grammar/matcher.h"

namespace slm::engine {
namespace {

ToolParse streamed(ToolFormat f, std::string_view text, size_t piece) {
  ToolCallStream s(f);
  ToolParse all;
  auto add = [&](ToolParse&& p) {
    all.content += p.content;
    for (auto& c : p.calls) all.calls.push_back(std::move(c));
  };
  for (size_t i = 0; i < text.size(); i += piece) add(s.feed(text.substr(i, piece)));
  add(s.finish());
  return all;
}

// Whole and streamed (1, 3 and 7 bytes a piece) parses agree on the calls;
// content agrees up to surrounding whitespace.
void expect_calls(ToolFormat f, std::string_view text, const std::vector<ToolCall>& want,
                  std::string_view content = "") {
  for (size_t piece : {size_t{0}, size_t{1}, size_t{3}, size_t{7}}) {
    SCOPED_TRACE("piece " + std::to_string(piece));
    const ToolParse p = piece == 0 ? parse_tool_calls(f, text) : streamed(f, text, piece);
    ASSERT_EQ(p.calls.size(), want.size()) << text;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(p.calls[i].name, want[i].name);
      EXPECT_EQ(p.calls[i].arguments, want[i].arguments);
    }
    std::string c = p.content;
    while (!c.empty() && (c.back() == '\n' || c.back() == ' ')) c.pop_back();
    while (!c.empty() && (c.front() == '\n' || c.front() == ' ')) c.erase(0, 1);
    EXPECT_EQ(c, content);
    if (!want.empty()) {
      EXPECT_EQ(c.find("<tool_call>"), std::string::npos);
    }
  }
}

TEST(ToolCalls, DetectsFamiliesFromFixtureTemplates) {
  SLM_REQUIRE_FIXTURE("templates/src/Qwen-Qwen3.jinja");
  const std::string dir = test::fixture("templates/src");
  auto read = [&](const std::string& name) {
    std::ifstream in(dir + "/" + name);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(detect_tool_format(read("Qwen-Qwen2.5-7B-Instruct.jinja")), ToolFormat::kHermes);
  EXPECT_EQ(detect_tool_format(read("Qwen-Qwen3.jinja")), ToolFormat::kHermes);
  EXPECT_EQ(detect_tool_format(read("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja")), ToolFormat::kHermes);
  EXPECT_EQ(detect_tool_format(read("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja")), ToolFormat::kHermes);
  EXPECT_EQ(detect_tool_format(read("meta-llama-Llama-3.1-8B-Instruct.jinja")), ToolFormat::kLlama3);
  EXPECT_EQ(detect_tool_format(read("meta-llama-Llama-3.2-3B-Instruct.jinja")), ToolFormat::kLlama3);
  EXPECT_EQ(detect_tool_format(read("meta-llama-Llama-3.3-70B-Instruct.jinja")), ToolFormat::kLlama3);
  EXPECT_EQ(detect_tool_format(read("mistralai-Mistral-Nemo-Instruct-2407.jinja")), ToolFormat::kMistral);
  EXPECT_EQ(detect_tool_format(read("meetkai-functionary-medium-v3.2.jinja")), ToolFormat::kFunctionary);
  EXPECT_EQ(detect_tool_format(read("meetkai-functionary-medium-v3.1.jinja")), ToolFormat::kLlama3);
}

TEST(ToolCalls, Hermes) {
  const std::string one =
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call>";
  expect_calls(ToolFormat::kHermes, one, {{"get_weather", R"({"city":"Paris","unit":"c"})"}});
  expect_calls(ToolFormat::kHermes, "Let me check.\n" + one + "\n" + one,
               {{"get_weather", R"({"city":"Paris","unit":"c"})"}, {"get_weather", R"({"city":"Paris","unit":"c"})"}},
               "Let me check.");
  // Qwen 3 thinks first; arguments given as a string; no closing tag at the end.
  expect_calls(ToolFormat::kHermes,
               "<think>\nweather\n</think>\n\n<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}",
               {{"f", R"({"a":1})"}}, "<think>\nweather\n</think>");
  // Not a call: plain text, a broken block, a mention of the tag.
  expect_calls(ToolFormat::kHermes, "The answer is 4.", {}, "The answer is 4.");
  expect_calls(ToolFormat::kHermes, "<tool_call>\n{\"name\": \"f\", \"argu", {}, "<tool_call>\n{\"name\": \"f\", \"argu");
  expect_calls(ToolFormat::kHermes, "use <tool_ca", {}, "use <tool_ca");
  // A block cut short after complete ones (max_tokens) leaks no markup.
  expect_calls(ToolFormat::kHermes, one + "\n<tool_call>\n{\"name\": \"get_w",
               {{"get_weather", R"({"city":"Paris","unit":"c"})"}});
}

TEST(ToolCalls, Llama3) {
  expect_calls(ToolFormat::kLlama3, R"({"name": "get_weather", "parameters": {"city": "Paris"}})",
               {{"get_weather", R"({"city":"Paris"})"}});
  expect_calls(ToolFormat::kLlama3, "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"x\": [1, 2]}}",
               {{"a", "{}"}, {"b", R"({"x":[1,2]})"}});
  expect_calls(ToolFormat::kLlama3, "<function=search>{\"query\": \"slm\"}</function>", {{"search", R"({"query":"slm"})"}});
  expect_calls(ToolFormat::kLlama3, "Hello! How can I help?", {}, "Hello! How can I help?");
  expect_calls(ToolFormat::kLlama3, R"({"answer": 42})", {}, R"({"answer": 42})");
}

TEST(ToolCalls, Mistral) {
  expect_calls(ToolFormat::kMistral,
               R"([TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}])",
               {{"get_weather", R"({"city":"Paris"})"}, {"get_time", "{}"}});
  // The control token is not rendered in decoded text.
  expect_calls(ToolFormat::kMistral, R"( [{"name": "f", "arguments": {"a": "x"}}])", {{"f", R"({"a":"x"})"}});
  expect_calls(ToolFormat::kMistral, "[1] is a citation", {}, "[1] is a citation");
}

TEST(ToolCalls, FunctionaryV32) {
  expect_calls(ToolFormat::kFunctionary, "get_weather\n{\"city\": \"Paris\"}", {{"get_weather", R"({"city":"Paris"})"}});
  expect_calls(ToolFormat::kFunctionary, "all\nLet me look.>>>get_weather\n{\"city\": \"Paris\"}>>>get_time\n{}",
               {{"get_weather", R"({"city":"Paris"})"}, {"get_time", "{}"}}, "Let me look.");
  expect_calls(ToolFormat::kFunctionary, "all\nHello there.", {}, "Hello there.");
}

// The required-call grammar: accepts well-formed calls with valid arguments,
// rejects bad arguments and unknown functions.
TEST(ToolCalls, RequiredGrammar) {
  const std::vector<ToolSpec> tools = {
      {"get_weather", R"({"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false})"},
      {"get_time", "{}"}};
  struct Case {
    ToolFormat f;
    std::string good, bad;
  };
  const Case cases[] = {
      {ToolFormat::kHermes,
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call>\n"
       "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"k\"}}\n</tool_call>"},
      {ToolFormat::kLlama3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"x\", \"unit\": \"f\"}}",
       "{\"name\": \"nope\", \"parameters\": {}}"},
      {ToolFormat::kMistral, "[TOOL_CALLS][{\"name\": \"get_time\", \"arguments\": {}}, {\"name\": \"get_time\", \"arguments\": { }}]",
       "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {}}]"},
      {ToolFormat::kFunctionary, "get_weather\n{\"city\": \"Oslo\", \"unit\": \"c\"}>>>get_time\n{}", "get_weather\n{\"city\": 1}"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(tool_format_name(c.f)));
    const auto g = std::make_shared<const grammar::Grammar>(grammar::parse_gbnf(tool_call_gbnf(c.f, tools, true)));
    {
      grammar::Matcher m(g);
      EXPECT_EQ(m.accept(c.good), c.good.size());
      EXPECT_TRUE(m.is_complete());
      const ToolParse p = parse_tool_calls(c.f, c.good);
      EXPECT_GE(p.calls.size(), 1u);
    }
    {
      grammar::Matcher m(g);
      size_t n = 0;
      try {
        n = m.accept(c.bad);
      } catch (const Error&) {
      }
      EXPECT_FALSE(n == c.bad.size() && m.is_complete());
    }
  }
  // One call only without parallel.
  const auto one = std::make_shared<const grammar::Grammar>(
      grammar::parse_gbnf(tool_call_gbnf(ToolFormat::kHermes, tools, false)));
  grammar::Matcher m(one);
  const std::string two = cases[0].good;
  EXPECT_LT(m.accept(two), two.size());
  EXPECT_THROW(tool_call_gbnf(ToolFormat::kHermes, {{"bad name", "{}"}}, false), Error);
  EXPECT_THROW(tool_call_gbnf(ToolFormat::kHermes, {{"f", R"({"type":"object","propertyNames":{}})"}}, false), Error);
}

TEST(ToolCalls, PrefixGbnfRules) {
  EXPECT_EQ(prefix_gbnf_rules("root ::= a-b \"x y\" [a-z]{0,2} # c d\n", "t-"),
            "t-root ::= t-a-b \"x y\" [a-z]{0,2} # c d\n");
}

}  // namespace
}  // namespace slm::engine
