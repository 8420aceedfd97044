#include "server/request.h"

#include <cmath>
#include <limits>

#include "base/utf8.h"

namespace slm::server {
namespace {

using Json = nlohmann::json;
using OJson = nlohmann::ordered_json;

[[noreturn]] void bad(const std::string& param, const std::string& message,
                      const std::string& code = {}) {
  throw ApiError(400, message, param, code);
}

const char* type_name(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::number_float:
      return "a decimal number";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    default:
      return "an unsupported value";
  }
}

[[noreturn]] void wrong_type(const std::string& param, const char* want, const Json& got) {
  bad(param, "'" + param + "' must be " + want + ", not " + type_name(got));
}

// Typed, range-checked access to the members of one JSON object. A member
// that is absent or null counts as not given (OpenAI treats null the same).
class Fields {
 public:
  Fields(const Json& obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

  const Json* get(const char* key) const {
    const auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  std::string name(const char* key) const { return prefix_.empty() ? key : prefix_ + "." + key; }

  std::optional<bool> boolean(const char* key) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) wrong_type(name(key), "a boolean", *v);
    return v->get<bool>();
  }
  std::optional<int64_t> integer(const char* key, int64_t lo, int64_t hi) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer()) wrong_type(name(key), "an integer", *v);
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi))
      out_of_range(key, lo, hi);
    const int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) out_of_range(key, lo, hi);
    return x;
  }
  std::optional<double> number(const char* key, double lo, double hi) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) wrong_type(name(key), "a number", *v);
    const double x = v->get<double>();
    if (!std::isfinite(x) || x < lo || x > hi)
      bad(name(key), "'" + name(key) + "' must be between " + fmt(lo) + " and " + fmt(hi));
    return x;
  }
  std::optional<std::string> string(const char* key) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) wrong_type(name(key), "a string", *v);
    return v->get<std::string>();
  }

 private:
  static std::string fmt(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", x);
    return buf;
  }
  [[noreturn]] void out_of_range(const char* key, int64_t lo, int64_t hi) const {
    bad(name(key),
        "'" + name(key) + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  }

  const Json& obj_;
  std::string prefix_;
};

Json parse_body(std::string_view body, const RequestLimits& limits) {
  if (body.empty()) bad("", "the request body is empty; send a JSON object");
  if (json_depth(body) > limits.max_json_depth)
    bad("",
        "the JSON is nested more than " + std::to_string(limits.max_json_depth) + " levels deep");
  // JSON text never holds a raw NUL, and nlohmann's parser takes one as the
  // end of input, which would accept whatever follows it unread.
  if (const size_t nul = body.find('\0'); nul != std::string_view::npos)
    bad("", "the request body is not valid JSON: a NUL byte at byte " + std::to_string(nul));
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    const size_t at = utf8::first_invalid(body);
    if (at != std::string_view::npos) {
      const std::string path = json_path_at(body, at);
      bad(path, path.empty()
                    ? "the request body is not valid UTF-8"
                    : "'" + path + "' is not valid UTF-8 (byte " + std::to_string(at) + ")");
    }
    // Re-run with exceptions for nlohmann's description of where it broke.
    try {
      const Json again = Json::parse(body);
      (void)again;
    } catch (const Json::exception& e) {
      // parse_error, or out_of_range for a number beyond double's range.
      std::string what = e.what();
      if (const size_t p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
      bad("", "the request body is not valid JSON: " + what);
    }
    bad("", "the request body is not valid JSON");
  }
  if (!j.is_object())
    bad("", std::string("the request body must be a JSON object, not ") + type_name(j));
  return j;
}

void parse_stops(const Fields& f, const RequestLimits& limits, ParsedRequest& r) {
  const Json* v = f.get("stop");
  if (!v) return;
  auto add = [&](const Json& s, const std::string& param) {
    if (!s.is_string()) wrong_type(param, "a string", s);
    std::string text = s.get<std::string>();
    if (text.size() > limits.max_stop_bytes)
      bad(param,
          "'" + param + "' is longer than " + std::to_string(limits.max_stop_bytes) + " bytes");
    if (!text.empty()) r.stops.push_back(std::move(text));
  };
  if (v->is_string()) {
    add(*v, "stop");
  } else if (v->is_array()) {
    if (v->size() > limits.max_stops)
      bad("stop", "'stop' may hold at most " + std::to_string(limits.max_stops) + " strings");
    for (size_t i = 0; i < v->size(); ++i) add((*v)[i], "stop[" + std::to_string(i) + "]");
  } else {
    wrong_type("stop", "a string or an array of strings", *v);
  }
}

