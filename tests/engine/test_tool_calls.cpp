// Tool-call syntaxes per family (engine/tool_calls.h): detection from the
// fixture chat templates, parsing of real-looking answers (whole and streamed
// in small pieces), and the required-call grammar accepting exactly calls whose
// arguments validate.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>

#include "base/error.h"
#include "common/fixtures.h"
#include "engine/tool_calls.h"
#include "grammar/grammar.h"
#include "grammar/matcher.h"

namespace slm::engine {
namespace {

// Feeds text in pieces of the given sizes (cycled; the last piece of text may
// be shorter) and assembles content and calls from what comes out.
ToolParse streamed(ToolFormat f, std::string_view text, const std::vector<size_t>& pieces,
                   bool forced = false) {
  ToolCallStream s(f, forced);
  ToolParse all;
  auto add = [&](ToolStreamOut&& p) {
    all.content += p.content;
    apply_tool_deltas(all.calls, p.deltas);
  };
  for (size_t i = 0, k = 0; i < text.size(); i += pieces[k++ % pieces.size()])
    add(s.feed(text.substr(i, pieces[k % pieces.size()])));
  add(s.finish());
  return all;
}

ToolParse streamed(ToolFormat f, std::string_view text, size_t piece, bool forced = false) {
  return streamed(f, text, std::vector<size_t>{piece}, forced);
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
  EXPECT_EQ(detect_tool_format(read("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja")),
            ToolFormat::kHermes);
  EXPECT_EQ(detect_tool_format(read("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja")),
            ToolFormat::kHermes);
  EXPECT_EQ(detect_tool_format(read("meta-llama-Llama-3.1-8B-Instruct.jinja")),
            ToolFormat::kLlama3);
  EXPECT_EQ(detect_tool_format(read("meta-llama-Llama-3.2-3B-Instruct.jinja")),
            ToolFormat::kLlama3);
  EXPECT_EQ(detect_tool_format(read("meta-llama-Llama-3.3-70B-Instruct.jinja")),
            ToolFormat::kLlama3);
  EXPECT_EQ(detect_tool_format(read("mistralai-Mistral-Nemo-Instruct-2407.jinja")),
            ToolFormat::kMistral);
  EXPECT_EQ(detect_tool_format(read("meetkai-functionary-medium-v3.2.jinja")),
            ToolFormat::kFunctionary);
  EXPECT_EQ(detect_tool_format(read("meetkai-functionary-medium-v3.1.jinja")), ToolFormat::kLlama3);
}

TEST(ToolCalls, Hermes) {
  const std::string one =
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": "
      "\"c\"}}\n</tool_call>";
  expect_calls(ToolFormat::kHermes, one, {{"get_weather", R"({"city":"Paris","unit":"c"})"}});
  expect_calls(ToolFormat::kHermes, "Let me check.\n" + one + "\n" + one,
               {{"get_weather", R"({"city":"Paris","unit":"c"})"},
                {"get_weather", R"({"city":"Paris","unit":"c"})"}},
               "Let me check.");
  // Qwen 3 thinks first; arguments given as a string; no closing tag at the end.
  expect_calls(ToolFormat::kHermes,
               "<think>\nweather\n</think>\n\n<tool_call>\n{\"name\": \"f\", \"arguments\": "
               "\"{\\\"a\\\": 1}\"}",
               {{"f", R"({"a":1})"}}, "<think>\nweather\n</think>");
  // Not a call: plain text, a broken block, a mention of the tag.
  expect_calls(ToolFormat::kHermes, "The answer is 4.", {}, "The answer is 4.");
  expect_calls(ToolFormat::kHermes, "<tool_call>\n{\"name\": \"f\", \"argu", {},
               "<tool_call>\n{\"name\": \"f\", \"argu");
  expect_calls(ToolFormat::kHermes, "use <tool_ca", {}, "use <tool_ca");
  // A block cut short after complete ones (max_tokens) leaks no markup.
  expect_calls(ToolFormat::kHermes, one + "\n<tool_call>\n{\"name\": \"get_w",
               {{"get_weather", R"({"city":"Paris","unit":"c"})"}});
}

TEST(ToolCalls, Llama3) {
  expect_calls(ToolFormat::kLlama3, R"({"name": "get_weather", "parameters": {"city": "Paris"}})",
               {{"get_weather", R"({"city":"Paris"})"}});
  expect_calls(ToolFormat::kLlama3,
               "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", "
               "\"parameters\": {\"x\": [1, 2]}}",
               {{"a", "{}"}, {"b", R"({"x":[1,2]})"}});
  expect_calls(ToolFormat::kLlama3, "<function=search>{\"query\": \"slm\"}</function>",
               {{"search", R"({"query":"slm"})"}});
  expect_calls(ToolFormat::kLlama3, "Hello! How can I help?", {}, "Hello! How can I help?");
  expect_calls(ToolFormat::kLlama3, R"({"answer": 42})", {}, R"({"answer": 42})");
}

TEST(ToolCalls, Mistral) {
  expect_calls(
      ToolFormat::kMistral,
      R"([TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}])",
      {{"get_weather", R"({"city":"Paris"})"}, {"get_time", "{}"}});
  // The control token is not rendered in decoded text.
  expect_calls(ToolFormat::kMistral, R"( [{"name": "f", "arguments": {"a": "x"}}])",
               {{"f", R"({"a":"x"})"}});
  expect_calls(ToolFormat::kMistral, "[1] is a citation", {}, "[1] is a citation");
}

TEST(ToolCalls, FunctionaryV32) {
  expect_calls(ToolFormat::kFunctionary, "get_weather\n{\"city\": \"Paris\"}",
               {{"get_weather", R"({"city":"Paris"})"}});
  expect_calls(ToolFormat::kFunctionary,
               "all\nLet me look.>>>get_weather\n{\"city\": \"Paris\"}>>>get_time\n{}",
               {{"get_weather", R"({"city":"Paris"})"}, {"get_time", "{}"}}, "Let me look.");
  expect_calls(ToolFormat::kFunctionary, "all\nHello there.", {}, "Hello there.");
}

// The required-call grammar: accepts well-formed calls with valid arguments,
// rejects bad arguments and unknown functions.
TEST(ToolCalls, RequiredGrammar) {
  const std::vector<ToolSpec> tools = {
      {"get_weather",
       R"({"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false})"},
      {"get_time", "{}"}};
  struct Case {
    ToolFormat f;
    std::string good, bad;
  };
  const Case cases[] = {
      {ToolFormat::kHermes,
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": "
       "\"c\"}}\n</tool_call>\n"
       "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": "
       "\"k\"}}\n</tool_call>"},
      {ToolFormat::kLlama3,
       "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"x\", \"unit\": \"f\"}}",
       "{\"name\": \"nope\", \"parameters\": {}}"},
      {ToolFormat::kMistral,
       "[TOOL_CALLS][{\"name\": \"get_time\", \"arguments\": {}}, {\"name\": \"get_time\", "
       "\"arguments\": { }}]",
       "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {}}]"},
      {ToolFormat::kFunctionary,
       "get_weather\n{\"city\": \"Oslo\", \"unit\": \"c\"}>>>get_time\n{}",
       "get_weather\n{\"city\": 1}"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(tool_format_name(c.f)));
    const auto g = std::make_shared<const grammar::Grammar>(
        grammar::parse_gbnf(tool_call_gbnf(c.f, tools, true)));
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
  EXPECT_THROW(tool_call_gbnf(ToolFormat::kHermes,
                              {{"f", R"({"type":"object","propertyNames":{}})"}}, false),
               Error);
}

// Arguments keep the model's key order, numbers and escapes; only the
// whitespace outside strings goes.
TEST(ToolCalls, ArgumentsAreTheModelsTextCompacted) {
  expect_calls(ToolFormat::kHermes,
               "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"b\": 1.50, \"a\": \"\\u00e9 x\", "
               "\"c\": [ 1e3 ]}}\n</tool_call>",
               {{"f", R"({"b":1.50,"a":"\u00e9 x","c":[1e3]})"}});
  expect_calls(ToolFormat::kLlama3, R"({"parameters": {"z": {"y": null}, "a": true}, "name": "g"})",
               {{"g", R"({"z":{"y":null},"a":true})"}});
  expect_calls(
      ToolFormat::kMistral,
      R"([{"name": "f", "arguments": {"k": " a  b "}}, {"arguments": {"q": 2}, "name": "h"}])",
      {{"f", R"({"k":" a  b "})"}, {"h", R"({"q":2})"}});
  // A repeated key: the last one, as the JSON parser keeps.
  expect_calls(ToolFormat::kHermes,
               "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}, \"arguments\": {\"b\": "
               "2}}</tool_call>",
               {{"f", R"({"b":2})"}});
}

const std::vector<ToolSpec>& forced_tools() {
  static const std::vector<ToolSpec> tools = {
      {"get_weather",
       R"({"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false})"},
      {"get_time", "{}"}};
  return tools;
}

// Answers in the required-call grammar's framing, per family, with the calls
// they hold.
struct ForcedCase {
  ToolFormat f;
  std::string text;
  std::vector<ToolCall> calls;
};

std::vector<ForcedCase> forced_cases() {
  const std::string w = R"({"city": "Par\"is {x}", "unit": "c"})";
  const std::string wc = R"({"city":"Par\"is {x}","unit":"c"})";
  return {
      {ToolFormat::kHermes,
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + w +
           "}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": "
           "{}}\n</tool_call>",
       {{"get_weather", wc}, {"get_time", "{}"}}},
      {ToolFormat::kLlama3,
       "{\"name\": \"get_weather\", \"parameters\": " + w +
           "}; {\"name\": \"get_time\", \"parameters\": {}}",
       {{"get_weather", wc}, {"get_time", "{}"}}},
      {ToolFormat::kMistral,
       "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": " + w +
           "}, {\"name\": \"get_time\", \"arguments\": {}}]",
       {{"get_weather", wc}, {"get_time", "{}"}}},
      // The [TOOL_CALLS] control token missing from the decoded text.
      {ToolFormat::kMistral,
       "[{\"name\": \"get_weather\", \"arguments\": " + w + "}]",
       {{"get_weather", wc}}},
      {ToolFormat::kFunctionary,
       "get_weather\n" + w + ">>>get_time\n{}",
       {{"get_weather", wc}, {"get_time", "{}"}}},
  };
}

