// jinja2's Markup semantics (markupsafe.Markup, what |safe, |escape and
// |forceescape return) with autoescape off, as Hugging Face renders chat
// templates: Markup + str escapes the str, Markup's methods return Markup,
// `~` gives a plain str. Every expected output below was produced by Python's
// jinja2 3.1.6 with markupsafe 3.0.3 in Hugging Face's configuration
// (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop controls,
// tojson = json.dumps with ensure_ascii off, so |tojson gives a plain str).
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "chat/template.h"
#include "common/fixtures.h"

namespace {

using Json = nlohmann::ordered_json;

struct Case {
  const char* source;
  const char* expected;
};

const Case kCases[] = {
    {R"~({{ "x"|safe + v }})~", R"~(xa&lt;b &amp; &#39;c&#39; &#34;d&#34;)~"},
    {R"~({{ v + "<x>"|safe }})~", R"~(a&lt;b &amp; &#39;c&#39; &#34;d&#34;<x>)~"},
    {R"~({{ "<a>"|safe + "<b>"|safe }})~", R"~(<a><b>)~"},
    {R"~({{ ("<"|safe) * 3 + ">" }})~", R"~(<<<&gt;)~"},
    {R"~({{ 2 * ("<"|safe) + ">" }})~", R"~(<<&gt;)~"},
    {R"~({{ "<"|safe ~ v }})~", R"~(<a<b & 'c' "d")~"},
    {R"~({{ v|e }})~", R"~(a&lt;b &amp; &#39;c&#39; &#34;d&#34;)~"},
    {R"~({{ v|escape|e }})~", R"~(a&lt;b &amp; &#39;c&#39; &#34;d&#34;)~"},
    {R"~({{ (v|e)|forceescape }})~",
     R"~(a&amp;lt;b &amp;amp; &amp;#39;c&amp;#39; &amp;#34;d&amp;#34;)~"},
    {R"~({{ "<b>"|safe|forceescape }})~", R"~(&lt;b&gt;)~"},
    {R"~({{ ("<"|safe)|string + ">" }})~", R"~(<&gt;)~"},
    {R"~({{ ("<"|safe|upper) + ">" }})~", R"~(<&gt;)~"},
    {R"~({{ ("<a>"|safe|trim) + ">" }})~", R"~(<a>&gt;)~"},
    {R"~({{ ("<a>"|safe|title) + ">" }})~", R"~(<A>>)~"},
    {R"~({{ ("<a>"|safe|replace("a", "b")) + ">" }})~", R"~(<b>>)~"},
    {R"~({{ ("-"|safe).join(items) }})~", R"~(x&lt;-y&amp;)~"},
    {R"~({{ ("<a>"|safe).replace("a", "&") }})~", R"~(<&amp;>)~"},
    {R"~({{ ("<a>"|safe).upper() + "&" }})~", R"~(<A>&amp;)~"},
    {R"~({{ ("{} and {x}"|safe).format(v, x="<") }})~",
     R"~(a&lt;b &amp; &#39;c&#39; &#34;d&#34; and &lt;)~"},
    {R"~({{ ("a<b"|safe).split("<") }})~", R"~([Markup('a'), Markup('b')])~"},
    {R"~({{ ["<"|safe, "x"] }})~", R"~([Markup('<'), 'x'])~"},
    {R"~({{ "<"|safe is escaped }} {{ "<" is escaped }})~", R"~(True False)~"},
    {R"~({{ d|tojson }} {{ "x"|safe + d|tojson }})~",
     R"~({"k": "<v>"} x{&#34;k&#34;: &#34;&lt;v&gt;&#34;})~"},
    {R"~({{ ("a
b<"|safe)|indent(2, true) + "<" }})~",
     R"~(  a
  b<&lt;)~"},
    {R"~({{ "a
b<"|indent("> "|safe, true) }})~",
     R"~(> a
&gt; b&amp;lt;)~"},
    {R"~({{ "a

b<"|indent("> "|safe, false, true) }})~",
     R"~(a
> 
> b&lt;)~"},
    {R"~({{ "a
b<"|indent("> "|safe) }})~",
     R"~(a
> b&lt;)~"},
    {R"~({{ ("<"|safe)[0] + "<" }})~", R"~(<&lt;)~"},
    {R"~({{ ("x"|safe + n|string) }})~", R"~(x3)~"},
    {R"~({{ (none|safe) + "<" }})~", R"~(None&lt;)~"},
    {R"~({{ n|e }})~", R"~(3)~"},
    {R"~({% set s = "<"|safe %}{% set s = s + "<" %}{{ s + "&" }})~", R"~(<&lt;&amp;)~"},
    {R"~({{ ("<"|safe if true else "") + "<" }})~", R"~(<&lt;)~"},
    {R"~({% for c in "<>"|safe %}{{ c + "&" }}{% endfor %})~", R"~(<&>&)~"},
    {R"~({{ (("<"|safe) ~ "<") + "&" }})~", R"~(<<&)~"},
    {R"~({{ ("a"|safe).strip("<") }}|{{ ("&lt;a"|safe).strip("<") }})~", R"~(a|&lt;a)~"},
    {R"~({{ "<"|safe|length }} {{ ("<"|safe + "<")|length }})~", R"~(1 5)~"},
    {R"~({{ ("<a"|safe|reverse) + "<" }})~", R"~(a<&lt;)~"},
    {R"~({{ ("<a"|safe|first) + "<" }}|{{ ("<a"|safe|last) + "<" }})~", R"~(<<|a&lt;)~"},
    {R"~({{ ("<a"|safe|list)[0] + "<" }})~", R"~(<<)~"},
    {R"~({{ ["<"|safe, "&"]|join("-") + "<" }})~", R"~(<-&<)~"},
    {R"~({{ ["<"|safe]|string }})~", R"~([Markup('<')])~"},
    {R"~({{ (["<"|safe]|first) + "<" }})~", R"~(<&lt;)~"},
    {R"~({{ ({"k": "<"|safe}.k) + "<" }})~", R"~(<&lt;)~"},
    {R"~({{ ("<a>"|safe)[1:] + "<" }})~", R"~(a>&lt;)~"},
};

TEST(Markup, RendersAsJinja2) {
  const Json ctx = Json::parse(
      R"({"v": "a<b & 'c' \"d\"", "m": "<i>", "n": 3, "items": ["x<", "y&"], "d": {"k": "<v>"}})");
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.source);
    try {
      EXPECT_EQ(slm::chat::render(c.source, ctx), c.expected);
    } catch (const slm::chat::TemplateError& e) {
      ADD_FAILURE() << "render failed: " << e.what();
    }
  }
}