void parse_logit_bias(const Fields& f, const RequestLimits& limits, ParsedRequest& r) {
  const Json* v = f.get("logit_bias");
  if (!v) return;
  if (!v->is_object()) wrong_type("logit_bias", "an object mapping token ids to numbers", *v);
  if (v->size() > 1024) bad("logit_bias", "'logit_bias' may hold at most 1024 tokens");
  for (auto it = v->begin(); it != v->end(); ++it) {
    const std::string param = "logit_bias." + it.key();
    const std::string& k = it.key();
    int64_t id = -1;
    if (!k.empty() && k.size() <= 10 && k.find_first_not_of("0123456789") == std::string::npos)
      id = std::stoll(k);
    if (id < 0 || id >= limits.n_vocab)
      bad(param, "'logit_bias' keys must be token ids between 0 and " +
                     std::to_string(limits.n_vocab - 1));
    if (!it->is_number()) wrong_type(param, "a number", *it);
    const double b = it->get<double>();
    if (!(b >= -100 && b <= 100)) bad(param, "'" + param + "' must be between -100 and 100");
    r.sampling.logit_bias[static_cast<int32_t>(id)] = static_cast<float>(b);
  }
}

constexpr size_t kMaxFormatBytes = 256u << 10;

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (const char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return false;
  return true;
}

void parse_response_format(const Json& rf, ParsedRequest& r) {
  if (!rf.is_object()) wrong_type("response_format", "an object", rf);
  const Fields ff(rf, "response_format");
  const auto type = ff.string("type");
  if (!type) bad("response_format.type", "'response_format' needs a 'type'");
  if (*type == "text") return;
  if (*type == "json_object") {
    r.format = ParsedRequest::Format::kJsonObject;
    return;
  }
  if (*type != "json_schema")
    bad("response_format.type",
        "response_format type '" + *type + "' is not supported: use text, json_object or json_schema",
        "unsupported_response_format");
  const Json* js = ff.get("json_schema");
  if (!js) bad("response_format.json_schema", "'response_format.json_schema' is required");
  if (!js->is_object()) wrong_type("response_format.json_schema", "an object", *js);
  const Fields jf(*js, "response_format.json_schema");
  const auto name = jf.string("name");
  if (!name) bad("response_format.json_schema.name", "'response_format.json_schema.name' is required");
  if (!valid_name(*name))
    bad("response_format.json_schema.name",
        "'response_format.json_schema.name' must be 1-64 of a-z, A-Z, 0-9, _ and -");
  r.format_strict = jf.boolean("strict").value_or(false);
  r.format = ParsedRequest::Format::kJsonSchema;
  const Json* schema = jf.get("schema");
  if (!schema) {
    r.format_source = "{}";
    return;
  }
  if (!schema->is_object() && !schema->is_boolean())
    wrong_type("response_format.json_schema.schema", "an object", *schema);
  r.format_source = schema->dump();
  if (r.format_source.size() > kMaxFormatBytes)
    bad("response_format.json_schema.schema",
        "the schema is larger than " + std::to_string(kMaxFormatBytes) + " bytes");
}

