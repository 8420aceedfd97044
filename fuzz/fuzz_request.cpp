// libFuzzer target for the server's request parsing (style.md §7, §8): the
// whole input is a request body, parsed as both a chat and a completions
// request under small limits. A body is either accepted, with every limit
// respected, or rejected with ApiError; any other exception, a sanitizer
// report or a hang is a finding. The JSON text helpers the error messages
// use (json_depth, json_path_at) run on the same malformed bytes, and an
// accepted chat body goes on to the chat context the server builds next.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "base/error.h"
#include "base/utf8.h"
#include "chat/template.h"
#include "server/request.h"
#include "server/response.h"

namespace {

using slm::server::ApiError;
using slm::server::Endpoint;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_request: invariant failed: %s\n", what);
    std::abort();
  }
}

void parse_one(Endpoint endpoint, std::string_view body, const slm::server::RequestLimits& limits) {
  slm::server::ParsedRequest r;
  try {
    r = slm::server::parse_request(endpoint, body, limits);
  } catch (const ApiError& e) {
    check(e.status() >= 400 && e.status() < 600, "ApiError status is not an HTTP error");
    // As the server sends it (error messages may quote invalid UTF-8 from the body).
    (void)slm::server::dump_json(slm::server::error_json(e));
    return;
  }
  check(r.endpoint == endpoint, "endpoint");
  check(slm::utf8::is_valid(body), "an accepted body is not valid UTF-8");
  check(r.stops.size() <= limits.max_stops, "too many stops accepted");
  for (const auto& s : r.stops)
    check(s.size() <= limits.max_stop_bytes, "stop longer than the limit accepted");
  for (const int32_t id : r.prompt_tokens)
    check(id >= 0 && id < limits.n_vocab, "token id out of range accepted");
  if (r.max_tokens)
    check(*r.max_tokens >= 0 && *r.max_tokens <= limits.max_tokens_cap, "max_tokens out of range");
  check(r.top_logprobs >= 0, "negative top_logprobs");
  if (endpoint == Endpoint::kChat) {
    check(r.messages.is_array() && !r.messages.empty(), "messages");
    slm::chat::ChatInput in;
    in.messages = r.messages;
    in.tools = r.tools;
    in.add_generation_prompt = true;
    try {
      (void)slm::chat::make_chat_context(in);
    } catch (const slm::Error&) {  // the server answers 400 here
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  slm::server::RequestLimits limits;
  limits.n_vocab = 1000;
  limits.max_tokens_cap = 4096;
  limits.max_stops = 4;
  limits.max_stop_bytes = 64;
  limits.max_json_depth = 16;
  parse_one(Endpoint::kChat, body, limits);
  parse_one(Endpoint::kCompletion, body, limits);
  (void)slm::server::json_depth(body);
  (void)slm::server::json_path_at(body, size / 2);
  (void)slm::server::json_path_at(body, size);
  return 0;
}
