// Tool-call syntaxes per model family (tool_calls.h).
#include "engine/tool_calls.h"

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "engine/constraint.h"
#include "grammar/json_schema.h"

namespace slm::engine {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kFunctionOpen = "<function=";
constexpr std::string_view kFunctionClose = "</function>";
constexpr std::string_view kMistralTag = "[TOOL_CALLS]";
constexpr std::string_view kRecipient = ">>>";

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

size_t skip_space(std::string_view t, size_t i) {
  while (i < t.size() && is_space(t[i])) ++i;
  return i;
}

std::string_view trim(std::string_view t) {
  size_t a = 0, b = t.size();
  while (a < b && is_space(t[a])) ++a;
  while (b > a && is_space(t[b - 1])) --b;
  return t.substr(a, b - a);
}

bool starts_with(std::string_view t, std::string_view p) {
  return t.substr(0, p.size()) == p;
}

// Index just past the JSON object or array starting at t[i], or npos when it
// does not close within t.
size_t json_end(std::string_view t, size_t i) {
  if (i >= t.size() || (t[i] != '{' && t[i] != '[')) return std::string_view::npos;
  int depth = 0;
  for (; i < t.size(); ++i) {
    const char c = t[i];
    if (c == '"') {
      for (++i; i < t.size() && t[i] != '"'; ++i)
        if (t[i] == '\\') ++i;
      if (i >= t.size()) return std::string_view::npos;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

bool parse_json(std::string_view t, Json& out) {
  out = Json::parse(t, nullptr, /*allow_exceptions=*/false);
  return !out.is_discarded();
}

// JSON text without the whitespace outside strings (the arguments' form, see
// tool_calls.h). t is valid JSON, so a quote outside a string opens one.
std::string compact_json(std::string_view t) {
  std::string out;
  out.reserve(t.size());
  bool in_string = false;
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < t.size())
        out += t[++i];
      else if (c == '"')
        in_string = false;
    } else if (!is_space(c)) {
      out += c;
      in_string = c == '"';
    }
  }
  return out;
}

// Index just past the JSON value starting at t[i] (valid JSON: a container, a
// string, or a literal running to the next ',', '}' or ']').
size_t value_end(std::string_view t, size_t i) {
  if (t[i] == '{' || t[i] == '[') return json_end(t, i);
  if (t[i] == '"') {
    for (++i; i < t.size() && t[i] != '"'; ++i)
      if (t[i] == '\\') ++i;
    return i + 1;
  }
  while (i < t.size() && t[i] != ',' && t[i] != '}' && t[i] != ']' && !is_space(t[i])) ++i;
  return i;
}

// The text of the value of member `key` in the valid JSON object obj (the last
// one when the key repeats, as the parser keeps), or empty when absent.
std::string_view member_text(std::string_view obj, std::string_view key) {
  std::string_view found;
  size_t i = skip_space(obj, 1);
  while (i < obj.size() && obj[i] == '"') {
    const size_t kend = value_end(obj, i);
    const Json k = Json::parse(obj.substr(i, kend - i), nullptr, false);
    i = skip_space(obj, skip_space(obj, kend) + 1);  // past ':'
    const size_t vend = value_end(obj, i);
    if (k.is_string() && k.get_ref<const std::string&>() == key) found = obj.substr(i, vend - i);
    i = skip_space(obj, vend);
    if (i < obj.size() && obj[i] == ',')
      i = skip_space(obj, i + 1);
    else
      break;
  }
  return found;
}

// {"name": N, "arguments" | "parameters": {...} or "{...}"} (the object's text
// is raw) as a call.
bool call_from_json(const Json& j, std::string_view raw, ToolCall& out) {
  if (!j.is_object()) return false;
  const auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get_ref<const std::string&>().empty())
    return false;
  std::string_view key = "arguments";
  auto args = j.find(key);
  if (args == j.end()) args = j.find(key = "parameters");
  std::string text = "{}";
  if (args != j.end()) {
    Json a;
    if (args->is_string()) {
      text = args->get<std::string>();
      if (!parse_json(text, a) || !a.is_object()) return false;
      text = compact_json(text);
    } else {
      if (!args->is_object()) return false;
      text = compact_json(member_text(raw, key));
    }
  }
  out.name = name->get<std::string>();
  out.arguments = std::move(text);
  return true;
}