void parse_common(const Json& j, const RequestLimits& limits, const RequestDefaults& defaults,
                  ParsedRequest& r) {
  const Fields f(j, "");
  if (auto m = f.string("model")) r.model = *m;
  r.stream = f.boolean("stream").value_or(false);
  if (const Json* so = f.get("stream_options")) {
    if (!so->is_object()) wrong_type("stream_options", "an object", *so);
    if (!r.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    r.include_usage = Fields(*so, "stream_options").boolean("include_usage").value_or(false);
  }

  const int64_t cap =
      limits.max_tokens_cap > 0 ? limits.max_tokens_cap : std::numeric_limits<int32_t>::max();
  const auto max_tokens = f.integer("max_tokens", 1, cap);
  const auto max_completion = f.integer("max_completion_tokens", 1, cap);
  r.max_tokens = max_completion ? max_completion : max_tokens;
  if (!r.max_tokens && defaults.max_tokens > 0) {
    r.max_tokens = std::min(defaults.max_tokens, cap);
    r.max_tokens_defaulted = true;
  }

  if (const auto n =
          f.integer("n", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
      n && *n != 1)
    bad("n", "only n = 1 is supported; send separate requests for more choices");

  // OpenAI's defaults; top-k and min-p (extensions some clients send) are off
  // unless asked for, so a plain request samples the model's distribution.
  engine::SamplerParams& s = r.sampling;
  s.temperature = static_cast<float>(
      f.number("temperature", 0, 2).value_or(defaults.temperature.value_or(1.0f)));
  s.top_p = static_cast<float>(f.number("top_p", 0, 1).value_or(1.0));
  s.top_k = static_cast<int32_t>(f.integer("top_k", 0, 1 << 20).value_or(0));
  s.min_p = static_cast<float>(f.number("min_p", 0, 1).value_or(0.0));
  s.repeat_penalty = static_cast<float>(f.number("repeat_penalty", 0.01, 10).value_or(1.0));
  s.presence_penalty = static_cast<float>(f.number("presence_penalty", -2, 2).value_or(0.0));
  s.frequency_penalty = static_cast<float>(f.number("frequency_penalty", -2, 2).value_or(0.0));
  if (const Json* seed = f.get("seed")) {
    if (!seed->is_number_integer()) wrong_type("seed", "an integer", *seed);
    // Any 64-bit integer is a seed; negative ones wrap, as OpenAI accepts them.
    s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>()
                                        : static_cast<uint64_t>(seed->get<int64_t>());
    r.seed_given = true;
  }
  parse_logit_bias(f, limits, r);
  parse_stops(f, limits, r);
  if (auto u = f.string("user")) r.user = *u;
  r.ignore_eos = f.boolean("ignore_eos").value_or(false);

  if (const Json* rf = f.get("response_format")) parse_response_format(*rf, r);
  if (const auto g = f.string("grammar")) {
    if (r.format != ParsedRequest::Format::kText)
      bad("grammar", "give either 'grammar' or a 'response_format' other than text, not both");
    if (g->size() > kMaxFormatBytes)
      bad("grammar", "'grammar' is longer than " + std::to_string(kMaxFormatBytes) + " bytes");
    r.format = ParsedRequest::Format::kGrammar;
    r.format_source = *g;
  }
}

std::string message_text(const Json& content, const std::string& param) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) wrong_type(param, "a string or an array of content parts", content);
  std::string text;
  for (size_t k = 0; k < content.size(); ++k) {
    const Json& part = content[k];
    const std::string pp = param + "[" + std::to_string(k) + "]";
    if (!part.is_object()) wrong_type(pp, "a content part object", part);
    const Fields pf(part, pp);
    const auto type = pf.string("type");
    if (!type) bad(pp + ".type", "'" + pp + ".type' is required");
    if (*type != "text")
      bad(pp + ".type",
          "content parts of type '" + *type + "' are not supported: this model reads text only");
    const auto t = pf.string("text");
    if (!t) bad(pp + ".text", "'" + pp + ".text' is required");
    if (!text.empty()) text += '\n';
    text += *t;
  }
  return text;
}

void parse_tool_choice(const Json& j, ParsedRequest& r) {
  const Fields f(j, "");
  using TC = ParsedRequest::ToolChoice;
  const bool has_tools = !r.tools.is_null();
  r.tool_choice = has_tools ? TC::kAuto : TC::kNone;
  r.parallel_tool_calls = f.boolean("parallel_tool_calls").value_or(true);
  const Json* tc = f.get("tool_choice");
  if (!tc) return;
  if (tc->is_string()) {
    const std::string c = tc->get<std::string>();
    if (c == "none") r.tool_choice = TC::kNone;
    else if (c == "auto") r.tool_choice = TC::kAuto;
    else if (c == "required") r.tool_choice = TC::kRequired;
    else bad("tool_choice", "'tool_choice' must be none, auto, required or a function object");
  } else if (tc->is_object()) {
    const Fields cf(*tc, "tool_choice");
    if (const auto type = cf.string("type"); type && *type != "function")
      bad("tool_choice.type", "'tool_choice.type' must be 'function'");
    const Json* fn = cf.get("function");
    if (!fn || !fn->is_object()) bad("tool_choice.function", "'tool_choice.function' must be an object");
    const auto name = Fields(*fn, "tool_choice.function").string("name");
    if (!name) bad("tool_choice.function.name", "'tool_choice.function.name' is required");
    r.tool_choice = TC::kNamed;
    r.tool_choice_name = *name;
  } else {
    wrong_type("tool_choice", "a string or an object", *tc);
  }
  if (r.tool_choice == TC::kNone || r.tool_choice == TC::kAuto) return;
  if (!has_tools) bad("tool_choice", "'tool_choice' needs 'tools'");
  if (r.tool_choice == TC::kNamed) {
    bool found = false;
    for (const auto& t : r.tools) found = found || t["function"]["name"] == r.tool_choice_name;
    if (!found)
      bad("tool_choice.function.name",
          "'tool_choice' names the function '" + r.tool_choice_name + "', which is not in 'tools'");
  }
  if (r.format != ParsedRequest::Format::kText)
    bad("tool_choice", "a required or named 'tool_choice' cannot be combined with a response format");
}

