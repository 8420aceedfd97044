// Structured output and tool calls for one request: the grammar its answer
// must follow (response_format json_object / json_schema, the "grammar"
// extension, tool_choice required or named), compiled once per source and
// kept in the backend's bounded cache, and the conversion of an answer's
// tool-call syntax into API tool calls.
#include <chrono>
#include <nlohmann/json.hpp>

#include "grammar/json_schema.h"
#include "grammar/strict_schema.h"
#include "server/server_impl.h"

namespace slm::server {
namespace detail {
namespace {

using Json = nlohmann::json;
using Format = ParsedRequest::Format;
using ToolChoice = ParsedRequest::ToolChoice;

// Bounds that keep one request's compilation small (milliseconds): a schema
// or grammar beyond them is a 400, not a long stall of a connection thread.
grammar::SchemaOptions schema_options(bool strict) {
  grammar::SchemaOptions o;
  o.max_schema_bytes = 256u << 10;
  o.max_depth = 32;
  o.max_rules = 20000;
  o.max_repeat = 10000;
  o.strict_one_of = strict;
  return o;
}

grammar::GrammarLimits gbnf_limits() {
  grammar::GrammarLimits l;
  l.max_source_bytes = 256u << 10;
  l.max_elements = 1u << 20;
  l.max_rules = 1u << 16;
  l.max_repeat = 10000;
  return l;
}

std::shared_ptr<const grammar::Grammar> cached(Backend& b, const std::string& key,
                                               const std::string& param, const std::string& what,
                                               const engine::GrammarCache::Compile& compile) {
  const auto t0 = Clock::now();
  try {
    auto g = b.grammars.get(key, compile);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (ms > 50) log_line(what + " compiled in " + std::to_string(ms) + " ms");
    return g;
  } catch (const Error& e) {
    throw ApiError(400, what + ": " + e.what(), param,
                   "invalid_" + param.substr(0, param.find('.')));
  }
}

std::shared_ptr<const grammar::Grammar> tool_grammar(Backend& b, const ParsedRequest& r) {
  std::vector<engine::ToolSpec> specs;
  for (size_t i = 0; i < r.tools.size(); ++i) {
    const auto& fn = r.tools[i]["function"];
    const std::string name = fn["name"].get<std::string>();
    if (r.tool_choice == ToolChoice::kNamed && name != r.tool_choice_name) continue;
    const std::string params = fn.contains("parameters") && !fn["parameters"].is_null()
                                   ? fn["parameters"].dump()
                                   : std::string("{}");
    if (fn.contains("strict") && fn["strict"].is_boolean() && fn["strict"].get<bool>()) {
      try {
        grammar::check_strict_schema(params);
      } catch (const Error& e) {
        const std::string param = "tools[" + std::to_string(i) + "].function.parameters";
        throw ApiError(400, "strict schema of '" + name + "': " + e.what(), param, "invalid_tools");
      }
    }
    specs.push_back({name, params});
  }
  const bool parallel = r.parallel_tool_calls && r.tool_choice == ToolChoice::kRequired;
  std::string key = "tools|" + std::string(engine::tool_format_name(b.tool_format)) + "|" +
                    (parallel ? "p|" : "1|");
  for (const auto& s : specs) key += s.name + "\n" + s.parameters + "\n";
  const engine::ToolFormat format = b.tool_format;
  return cached(b, key, "tools", "tool call grammar", [specs, format, parallel] {
    return std::make_shared<const grammar::Grammar>(
        grammar::parse_gbnf(engine::tool_call_gbnf(format, specs, parallel), gbnf_limits()));
  });
}

}  // namespace

std::shared_ptr<const grammar::Grammar> request_grammar(Backend& b, const ParsedRequest& r) {
  if (r.tool_choice == ToolChoice::kRequired || r.tool_choice == ToolChoice::kNamed)
    return tool_grammar(b, r);
  switch (r.format) {
    case Format::kText:
      return nullptr;
    case Format::kJsonObject:
      return engine::json_object_grammar();
    case Format::kJsonSchema: {
      const std::string param = "response_format.json_schema.schema";
      if (r.format_strict) {
        try {
          grammar::check_strict_schema(r.format_source);
        } catch (const Error& e) {
          throw ApiError(400,
                         std::string("strict schema: ") + e.what() +
                             " (see OpenAI's Structured Outputs subset, or set strict false)",
                         param, "invalid_response_format");
        }
      }
      const std::string src = r.format_source;
      const bool strict = r.format_strict;
      return cached(b, std::string(strict ? "schema-strict|" : "schema|") + src, param,
                    "response_format schema",
                    [src, strict] { return engine::schema_grammar(src, schema_options(strict)); });
    }
    case Format::kGrammar: {
      const std::string src = r.format_source;
      return cached(b, "gbnf|" + src, "grammar", "grammar", [src] {
        return std::make_shared<const grammar::Grammar>(grammar::parse_gbnf(src, gbnf_limits()));
      });
    }
  }
  return nullptr;
}

bool parses_tool_calls(const ParsedRequest& r) {
  return r.endpoint == Endpoint::kChat && !r.tools.is_null() && r.tool_choice != ToolChoice::kNone;
}

bool tool_calls_forced(const ParsedRequest& r) {
  return parses_tool_calls(r) &&
         (r.tool_choice == ToolChoice::kRequired || r.tool_choice == ToolChoice::kNamed);
}

std::string tool_call_id(const Backend& b) {
  // Mistral's template insists on ids of 9 letters and digits.
  return b.tool_format == engine::ToolFormat::kMistral ? make_request_id("").substr(0, 9)
                                                       : make_request_id("call_");
}

std::vector<ToolCallOut> api_tool_calls(const Backend& b, const ParsedRequest& r,
                                        std::vector<engine::ToolCall> calls) {
  if (!r.parallel_tool_calls && calls.size() > 1) calls.resize(1);
  std::vector<ToolCallOut> out;
  for (auto& c : calls) out.push_back({tool_call_id(b), std::move(c.name), std::move(c.arguments)});
  return out;
}

}  // namespace detail
}  // namespace slm::server
