// The render context of a chat prompt, with the variables Hugging Face's
// apply_chat_template passes: messages, tools (only when there are some: many
// templates test `tools is defined`), add_generation_prompt, bos_token and
// eos_token.
#include <string>

#include "chat/template.h"

namespace slm::chat {

namespace {

using Json = nlohmann::ordered_json;

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw slm::Error("messages: " + where + ": " + what);
}

void check_tool_call(const Json& call, const std::string& where) {
  if (!call.is_object()) bad(where, "a tool call must be an object");
  if (call.contains("type") && !call["type"].is_string()) bad(where, "\"type\" must be a string");
  if (!call.contains("function") || !call["function"].is_object())
    bad(where, "a tool call needs a \"function\" object with \"name\" and \"arguments\"");
  const Json& fn = call["function"];
  if (!fn.contains("name") || !fn["name"].is_string()) bad(where, "\"function\".\"name\" must be a string");
  if (fn.contains("arguments") && !fn["arguments"].is_string() && !fn["arguments"].is_object())
    bad(where, "\"function\".\"arguments\" must be a JSON string or an object");
}

void check_message(const Json& m, std::size_t index) {
  const std::string where = "message " + std::to_string(index);
  if (!m.is_object()) bad(where, "a message must be an object");
  if (!m.contains("role") || !m["role"].is_string()) bad(where, "\"role\" must be a string");
  if (m.contains("content")) {
    const Json& c = m["content"];
    if (!c.is_string() && !c.is_null() && !c.is_array())
      bad(where, "\"content\" must be a string, null or an array of parts");
  }
  if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
    if (!m["tool_calls"].is_array()) bad(where, "\"tool_calls\" must be an array");
    std::size_t k = 0;
    for (const Json& call : m["tool_calls"]) check_tool_call(call, where + " tool call " + std::to_string(k++));
  }
}

}  // namespace

Json make_chat_context(const ChatInput& input) {
  if (!input.messages.is_array()) throw slm::Error("messages must be a JSON array");
  std::size_t i = 0;
  for (const Json& m : input.messages) check_message(m, i++);
  if (!input.tools.is_null() && !input.tools.is_array()) throw slm::Error("tools must be a JSON array");
  if (!input.extra.is_object()) throw slm::Error("extra template variables must be a JSON object");

  Json ctx = Json::object();
  ctx["messages"] = input.messages;
  if (!input.tools.is_null()) ctx["tools"] = input.tools;
  ctx["add_generation_prompt"] = input.add_generation_prompt;
  ctx["bos_token"] = input.bos_token;
  ctx["eos_token"] = input.eos_token;
  for (auto it = input.extra.begin(); it != input.extra.end(); ++it) {
    if (ctx.contains(it.key())) throw slm::Error("template variable '" + it.key() + "' is set twice");
    ctx[it.key()] = it.value();
  }
  return ctx;
}

}  // namespace slm::chat