void parse_messages(const Json& j, const RequestDefaults& defaults, ParsedRequest& r) {
  const auto it = j.find("messages");
  if (it == j.end() || it->is_null()) bad("messages", "'messages' is required");
  if (!it->is_array()) wrong_type("messages", "an array", *it);
  if (it->empty()) bad("messages", "'messages' must hold at least one message");
  if (it->size() > 100000) bad("messages", "too many messages");
  r.messages = OJson::array();
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& m = (*it)[i];
    const std::string p = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) wrong_type(p, "an object", m);
    const Fields f(m, p);
    auto role = f.string("role");
    if (!role) bad(p + ".role", "'" + p + ".role' is required");
    if (*role == "developer") role = "system";
    if (*role != "system" && *role != "user" && *role != "assistant" && *role != "tool")
      bad(p + ".role", "'" + p + ".role' must be one of system, developer, user, assistant, tool");
    OJson out = OJson::object();
    out["role"] = *role;
    const Json* content = f.get("content");
    const Json* tool_calls = f.get("tool_calls");
    if (content) {
      out["content"] = message_text(*content, p + ".content");
    } else if (*role == "assistant" && tool_calls) {
      out["content"] = nullptr;
    } else {
      bad(p + ".content", "'" + p + ".content' is required");
    }
    if (auto name = f.string("name")) out["name"] = *name;
    if (tool_calls) {
      if (*role != "assistant")
        bad(p + ".tool_calls", "only assistant messages carry 'tool_calls'");
      if (!tool_calls->is_array()) wrong_type(p + ".tool_calls", "an array", *tool_calls);
      out["tool_calls"] = OJson::parse(tool_calls->dump());
    }
    if (auto id = f.string("tool_call_id")) out["tool_call_id"] = *id;
    r.messages.push_back(std::move(out));
  }
  if (!defaults.system.empty()) {
    bool has_system = false;
    for (const auto& m : r.messages) has_system = has_system || m["role"] == "system";
    if (!has_system)
      r.messages.insert(r.messages.begin(),
                        OJson{{"role", "system"}, {"content", defaults.system}});
  }

  if (const Json* tools = Fields(j, "").get("tools")) {
    if (!tools->is_array()) wrong_type("tools", "an array", *tools);
    for (size_t i = 0; i < tools->size(); ++i) {
      const Json& t = (*tools)[i];
      const std::string p = "tools[" + std::to_string(i) + "]";
      if (!t.is_object()) wrong_type(p, "an object", t);
      const Json* fn = Fields(t, p).get("function");
      if (!fn || !fn->is_object()) bad(p + ".function", "'" + p + ".function' must be an object");
      if (const auto type = Fields(t, p).string("type"); type && *type != "function")
        bad(p + ".type", "'" + p + ".type' must be 'function'");
      const Fields ff(*fn, p + ".function");
      const auto name = ff.string("name");
      if (!name) bad(p + ".function.name", "'" + p + ".function.name' is required");
      if (!valid_name(*name))
        bad(p + ".function.name", "'" + p + ".function.name' must be 1-64 of a-z, A-Z, 0-9, _ and -");
      if (const Json* params = ff.get("parameters"); params && !params->is_object())
        wrong_type(p + ".function.parameters", "an object (a JSON Schema)", *params);
      ff.boolean("strict");
    }
    if (!tools->empty()) r.tools = OJson::parse(tools->dump());
  }
  parse_tool_choice(j, r);
  const Fields f(j, "");
  r.logprobs = f.boolean("logprobs").value_or(false);
  if (const auto k = f.integer("top_logprobs", 0, 20)) {
    if (!r.logprobs) bad("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    r.top_logprobs = static_cast<int>(*k);
  }
}

