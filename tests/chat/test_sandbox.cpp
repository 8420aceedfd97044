// Hostile templates (style.md §9): each must fail with a TemplateError,
// quickly, without crashing, hanging or exhausting memory.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "chat/template.h"

namespace {

using Json = nlohmann::ordered_json;
using slm::chat::TemplateError;

// Renders src and expects a TemplateError whose message contains `what`,
// within a few seconds even on a slow sanitizer build.
void expect_refused(const std::string& src, const std::string& what, const Json& ctx = Json::object(),
                    const slm::chat::RenderOptions& opts = {}) {
  const auto start = std::chrono::steady_clock::now();
  try {
    const std::string out = slm::chat::render(src, ctx, opts);
    ADD_FAILURE() << "rendered " << out.size() << " bytes instead of failing: " << src.substr(0, 200);
  } catch (const TemplateError& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos)
        << "error '" << e.what() << "' lacks '" << what << "' for " << src.substr(0, 200);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 10.0) << src.substr(0, 200);
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(Sandbox, EndlessLoopsHitTheLoopLimit) {
  expect_refused("{% for i in range(10**9) %}x{% endfor %}", "loop limit");
  expect_refused("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}x"
                 "{% endfor %}{% endfor %}{% endfor %}",
                 "limit");
  expect_refused("{{ range(0, 10**18) | length }}", "loop limit");
}

TEST(Sandbox, RecursionIsBounded) {
  expect_refused("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "deeper than");
  expect_refused("{% macro f() %}{{ f() ~ f() }}{% endmacro %}{{ f() }}", "deeper than");
  // Mutual recursion through a filter chain.
  expect_refused("{% macro a(n) %}{{ b(n) | trim }}{% endmacro %}{% macro b(n) %}{{ a(n) }}{% endmacro %}{{ a(1) }}",
                 "deeper than");
}

TEST(Sandbox, OutputAndValueSizesAreBounded) {
  expect_refused("{{ 'a' * 10**9 }}", "size limit");
  expect_refused("{{ [0] * 10**9 }}", "size limit");
  EXPECT_EQ(slm::chat::render("{{ ('' * 10**18) ~ ([] * 10**18) | length }}", Json::object()), "0");
  expect_refused("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
                 "{{ ns.s | length }}",
                 "size limit");
  expect_refused("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
                 "size limit");
  expect_refused("{{ ('a' * 1000000).replace('a', 'b' * 1000) }}", "size limit");
  slm::chat::RenderOptions small;
  small.max_output_bytes = 1000;
  expect_refused("{% for i in range(100) %}0123456789abcdef{% endfor %}", "size limit", Json::object(), small);
  // Nested loops that print: bounded by output size or work, whichever comes first.
  expect_refused("{% for a in range(500) %}{% for b in range(500) %}{% for c in range(500) %}xxxxxxxx"
                 "{% endfor %}{% endfor %}{% endfor %}",
                 "limit");
}

TEST(Sandbox, WorkIsBounded) {
  slm::chat::RenderOptions opts;
  opts.max_steps = 100000;
  expect_refused("{% for i in range(100000) %}{{ i }}{% endfor %}", "work limit", Json::object(), opts);
  // Quadratic list building stays within the work budget.
  expect_refused("{% set ns = namespace(l=[]) %}{% for i in range(200000) %}{% set ns.l = ns.l + [i] %}{% endfor %}",
                 "limit");
}

TEST(Sandbox, SharedStructuresCannotExplode) {
  // Doubling by sharing builds 2**60 elements in 60 steps; walking them must be refused.
  const std::string build =
      "{% set ns = namespace(a=[1], b=[1]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}"
      "{% set ns.b = [ns.b, ns.b] %}{% endfor %}";
  expect_refused(build + "{{ ns.a == ns.b }}", "work limit");
  expect_refused(build + "{{ ns.a in [ns.b] }}", "work limit");
  expect_refused(build + "{{ [ns.a, ns.b] | unique | list | length }}", "work limit");
  expect_refused(build + "{{ [ns.a, ns.b] | sort | length }}", "work limit");
  expect_refused(build + "{{ ns.a is equalto ns.b }}", "work limit");
  expect_refused(build + "{{ ns.a }}", "exceeds");
  expect_refused(build + "{{ ns.a | tojson }}", "exceeds");
  expect_refused(build + "{{ ns.a | string | length }}", "exceeds");
}

TEST(Sandbox, AttributeWalkingIsRefused) {
  expect_refused("{{ ''.__class__ }}", "not allowed");
  expect_refused("{{ ''.__class__.__mro__[1].__subclasses__() }}", "not allowed");
  expect_refused("{{ x.__init__ }}", "not allowed", {{"x", Json::object()}});
  expect_refused("{{ x.__init__.__globals__ }}", "not allowed", {{"x", Json::array()}});
  expect_refused("{{ range.__globals__ }}", "not allowed");
  expect_refused("{{ namespace.__init__ }}", "not allowed");
  expect_refused("{{ raise_exception.__code__ }}", "not allowed");
  expect_refused("{{ ''['__class__'] }}", "not allowed");
  expect_refused("{{ 'x' | attr('__class__') }}", "not allowed");
  expect_refused("{{ messages.pop() }}", "cannot modify", {{"messages", Json::array({1})}});
  expect_refused("{{ d.update({'a': 1}) }}", "cannot modify", {{"d", Json::object()}});
  expect_refused("{% set l = [1] %}{{ l.append(2) }}", "cannot modify");
  // Undefined names have no attributes at all (cycler, joiner, lipsum, self are not offered).
  expect_refused("{{ cycler.__init__.__globals__.os }}", "is undefined");
  expect_refused("{{ self._TemplateReference__context }}", "is undefined");
  // Other files are out of reach.
  expect_refused("{% include '/etc/passwd' %}", "not available");
  expect_refused("{% import 'x' as y %}", "not available");
  expect_refused("{% extends 'base' %}", "not available");
}

TEST(Sandbox, HugeIntegersAreRefused) {
  expect_refused("{{ 99999999999999999999 }}", "too large");
  expect_refused("{{ 9223372036854775807 + 1 }}", "overflow");
  expect_refused("{{ 2 ** 64 }}", "overflow");
  expect_refused("{{ 10 ** 100 }}", "overflow");
  expect_refused("{{ -9223372036854775807 - 2 }}", "overflow");
  expect_refused("{{ 3037000500 * 3037000500 }}", "overflow");
  expect_refused("{{ (-9223372036854775807 - 1) // -1 }}", "overflow");
  expect_refused("{{ 1 // 0 }}", "by zero");
  expect_refused("{{ 1 % 0 }}", "by zero");
  expect_refused("{{ 1 / 0 }}", "by zero");
  expect_refused("{{ n }}", "out of range", {{"n", 18446744073709551615ull}});
}

TEST(Sandbox, ParserNestingIsBounded) {
  expect_refused("{{ " + repeat("(", 100000) + "1" + repeat(")", 100000) + " }}", "nests deeper");
  expect_refused("{{ " + repeat("[", 100000) + repeat("]", 100000) + " }}", "nests deeper");
  expect_refused("{{ " + repeat("{'a': ", 50000) + "1" + repeat("}", 50000) + " }}", "nests deeper");
  expect_refused("{{ " + repeat("not ", 100000) + "x }}", "nests deeper");
  expect_refused("{{ " + repeat("- ", 100000) + "1 }}", "nests deeper");
  expect_refused("{{ " + repeat("1 if x else ", 100000) + "1 }}", "nests deeper");
  expect_refused(repeat("{% if x %}", 100000) + repeat("{% endif %}", 100000), "nests deeper");
  expect_refused(repeat("{% for x in y %}", 100000), "nests deeper");
  // Operator, filter and attribute chains build left-deep trees: they count as nesting.
  expect_refused("{{ 0" + repeat(" + 1", 100000) + " }}", "nests deeper");
  expect_refused("{{ 'a'" + repeat(" | trim", 100000) + " }}", "nests deeper");
  expect_refused("{{ x" + repeat(".a", 100000) + " }}", "nests deeper");
  expect_refused("{{ x" + repeat("[0]", 100000) + " }}", "nests deeper");
  // ~ is one n-ary node, so a long chain of it does not nest.
  EXPECT_EQ(slm::chat::render("{{ x" + repeat(" ~ x", 99999) + " }}", {{"x", "a"}}), std::string(100000, 'a'));
  EXPECT_EQ(slm::chat::render("{{ 0" + repeat(" + 1", 50) + " }}", Json::object()), "50");
}

TEST(Sandbox, ValueNestingIsBounded) {
  expect_refused("{% set ns = namespace(x=[]) %}{% for i in range(10000) %}{% set ns.x = [ns.x] %}{% endfor %}"
                 "{{ ns.x }}",
                 "nested deeper");
  const Json deep = Json::parse(repeat("[", 5000) + repeat("]", 5000));
  expect_refused("{{ x }}", "nested deeper", {{"x", deep}});
  // A namespace cannot hold itself (nor any namespace), so values never form cycles.
  expect_refused("{% set ns = namespace() %}{% set ns.me = ns %}", "cannot hold");
  expect_refused("{% set ns = namespace() %}{% set ns.l = [1, {'a': ns}] %}", "cannot hold");
  expect_refused("{% set x = 1 %}{% set x.y = 2 %}", "non-namespace");
}

TEST(Sandbox, CallerCannotOutliveItsBlock) {
  expect_refused("{% set ns = namespace() %}{% macro m() %}{% set ns.c = caller %}{% endmacro %}"
                 "{% call m() %}x{% endcall %}{{ ns.c() }}",
                 "outside");
}

TEST(Sandbox, UnterminatedConstructsAreSyntaxErrors) {
  expect_refused("{{ x", "missing '}}'");
  expect_refused("{% if x", "missing '%}'");
  expect_refused("{# comment", "unterminated comment");
  expect_refused("{% raw %}abc", "unterminated {% raw %}");
  expect_refused("{{ 'abc }}", "unterminated string");
  expect_refused("{% if x %}abc", "missing {% endif %}");
  expect_refused("{% for x in y %}abc", "missing {% endfor %}");
  expect_refused("{% macro m() %}abc", "missing {% endmacro %}");
  expect_refused("{% set x %}abc", "missing {% endset %}");
  expect_refused("{{ (1, 2 }}", "missing '}}'");  // inside brackets '}}' does not close the tag
  expect_refused("{{ (1, 2 ] }}", "expected ')'");
  expect_refused("{{ x[ }}", "missing '}}'");
  expect_refused("{{ x[] }}", "empty subscript");
  expect_refused("{% endif %}", "no open block");
  expect_refused("{{ '\\x4' }}", "malformed");
  expect_refused("{{ 1 $ 2 }}", "unexpected character");
}

TEST(Sandbox, MalformedUtf8NeverBreaksStringOperations) {
  const std::string bad = "a\xff\xc3(\xe2\x82" "b\xf0\x9f";
  const std::string src = "{{ s | length }}|{{ s[1] }}|{{ s[::-1] | length }}|{{ s.upper() | length }}|"
                          "{{ s | trim | length }}|{{ s.split('(') | length }}|{{ s | tojson | length }}";
  // The template literal carries the bad bytes, so no JSON decoding is involved.
  const std::string tmpl = "{% set s = '" + bad + "' %}" + src;
  EXPECT_NO_THROW(slm::chat::render(tmpl, Json::object()));
}

}  // namespace