TEST(Markup, ErrorsNameMarkup) {
  EXPECT_THROW(slm::chat::render("{{ 'a'|safe + 1 }}", Json::object()), slm::chat::TemplateError);
  EXPECT_THROW(slm::chat::render("{{ 'a'|safe + x }}", Json::object()), slm::chat::TemplateError);
}

// Functionary v3.1 writes each tool as "..."|safe + name + ... + tool|tojson,
// so the tool's text and JSON come out HTML-escaped, as they do under
// transformers' apply_chat_template.
TEST(Markup, FunctionaryV31ToolsAreEscaped) {
  SLM_REQUIRE_FIXTURE("templates/src/meetkai-functionary-medium-v3.1.jinja");
  std::ifstream in(slm::test::fixture("templates/src/meetkai-functionary-medium-v3.1.jinja"));
  const slm::chat::Template tmpl(std::string(std::istreambuf_iterator<char>(in), {}));
  slm::chat::ChatInput input;
  input.tools = Json::parse(
      R"~([{"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & 'later', \"quoted\"", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City <name> & \"country\""}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]}}}, {"name": "search", "description": "Search the web for <b>bold</b> café", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}])~");
  input.messages = Json::parse(
      R"~([{"role": "user", "content": "Weather in Paris & Rome? <3"}, {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "id": "call_1", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris & <Rome>\"}"}}]}, {"role": "tool", "content": "18 C & \"sunny\""}])~");
  input.add_generation_prompt = true;
  input.bos_token = "<s>";
  input.eos_token = "</s>";
  const std::string expected = R"~(<s><|start_header_id|>system<|end_header_id|>


Cutting Knowledge Date: December 2023


You have access to the following functions:

Use the function 'get_weather' to 'Weather &lt;now&gt; &amp; &#39;later&#39;, &#34;quoted&#34;'
{&#34;name&#34;: &#34;get_weather&#34;, &#34;description&#34;: &#34;Weather &lt;now&gt; &amp; &#39;later&#39;, \&#34;quoted\&#34;&#34;, &#34;parameters&#34;: {&#34;type&#34;: &#34;object&#34;, &#34;properties&#34;: {&#34;city&#34;: {&#34;type&#34;: &#34;string&#34;, &#34;description&#34;: &#34;City &lt;name&gt; &amp; \&#34;country\&#34;&#34;}, &#34;unit&#34;: {&#34;enum&#34;: [&#34;c&#34;, &#34;f&#34;]}}, &#34;required&#34;: [&#34;city&#34;]}}

Use the function 'search' to 'Search the web for &lt;b&gt;bold&lt;/b&gt; café'
{&#34;name&#34;: &#34;search&#34;, &#34;description&#34;: &#34;Search the web for &lt;b&gt;bold&lt;/b&gt; café&#34;, &#34;parameters&#34;: {&#34;type&#34;: &#34;object&#34;, &#34;properties&#34;: {&#34;q&#34;: {&#34;type&#34;: &#34;string&#34;}}}}


Think very carefully before calling functions.
If a you choose to call a function ONLY reply in the following format:
<{start_tag}={function_name}>{parameters}{end_tag}
where

start_tag => `<function`
parameters => a JSON dict with the function argument name as key and function argument value as value.
end_tag => `</function>`

Here is an example,
<function=example_function_name>{"example_name": "example_value"}</function>

Reminder:
- If looking for real time information use relevant functions before falling back to brave_search
- Function calls MUST follow the specified format, start with <function= and end with </function>
- Required parameters MUST be specified
- Only call one function at a time
- Put the entire function call reply on one line

<|eot_id|><|start_header_id|>user<|end_header_id|>

Weather in Paris & Rome? <3<|eot_id|><|start_header_id|>assistant<|end_header_id|>

<function=get_weather>{"city": "Paris & <Rome>"}</function><|eom_id|><|start_header_id|>ipython<|end_header_id|>

18 C & "sunny"<|eot_id|><|start_header_id|>assistant<|end_header_id|>

)~";
  EXPECT_EQ(tmpl.render(slm::chat::make_chat_context(input), slm::chat::RenderOptions{}), expected);
}

}  // namespace