// A JSON object at t[i] (after whitespace) as a call; i moves past it.
bool object_call(std::string_view t, size_t& i, ToolCall& out) {
  i = skip_space(t, i);
  const size_t end = json_end(t, i);
  Json j;
  if (end == std::string_view::npos || !parse_json(t.substr(i, end - i), j) ||
      !call_from_json(j, t.substr(i, end - i), out))
    return false;
  i = end;
  return true;
}

ToolParse as_content(std::string_view text) {
  return ToolParse{std::string(text), {}};
}

// A call named `name` whose arguments are the JSON object starting at or
// after k (Llama 3.1's <function=name>{...}, Functionary's >>>name\n{...}):
// appended to calls, i set past it; false when there is no such object.
bool named_object_call(std::string_view t, const std::string& name, size_t k,
                       std::vector<ToolCall>& calls, size_t& i) {
  k = skip_space(t, k);
  const size_t end = json_end(t, k);
  Json a;
  if (name.empty() || end == std::string_view::npos || !parse_json(t.substr(k, end - k), a) ||
      !a.is_object())
    return false;
  calls.push_back({name, compact_json(t.substr(k, end - k))});
  i = skip_space(t, end);
  return true;
}

ToolParse parse_hermes(std::string_view text) {
  size_t pos = text.find(kHermesOpen);
  if (pos == std::string_view::npos) return as_content(text);
  ToolParse r;
  std::string content(text.substr(0, pos));
  while (pos != std::string_view::npos) {
    size_t i = pos + kHermesOpen.size();
    ToolCall c;
    if (!object_call(text, i, c)) {
      // A block cut short (max_tokens) after complete ones is dropped.
      if (r.calls.empty() || json_end(text, skip_space(text, i)) != std::string_view::npos)
        return as_content(text);
      break;
    }
    r.calls.push_back(std::move(c));
    i = skip_space(text, i);
    if (starts_with(text.substr(i), kHermesClose))
      i += kHermesClose.size();
    else if (i < text.size())
      return as_content(text);
    pos = text.find(kHermesOpen, i);
    content += text.substr(i, pos == std::string_view::npos ? std::string_view::npos : pos - i);
  }
  r.content = std::string(trim(content));
  return r;
}

ToolParse parse_llama3(std::string_view text) {
  std::string_view t = trim(text);
  if (starts_with(t, kPythonTag)) t = trim(t.substr(kPythonTag.size()));
  ToolParse r;
  size_t i = 0;
  if (starts_with(t, kFunctionOpen)) {
    while (i < t.size()) {
      if (!starts_with(t.substr(i), kFunctionOpen)) return as_content(text);
      const size_t gt = t.find('>', i);
      if (gt == std::string_view::npos) return as_content(text);
      const std::string name(t.substr(i + kFunctionOpen.size(), gt - i - kFunctionOpen.size()));
      if (!named_object_call(t, name, gt + 1, r.calls, i)) return as_content(text);
      if (starts_with(t.substr(i), kFunctionClose)) i = skip_space(t, i + kFunctionClose.size());
    }
    return r;
  }
  if (t.empty() || t[0] != '{') return as_content(text);
  while (i < t.size()) {
    ToolCall c;
    if (!object_call(t, i, c)) return as_content(text);
    r.calls.push_back(std::move(c));
    i = skip_space(t, i);
    if (i < t.size() && t[i] == ';') i = skip_space(t, i + 1);
  }
  return r;
}

ToolParse parse_mistral(std::string_view text) {
  std::string_view t = trim(text);
  if (starts_with(t, kMistralTag)) t = trim(t.substr(kMistralTag.size()));
  if (t.empty() || t[0] != '[') return as_content(text);
  const size_t end = json_end(t, 0);
  Json j;
  if (end == std::string_view::npos || !trim(t.substr(end)).empty() ||
      !parse_json(t.substr(0, end), j) || !j.is_array() || j.empty())
    return as_content(text);
  ToolParse r;
  size_t i = skip_space(t, 1);  // the elements' raw text, in step with j's
  for (const Json& x : j) {
    const size_t e = value_end(t, i);
    ToolCall c;
    if (!call_from_json(x, t.substr(i, e - i), c)) return as_content(text);
    r.calls.push_back(std::move(c));
    i = skip_space(t, e);
    if (i < t.size() && t[i] == ',') i = skip_space(t, i + 1);
  }
  return r;
}

