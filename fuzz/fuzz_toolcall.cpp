// libFuzzer target for the tool-call parsers (engine/tool_calls.h): model
// output is untrusted text. The first byte picks the family (mod 4) and the
// piece size of a streamed parse; the rest is the answer. The whole parse and
// the streamed parse (in pieces of that size) must not crash, must return
// calls whose arguments are JSON objects (unforced), and must agree on the
// calls; forced (tool_calls.h), stream and whole parse agree exactly. The
// template detector and the required-call grammar builder get the same text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/error.h"
#include "engine/tool_calls.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace slm::engine;
  if (size < 1) return 0;
  const auto format = static_cast<ToolFormat>(data[0] % 4);
  const size_t piece = 1 + (data[0] >> 2) % 16;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  const ToolParse whole = parse_tool_calls(format, text);
  for (const ToolCall& c : whole.calls) {
    if (c.name.empty()) std::abort();
    const auto args = nlohmann::json::parse(c.arguments, nullptr, false);
    if (args.is_discarded() || !args.is_object()) std::abort();
  }
  // Unforced: streaming passes Hermes blocks on as they close and may drop a
  // block cut short after them; otherwise it finds the whole parse's calls.
  // Forced: the stream (content and assembled calls) equals the whole parse
  // exactly, whatever the pieces.
  for (const bool forced : {false, true}) {
    const ToolParse w = forced ? parse_tool_calls(format, text, true) : whole;
    ToolCallStream stream(format, forced);
    ToolParse s;
    auto add = [&](ToolStreamOut&& o) {
      s.content += o.content;
      // A call starts (with its name) at the next index; fragments go to started calls.
      for (const ToolCallDelta& d : o.deltas) {
        if (d.index > s.calls.size() || (d.index == s.calls.size()) != !d.name.empty())
          std::abort();
        apply_tool_deltas(s.calls, {d});
      }
    };
    for (size_t i = 0; i < text.size(); i += piece) add(stream.feed(text.substr(i, piece)));
    add(stream.finish());
    if (forced) {
      if (s.content != w.content || s.calls.size() != w.calls.size()) std::abort();
      for (size_t i = 0; i < w.calls.size(); ++i)
        if (s.calls[i].name != w.calls[i].name || s.calls[i].arguments != w.calls[i].arguments)
          std::abort();
    } else if (format != ToolFormat::kHermes && s.calls.size() != w.calls.size()) {
      std::abort();
    }
  }

  (void)detect_tool_format(text);
  (void)prefix_gbnf_rules(text, "p-");
  try {
    (void)tool_call_gbnf(format, {{"f", std::string(text.substr(0, 256))}}, data[0] & 1);
  } catch (const slm::Error&) {
  }
  return 0;
}
