// Sandboxed Jinja chat templates (style.md §9).
//
// Chat templates come from model files, so they are untrusted programs. The
// engine implements the Jinja subset that real chat templates use, with the
// semantics of Hugging Face's setup (ImmutableSandboxedEnvironment with
// trim_blocks, lstrip_blocks and loop controls; tojson with ensure_ascii off),
// and nothing else: a template sees only the values passed in, cannot reach
// files, attributes of the host or any code, and runs under limits on work,
// loop iterations, call depth, nesting and output size. Every failure is a
// TemplateError; nothing aborts.
//
// Contexts are nlohmann::ordered_json because templates print dicts (tools,
// tool-call arguments) in insertion order, as Python does; nlohmann::json
// would sort the keys.
//
// Ownership and thread-safety: a Template owns its parsed program and is
// immutable after construction; render() may run concurrently from any number
// of threads. Each render allocates its own state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace slm::chat {

class TemplateError : public slm::Error {
 public:
  explicit TemplateError(const std::string& message, bool raised_by_template = false)
      : slm::Error(message), raised_by_template_(raised_by_template) {}
  // True when the template called raise_exception(msg); what() is then msg verbatim.
  bool raised_by_template() const { return raised_by_template_; }

 private:
  bool raised_by_template_;
};

// A wall-clock reading for strftime_now(), in the machine's local time zone.
struct CivilTime {
  int year = 1970;
  int month = 1;  // 1..12
  int day = 1;    // 1..31
  int hour = 0;
  int minute = 0;
  int second = 0;
};
// Parses "YYYY-MM-DD HH:MM" or "YYYY-MM-DD HH:MM:SS"; throws slm::Error when malformed.
CivilTime parse_civil_time(std::string_view text);

struct RenderOptions {
  // The rendered text, and any one string or list a template builds, in bytes / elements.
  std::size_t max_output_bytes = std::size_t{32} << 20;
  // Loop iterations summed over one render (range() sizes count against it too).
  std::uint64_t max_loop_iterations = 1'000'000;
  // Nested macro calls.
  int max_call_depth = 64;
  // Work units: one per expression node and statement, plus one per list element
  // copied and per 8 bytes of string built. Bounds run time whatever the template does.
  std::uint64_t max_steps = 20'000'000;
  // What strftime_now() reports; the local clock when unset.
  std::optional<CivilTime> now;
};

namespace detail {
struct Program;
}

class Template {
 public:
  // Parses source once. Throws TemplateError on syntax errors, on constructs the
  // sandbox does not offer (include, import, extends) and on nesting deeper than
  // the parser allows.
  explicit Template(std::string_view source);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  Template(const Template&) = delete;
  Template& operator=(const Template&) = delete;

  // Renders with the keys of context (a JSON object) as variables, plus the
  // globals every chat template may use (raise_exception, strftime_now, range,
  // namespace, dict). Throws TemplateError.
  std::string render(const nlohmann::ordered_json& context, const RenderOptions& opts = {}) const;

 private:
  std::unique_ptr<const detail::Program> program_;
};

// Parse and render in one go.
std::string render(std::string_view source, const nlohmann::ordered_json& context,
                   const RenderOptions& opts = {});

// The inputs of one chat prompt, as Hugging Face's apply_chat_template takes them.
struct ChatInput {
  // [{"role": "system"|"user"|"assistant"|"tool", "content": ..., "tool_calls": [...], ...}];
  // assistant tool_calls are OpenAI-shaped:
  // {"type": "function", "id": ..., "function": {"name": ..., "arguments": ...}}.
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  // Tool definitions; null means no tools (the variable is then left undefined).
  nlohmann::ordered_json tools;
  bool add_generation_prompt = false;
  std::string bos_token;
  std::string eos_token;
  // Further template variables (enable_thinking, documents, ...); they may not
  // replace the ones above.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

// Checks the shape of input (throws slm::Error naming the message and field at
// fault) and returns the render context.
nlohmann::ordered_json make_chat_context(const ChatInput& input);

}  // namespace slm::chat