ToolParse parse_functionary(std::string_view text) {
  // The prompt ends in ">>>": the answer starts with a recipient.
  std::string s;
  if (!starts_with(text, kRecipient)) s = kRecipient;
  s += text;
  const std::string_view t = s;
  ToolParse r;
  std::string content;
  size_t i = 0;
  while (i < t.size()) {
    if (!starts_with(t.substr(i), kRecipient)) return as_content(text);
    const size_t nl = t.find('\n', i);
    if (nl == std::string_view::npos) return as_content(text);
    const std::string name(trim(t.substr(i + kRecipient.size(), nl - i - kRecipient.size())));
    if (name == "all") {
      const size_t next = t.find(kRecipient, nl + 1);
      content +=
          t.substr(nl + 1, next == std::string_view::npos ? std::string_view::npos : next - nl - 1);
      i = next == std::string_view::npos ? t.size() : next;
      continue;
    }
    if (!named_object_call(t, name, nl + 1, r.calls, i)) return as_content(text);
  }
  r.content = r.calls.empty() ? content : std::string(trim(content));
  return r;
}

// The length of the longest suffix of t that is a proper prefix of marker.
size_t partial_marker(std::string_view t, std::string_view marker) {
  for (size_t n = std::min(t.size(), marker.size() - 1); n > 0; --n)
    if (t.substr(t.size() - n) == marker.substr(0, n)) return n;
  return 0;
}

void append(ToolParse& to, ToolParse&& from) {
  to.content += from.content;
  for (auto& c : from.calls) to.calls.push_back(std::move(c));
}