void expect_same(const ToolParse& got, const ToolParse& want) {
  EXPECT_EQ(got.content, want.content);
  ASSERT_EQ(got.calls.size(), want.calls.size());
  for (size_t i = 0; i < want.calls.size(); ++i) {
    EXPECT_EQ(got.calls[i].name, want.calls[i].name) << i;
    EXPECT_EQ(got.calls[i].arguments, want.calls[i].arguments) << i;
  }
}

// Forced answers streamed byte by byte and in random pieces give exactly the
// whole parse, which is the calls written; the name goes out at its closing
// quote and the arguments as they arrive, long before the call is complete.
TEST(ToolCalls, ForcedCallsStreamArgumentsAsWritten) {
  std::mt19937 rng(12);
  for (const ForcedCase& c : forced_cases()) {
    SCOPED_TRACE(std::string(tool_format_name(c.f)) + ": " + c.text);
    if (c.text[0] != '[' || c.text[1] != '{') {  // the grammar writes the [TOOL_CALLS] tag
      const auto g = std::make_shared<const grammar::Grammar>(
          grammar::parse_gbnf(tool_call_gbnf(c.f, forced_tools(), true)));
      grammar::Matcher m(g);
      ASSERT_EQ(m.accept(c.text), c.text.size());
      EXPECT_TRUE(m.is_complete());
    }
    const ToolParse whole = parse_tool_calls(c.f, c.text, true);
    expect_same(whole, ToolParse{"", c.calls});
    expect_same(streamed(c.f, c.text, 1, true), whole);
    for (int round = 0; round < 20; ++round) {
      std::vector<size_t> pieces(7);
      for (size_t& n : pieces) n = 1 + rng() % 9;
      expect_same(streamed(c.f, c.text, pieces, true), whole);
    }

    // Byte by byte: where each call's name and argument bytes come out.
    ToolCallStream s(c.f, true);
    std::vector<ToolCall> calls;
    size_t name_at = 0, first_args_at = 0, n_fragments = 0;
    for (size_t i = 0; i < c.text.size(); ++i) {
      ToolStreamOut o = s.feed(c.text.substr(i, 1));
      EXPECT_EQ(o.content, "");
      for (const ToolCallDelta& d : o.deltas) {
        if (d.index == 0 && !d.name.empty()) name_at = i;
        if (d.index == 0 && !d.arguments.empty() && first_args_at == 0) first_args_at = i;
        n_fragments += d.index == 0 && !d.arguments.empty();
      }
      apply_tool_deltas(calls, o.deltas);
    }
    EXPECT_TRUE(s.finish().deltas.empty());
    const size_t name_end = c.text.find(c.calls[0].name) + c.calls[0].name.size();
    EXPECT_EQ(name_at, name_end) << "the name goes out with its end mark";
    const size_t args_begin = c.text.find('{', name_end);
    EXPECT_EQ(first_args_at, args_begin);
    EXPECT_EQ(n_fragments, c.calls[0].arguments.size());  // one per byte kept
  }
}

