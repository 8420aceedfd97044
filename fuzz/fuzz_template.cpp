// libFuzzer target for the chat-template engine (style.md §7, §9). The whole
// input is the template; it renders against a fixed chat context with small
// limits, so that each run is fast. Anything but a TemplateError escaping, a
// sanitizer report, a hang or a stack overflow is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "chat/template.h"

namespace {

const nlohmann::ordered_json& context() {
  static const nlohmann::ordered_json ctx = [] {
    slm::chat::ChatInput in;
    in.messages = nlohmann::ordered_json::parse(R"([
      {"role": "system", "content": "You are terse."},
      {"role": "user", "content": "Hi <b>there</b> \u00e9\u65e5 \ud83c\udf0d"},
      {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "id": "call_1",
        "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2.5, null, true]}}}]},
      {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"t\": 18}"},
      {"role": "assistant", "content": "<think>hmm</think>\n\nIt is 18C."}])");
    in.tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"},
      "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}}])");
    in.add_generation_prompt = true;
    in.bos_token = "<s>";
    in.eos_token = "</s>";
    return slm::chat::make_chat_context(in);
  }();
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  slm::chat::RenderOptions opts;
  opts.max_steps = 200'000;
  opts.max_loop_iterations = 20'000;
  opts.max_output_bytes = std::size_t{1} << 16;
  opts.now = slm::chat::CivilTime{2026, 1, 15, 9, 30, 0};
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  try {
    const slm::chat::Template tmpl(source);
    tmpl.render(context(), opts);
  } catch (const slm::chat::TemplateError&) {
    // Refusing a template is the expected outcome for most inputs.
  }
  return 0;
}