std::string gbnf_literal(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20) {
      static const char* kHex = "0123456789ABCDEF";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

bool valid_tool_name(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  for (const char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return false;
  return true;
}

}  // namespace

std::string_view tool_format_name(ToolFormat f) {
  switch (f) {
    case ToolFormat::kHermes:
      return "hermes";
    case ToolFormat::kLlama3:
      return "llama3";
    case ToolFormat::kMistral:
      return "mistral";
    case ToolFormat::kFunctionary:
      return "functionary";
  }
  return "hermes";
}

ToolFormat detect_tool_format(std::string_view src) {
  const auto has = [&](std::string_view s) { return src.find(s) != std::string_view::npos; };
  if (has(kHermesOpen)) return ToolFormat::kHermes;
  if (has(kMistralTag)) return ToolFormat::kMistral;
  if (has(">>>all") || has("'>>>'")) return ToolFormat::kFunctionary;
  if (has(kFunctionOpen) || has(kPythonTag) || (has("<|start_header_id|>") && has("parameters")))
    return ToolFormat::kLlama3;
  return ToolFormat::kHermes;
}

ToolParse parse_tool_calls(ToolFormat f, std::string_view text, bool forced) {
  if (forced) {
    // One definition for whole and streamed answers: the stream's.
    ToolCallStream s(f, true);
    ToolStreamOut a = s.feed(text);
    ToolStreamOut b = s.finish();
    ToolParse r{std::move(a.content) + b.content, {}};
    apply_tool_deltas(r.calls, a.deltas);
    apply_tool_deltas(r.calls, b.deltas);
    return r;
  }
  switch (f) {
    case ToolFormat::kHermes:
      return parse_hermes(text);
    case ToolFormat::kLlama3:
      return parse_llama3(text);
    case ToolFormat::kMistral:
      return parse_mistral(text);
    case ToolFormat::kFunctionary:
      return parse_functionary(text);
  }
  return as_content(text);
}

ToolParse ToolCallStream::feed_unforced(std::string_view text) {
  held_ += text;
  ToolParse out;
  if (format_ == ToolFormat::kHermes || (format_ == ToolFormat::kFunctionary && decided_)) {
    const std::string_view marker = format_ == ToolFormat::kHermes ? kHermesOpen : kRecipient;
    if (!in_calls_) {
      const size_t pos = held_.find(marker);
      if (pos == std::string::npos) {
        const size_t keep = partial_marker(held_, marker);
        out.content = held_.substr(0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return out;
      }
      out.content = held_.substr(0, pos);
      held_.erase(0, pos);
      in_calls_ = true;
    }
    if (format_ == ToolFormat::kHermes) {
      // Each block is passed on when it closes.
      for (size_t close; (close = held_.find(kHermesClose)) != std::string::npos;) {
        ToolParse block =
            parse_hermes(std::string_view(held_).substr(0, close + kHermesClose.size()));
        if (block.calls.empty()) break;  // malformed: parsed again at the end
        block.content.clear();
        append(out, std::move(block));
        held_.erase(0, close + kHermesClose.size());
      }
    }
    return out;
  }
  if (decided_) {
    if (!in_calls_) {
      out.content = std::move(held_);
      held_.clear();
    }
    return out;
  }
  const std::string_view t = trim(held_);
  if (t.empty()) return out;
  if (format_ == ToolFormat::kFunctionary) {
    const size_t nl = held_.find('\n');
    if (nl == std::string::npos) return out;
    decided_ = true;
    // The recipient as parse_functionary reads it.
    std::string_view first = std::string_view(held_).substr(0, nl);
    if (starts_with(first, kRecipient)) first.remove_prefix(kRecipient.size());
    if (trim(first) != "all") {
      in_calls_ = true;
      return out;
    }
    held_.erase(0, nl + 1);
    return feed_unforced("");
  }
  const std::vector<std::string_view> markers =
      format_ == ToolFormat::kLlama3 ? std::vector<std::string_view>{"{", kPythonTag, kFunctionOpen}
                                     : std::vector<std::string_view>{"[", kMistralTag};
  for (const std::string_view m : markers) {
    if (starts_with(t, m)) {
      decided_ = in_calls_ = true;
      return out;
    }
    if (starts_with(m, t)) return out;  // may still become a marker
  }
  decided_ = true;
  return feed_unforced("");
}

ToolParse ToolCallStream::finish_unforced() {
  std::string rest = std::move(held_);
  held_.clear();
  if (!in_calls_) return ToolParse{std::move(rest), {}};
  ToolParse r = parse_tool_calls(format_, rest);
  // What follows complete calls and is not one (a block cut short) is dropped.
  if (r.calls.empty() && n_emitted_ > 0) return {};
  if (format_ == ToolFormat::kFunctionary && !r.calls.empty() && !starts_with(rest, kRecipient))
    r.content.clear();  // content came before, as "all"
  return r;
}

ToolStreamOut ToolCallStream::as_deltas(ToolParse&& p) {
  ToolStreamOut out{std::move(p.content), {}};
  for (ToolCall& c : p.calls)
    out.deltas.push_back({n_emitted_++, std::move(c.name), std::move(c.arguments)});
  return out;
}

namespace {

// The framing tool_call_gbnf writes around calls, per family: pre, then calls
// (open, name up to name_end, mid, arguments, close) separated by sep, then post.
struct Framing {
  std::string_view pre, open;
  char name_end;
  std::string_view mid, close, sep, post;
};

const Framing& framing(ToolFormat f) {
  static const Framing kHermes{
      "", "<tool_call>\n{\"name\": \"", '"', ", \"arguments\": ", "}\n</tool_call>", "\n", ""};
  static const Framing kLlama3{"", "{\"name\": \"", '"', ", \"parameters\": ", "}", "; ", ""};
  static const Framing kMistral{
      "[TOOL_CALLS][", "{\"name\": \"", '"', ", \"arguments\": ", "}", ", ", "]"};
  static const Framing kFunctionary{"", "", '\n', "", "", ">>>", ""};
  switch (f) {
    case ToolFormat::kHermes:
      return kHermes;
    case ToolFormat::kLlama3:
      return kLlama3;
    case ToolFormat::kMistral:
      return kMistral;
    case ToolFormat::kFunctionary:
      return kFunctionary;
  }
  return kHermes;
}

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

}  // namespace

// Enters a stage; a stage whose literal is empty for this family is passed
// straight through.
void ToolCallStream::enter(Stage stage) {
  const Framing& fr = framing(format_);
  stage_ = stage;
  lit_ = 0;
  for (;;) {
    if (stage_ == Stage::kPre && fr.pre.empty())
      stage_ = Stage::kOpen;
    else if (stage_ == Stage::kOpen && fr.open.empty())
      stage_ = Stage::kName;
    else if (stage_ == Stage::kMid && fr.mid.empty())
      stage_ = Stage::kArgsStart;
    else if (stage_ == Stage::kClose && fr.close.empty())
      stage_ = Stage::kBetween;
    else
      break;
  }
  if (stage_ == Stage::kName) name_.clear();
}

void ToolCallStream::step(char c, ToolStreamOut& out) {
  const Framing& fr = framing(format_);
  // Matches c as the next byte of the stage's literal, then enters `next`.
  const auto match = [&](std::string_view lit, Stage next) {
    if (lit_ < lit.size() && c == lit[lit_]) {
      if (++lit_ == lit.size()) enter(next);
    } else {
      stage_ = Stage::kDead;
    }
  };
  const auto emit_args = [&] {
    if (out.deltas.empty() || out.deltas.back().index != n_emitted_ - 1)
      out.deltas.push_back({n_emitted_ - 1, "", ""});
    out.deltas.back().arguments += c;
  };
  switch (stage_) {
    case Stage::kPre:
      if (fr.pre.empty()) {  // the first byte of an answer with no preamble
        enter(Stage::kPre);
        step(c, out);
        return;
      }
      // Mistral's [TOOL_CALLS] is a control token that may not be in the text.
      if (format_ == ToolFormat::kMistral && lit_ == 1 && c == '{') {
        enter(Stage::kOpen);
        step(c, out);
        return;
      }
      match(fr.pre, Stage::kOpen);
      return;
    case Stage::kOpen:
      match(fr.open, Stage::kName);
      return;
    case Stage::kName:
      if (c == fr.name_end) {
        if (name_.empty() || (format_ == ToolFormat::kFunctionary && name_ == "all")) {
          stage_ = Stage::kDead;
          return;
        }
        out.deltas.push_back({n_emitted_++, std::move(name_), ""});
        name_.clear();
        enter(Stage::kMid);
      } else if (name_char(c) && name_.size() < 64) {
        name_ += c;
      } else {
        stage_ = Stage::kDead;
      }
      return;
    case Stage::kMid:
      match(fr.mid, Stage::kArgsStart);
      return;
    case Stage::kArgsStart:
      if (is_space(c)) return;
      if (c != '{') {
        stage_ = Stage::kDead;
        return;
      }
      emit_args();
      depth_ = 1;
      in_string_ = escape_ = false;
      stage_ = Stage::kArgs;
      return;
    case Stage::kArgs:
      if (in_string_) {
        emit_args();
        if (escape_)
          escape_ = false;
        else if (c == '\\')
          escape_ = true;
        else if (c == '"')
          in_string_ = false;
        return;
      }
      if (is_space(c)) return;
      emit_args();
      if (c == '"') {
        in_string_ = true;
      } else if (c == '{' || c == '[') {
        ++depth_;
      } else if ((c == '}' || c == ']') && --depth_ == 0) {
        enter(Stage::kClose);
      }
      return;
    case Stage::kClose:
      if (lit_ == 0 && is_space(c) && !is_space(fr.close[0])) return;
      match(fr.close, Stage::kBetween);
      return;
    case Stage::kBetween:
      if (!fr.sep.empty() && c == fr.sep[0]) {
        stage_ = Stage::kSep;
        lit_ = 0;
        match(fr.sep, Stage::kOpen);
      } else if (!fr.post.empty() && c == fr.post[0]) {
        stage_ = Stage::kPost;
        lit_ = 0;
        match(fr.post, Stage::kDone);
      } else {
        stage_ = Stage::kDead;
      }
      return;
    case Stage::kSep:
      match(fr.sep, Stage::kOpen);
      return;
    case Stage::kPost:
      match(fr.post, Stage::kDone);
      return;
    case Stage::kDone:
    case Stage::kDead:
      return;  // what follows the calls is dropped
  }
}

ToolStreamOut ToolCallStream::feed(std::string_view text) {
  if (!forced_ || fallback_) return as_deltas(feed_unforced(text));
  ToolStreamOut out;
  const bool named = n_emitted_ > 0;
  if (!named) pending_ += text;
  for (const char c : text) {
    if (stage_ == Stage::kDead || stage_ == Stage::kDone) break;
    step(c, out);
  }
  if (named) return out;
  if (n_emitted_ > 0) {
    pending_.clear();
  } else if (stage_ == Stage::kDead) {
    // Not the grammar's framing after all: the family's parser takes it all.
    fallback_ = true;
    const std::string all = std::move(pending_);
    pending_.clear();
    return as_deltas(feed_unforced(all));
  }
  return out;
}

ToolStreamOut ToolCallStream::finish() {
  if (!forced_ || fallback_) return as_deltas(finish_unforced());
  if (n_emitted_ > 0) return {};  // a call cut short keeps what it has
  // Ended before the first call had its name (max_tokens): as unforced.
  fallback_ = true;
  const std::string all = std::move(pending_);
  pending_.clear();
  ToolStreamOut out = as_deltas(feed_unforced(all));
  ToolStreamOut rest = as_deltas(finish_unforced());
  out.content += rest.content;
  for (auto& d : rest.deltas) out.deltas.push_back(std::move(d));
  return out;
}

void apply_tool_deltas(std::vector<ToolCall>& calls, const std::vector<ToolCallDelta>& deltas) {
  for (const ToolCallDelta& d : deltas) {
    if (d.index >= calls.size()) calls.resize(d.index + 1);
    if (!d.name.empty()) calls[d.index].name = d.name;
    calls[d.index].arguments += d.arguments;
  }
}

std::string prefix_gbnf_rules(std::string_view g, std::string_view prefix) {
  std::string out;
  out.reserve(g.size() * 2);
  const auto word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  };
  for (size_t i = 0; i < g.size();) {
    const char c = g[i];
    if (c == '"' || c == '[') {
      const char close = c == '"' ? '"' : ']';
      size_t j = i + 1;
      while (j < g.size() && g[j] != close) j += g[j] == '\\' ? 2 : 1;
      j = std::min(j + 1, g.size());
      out += g.substr(i, j - i);
      i = j;
    } else if (c == '#') {
      size_t j = g.find('\n', i);
      if (j == std::string_view::npos) j = g.size();
      out += g.substr(i, j - i);
      i = j;
    } else if (c == '{') {
      size_t j = g.find('}', i);
      j = j == std::string_view::npos ? g.size() : j + 1;
      out += g.substr(i, j - i);
      i = j;
    } else if (word(c)) {
      size_t j = i;
      while (j < g.size() && word(g[j])) ++j;
      out += prefix;
      out += g.substr(i, j - i);
      i = j;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

std::string tool_call_gbnf(ToolFormat f, const std::vector<ToolSpec>& tools, bool parallel) {
  if (tools.empty()) throw Error("tool_call_gbnf: no tools");
  grammar::SchemaOptions options;
  options.max_schema_bytes = 1u << 20;
  options.max_rules = 20000;
  std::string rules;
  std::string alternatives;
  for (size_t i = 0; i < tools.size(); ++i) {
    const ToolSpec& t = tools[i];
    if (!valid_tool_name(t.name))
      throw Error("'" + t.name + "': a function name is 1-64 of a-z A-Z 0-9 _ -");
    const std::string schema = trim(t.parameters).empty() || trim(t.parameters) == "{}"
                                   ? std::string(R"({"type":"object"})")
                                   : t.parameters;
    std::string g;
    try {
      g = bounded_whitespace(grammar::json_schema_to_gbnf(schema, options));
    } catch (const Error& e) {
      throw Error(t.name + ": " + e.what());
    }
    std::string p = "t";
    p += std::to_string(i);
    p += '-';
    rules += prefix_gbnf_rules(g, p);
    const std::string args = p + "root";
    std::string alt;
    switch (f) {
      case ToolFormat::kHermes:
      case ToolFormat::kMistral:
        alt =
            gbnf_literal("{\"name\": \"" + t.name + "\", \"arguments\": ") + " " + args + " \"}\"";
        break;
      case ToolFormat::kLlama3:
        alt =
            gbnf_literal("{\"name\": \"" + t.name + "\", \"parameters\": ") + " " + args + " \"}\"";
        break;
      case ToolFormat::kFunctionary:
        alt = gbnf_literal(t.name + "\n") + " " + args;
        break;
    }
    if (i) alternatives += " | ";
    alternatives += alt;
  }
  std::string root;
  const std::string more = parallel ? "*" : "";
  switch (f) {
    case ToolFormat::kHermes:
      root = "root ::= tc-block ( \"\\n\" tc-block )" + more +
             "\ntc-block ::= \"<tool_call>\\n\" tc-call \"\\n</tool_call>\"\n";
      break;
    case ToolFormat::kLlama3:
      root = "root ::= tc-call ( \"; \" tc-call )" + more + "\n";
      break;
    case ToolFormat::kMistral:
      root = "root ::= \"[TOOL_CALLS][\" tc-call ( \", \" tc-call )" + more + " \"]\"\n";
      break;
    case ToolFormat::kFunctionary:
      root = "root ::= tc-call ( \">>>\" tc-call )" + more + "\n";
      break;
  }
  if (!parallel) {
    // "( x )" with no repetition: written as nothing.
    const size_t open = root.find(" ( ");
    const size_t close = root.find(" )", open);
    if (open != std::string::npos && close != std::string::npos) root.erase(open, close + 2 - open);
  }
  return root + "tc-call ::= " + alternatives + "\n" + rules;
}

}  // namespace slm::engine