void parse_prompt(const Json& j, const RequestLimits& limits, ParsedRequest& r) {
  const auto it = j.find("prompt");
  if (it == j.end() || it->is_null()) bad("prompt", "'prompt' is required");
  const Json& p = *it;
  auto token_list = [&](const Json& a, const std::string& param) {
    for (size_t i = 0; i < a.size(); ++i) {
      const Json& t = a[i];
      const std::string tp = param + "[" + std::to_string(i) + "]";
      if (!t.is_number_integer()) wrong_type(tp, "a token id (integer)", t);
      const int64_t id =
          t.is_number_unsigned() && t.get<uint64_t>() > static_cast<uint64_t>(limits.n_vocab)
              ? limits.n_vocab
              : t.get<int64_t>();
      if (id < 0 || id >= limits.n_vocab)
        bad(tp, "token id " + t.dump() + " in '" + tp + "' is outside the vocabulary (0.." +
                    std::to_string(limits.n_vocab - 1) + ")");
      r.prompt_tokens.push_back(static_cast<int32_t>(id));
    }
    r.prompt_is_tokens = true;
  };
  if (p.is_string()) {
    r.prompt = p.get<std::string>();
  } else if (p.is_array()) {
    if (p.empty()) bad("prompt", "'prompt' must not be empty");
    if (p[0].is_string() || p[0].is_array()) {
      if (p.size() != 1)
        bad("prompt", "only one prompt per request is supported; send separate requests");
      if (p[0].is_string())
        r.prompt = p[0].get<std::string>();
      else
        token_list(p[0], "prompt[0]");
    } else {
      token_list(p, "prompt");
    }
  } else {
    wrong_type("prompt", "a string, an array of token ids, or an array with one of those", p);
  }
  const Fields f(j, "");
  if (f.boolean("echo").value_or(false)) bad("echo", "'echo' is not supported");
  if (auto s = f.string("suffix"); s && !s->empty())
    bad("suffix", "'suffix' (fill-in-the-middle) is not supported");
  if (const auto b = f.integer("best_of", 1, 1); b && *b != 1)
    bad("best_of", "only best_of = 1 is supported");
  if (const auto k = f.integer("logprobs", 0, 5)) {
    r.logprobs = true;
    r.top_logprobs = static_cast<int>(*k);
  }
}

}  // namespace

nlohmann::json error_json(const ApiError& e) {
  Json err = {{"message", e.what()}, {"type", e.type()}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param().empty()) err["param"] = e.param();
  if (!e.code().empty()) err["code"] = e.code();
  return Json{{"error", err}};
}

ParsedRequest parse_request(Endpoint endpoint, std::string_view body, const RequestLimits& limits,
                            const RequestDefaults& defaults) {
  const Json j = parse_body(body, limits);
  ParsedRequest r;
  r.endpoint = endpoint;
  parse_common(j, limits, defaults, r);
  if (endpoint == Endpoint::kChat)
    parse_messages(j, defaults, r);
  else
    parse_prompt(j, limits, r);
  return r;
}

std::string json_path_at(std::string_view text, size_t offset) {
  struct Frame {
    bool object;
    bool want_key;
    size_t index;
    std::string key;
  };
  std::vector<Frame> stack;
  size_t i = 0;
  const size_t end = std::min(offset, text.size());
  while (i < end) {
    const char c = text[i];
    if (c == '"') {
      const size_t start = ++i;
      while (i < end && text[i] != '"') i += text[i] == '\\' ? 2 : 1;
      if (i >= end) break;  // offset is inside this string
      if (!stack.empty() && stack.back().object && stack.back().want_key)
        stack.back().key = std::string(text.substr(start, i - start));
      ++i;
      continue;
    }
    if (c == '{') stack.push_back({true, true, 0, {}});
    if (c == '[') stack.push_back({false, false, 0, {}});
    if ((c == '}' || c == ']') && !stack.empty()) stack.pop_back();
    if (c == ',' && !stack.empty()) {
      if (stack.back().object)
        stack.back().want_key = true;
      else
        ++stack.back().index;
    }
    if (c == ':' && !stack.empty() && stack.back().object) stack.back().want_key = false;
    ++i;
  }
  std::string path;
  for (const Frame& f : stack) {
    if (f.object) {
      if (f.key.empty() || f.want_key) break;
      if (!path.empty()) path += '.';
      path += f.key;
    } else {
      // Appended piecewise: g++ 12 warns falsely (-Wrestrict) on "[" + std::string.
      path += '[';
      path += std::to_string(f.index);
      path += ']';
    }
  }
  return path;
}

int json_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') {
      for (++i; i < text.size() && text[i] != '"'; ++i)
        if (text[i] == '\\') ++i;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace slm::server