// A forced answer cut short (max_tokens, a stop string) keeps the calls and
// the arguments written so far, streamed or whole; cut before the first name
// it is parsed as an unforced answer.
TEST(ToolCalls, ForcedAnswerCutShort) {
  for (const ForcedCase& c : forced_cases()) {
    SCOPED_TRACE(std::string(tool_format_name(c.f)));
    const size_t cut = c.text.find("Par");
    const std::string text = c.text.substr(0, cut + 3);
    const ToolParse whole = parse_tool_calls(c.f, text, true);
    ASSERT_EQ(whole.calls.size(), 1u);
    EXPECT_EQ(whole.calls[0].name, "get_weather");
    EXPECT_EQ(whole.calls[0].arguments, R"({"city":"Par)");
    EXPECT_EQ(whole.content, "");
    expect_same(streamed(c.f, text, 1, true), whole);
    expect_same(streamed(c.f, text, 4, true), whole);

    const std::string early = c.text.substr(0, c.text.find("get_w") + 5);
    const ToolParse e = parse_tool_calls(c.f, early, true);
    expect_same(e, parse_tool_calls(c.f, early, false));
    expect_same(streamed(c.f, early, 1, true), e);
  }
  // Not the grammar's framing at all: the family parser's calls (content as
  // an unforced stream gives it, untrimmed).
  const std::string odd =
      "Sure: <tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>";
  const ToolParse p = parse_tool_calls(ToolFormat::kHermes, odd, true);
  expect_same(p, ToolParse{"Sure: ", {{"f", R"({"a":1})"}}});
  expect_same(streamed(ToolFormat::kHermes, odd, 1, true), p);
  expect_same(streamed(ToolFormat::kHermes, odd, 5, true), p);
}

// Unforced, a call may still turn out not to be one: nothing of it goes out
// before it is complete, then its name and all of its arguments.
TEST(ToolCalls, UnforcedCallsWaitUntilComplete) {
  const std::string text =
      "Hi <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\"}}\n</tool_call>";
  ToolCallStream s(ToolFormat::kHermes);
  std::string content;
  for (size_t i = 0; i < text.size(); ++i) {
    ToolStreamOut o = s.feed(text.substr(i, 1));
    content += o.content;
    if (i + 1 < text.size()) {
      EXPECT_TRUE(o.deltas.empty()) << i;
    } else {
      ASSERT_EQ(o.deltas.size(), 1u);
      EXPECT_EQ(o.deltas[0].name, "get_weather");
      EXPECT_EQ(o.deltas[0].arguments, R"({"city":"Paris"})");
    }
  }
  EXPECT_EQ(content, "Hi ");
}

TEST(ToolCalls, PrefixGbnfRules) {
  EXPECT_EQ(prefix_gbnf_rules("root ::= a-b \"x y\" [a-z]{0,2} # c d\n", "t-"),
            "t-root ::= t-a-b \"x y\" [a-z]{0,2} # c d\n");
}

}  // namespace
}  // namespace slm::engine
