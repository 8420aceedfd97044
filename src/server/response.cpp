#include "server/response.h"

#include <algorithm>
#include <random>

namespace slm::server {
namespace {

using OJson = nlohmann::ordered_json;

constexpr const char* kFingerprint = "fp_slm";

OJson bytes_of(const std::string& s) {
  OJson a = OJson::array();
  for (const char c : s) a.push_back(static_cast<unsigned char>(c));
  return a;
}

}  // namespace

std::string dump_json(const nlohmann::ordered_json& v) {
  return v.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string dump_json(const nlohmann::json& v) {
  return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string sse_event(std::string_view data) {
  std::string s;
  s.reserve(data.size() + 8);
  s += "data: ";
  s += data;
  s += "\n\n";
  return s;
}

std::string make_request_id(std::string_view prefix) {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id(prefix);
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof kAlphabet - 1)];
  return id;
}

ResponseWriter::ResponseWriter(Endpoint endpoint, std::string model, bool include_usage,
                               std::function<std::string(int32_t)> token_piece, std::time_t created)
    : endpoint_(endpoint),
      model_(std::move(model)),
      include_usage_(include_usage),
      token_piece_(std::move(token_piece)),
      created_(created),
      id_(make_request_id(endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-")) {}

OJson ResponseWriter::usage_json(const Usage& u) {
  return OJson{{"prompt_tokens", u.prompt_tokens},
               {"completion_tokens", u.completion_tokens},
               {"total_tokens", u.prompt_tokens + u.completion_tokens},
               {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

OJson ResponseWriter::chunk_base() const {
  OJson c;
  c["id"] = id_;
  c["object"] = endpoint_ == Endpoint::kChat ? "chat.completion.chunk" : "text_completion";
  c["created"] = static_cast<int64_t>(created_);
  c["model"] = model_;
  c["system_fingerprint"] = kFingerprint;
  c["choices"] = OJson::array();
  return c;
}

OJson ResponseWriter::logprobs_json(std::span<const engine::TokenLogprob> logprobs) {
  if (endpoint_ == Endpoint::kChat) {
    OJson content = OJson::array();
    for (const engine::TokenLogprob& t : logprobs) {
      const std::string piece = token_piece_(t.id);
      OJson top = OJson::array();
      for (const auto& [id, lp] : t.top) {
        const std::string p = token_piece_(id);
        top.push_back(OJson{{"token", p}, {"logprob", lp}, {"bytes", bytes_of(p)}});
      }
      content.push_back(OJson{{"token", piece},
                              {"logprob", t.logprob},
                              {"bytes", bytes_of(piece)},
                              {"top_logprobs", top}});
    }
    return OJson{{"content", content}, {"refusal", nullptr}};
  }
  OJson tokens = OJson::array(), token_logprobs = OJson::array(), top = OJson::array(),
        offsets = OJson::array();
  for (const engine::TokenLogprob& t : logprobs) {
    const std::string piece = token_piece_(t.id);
    tokens.push_back(piece);
    token_logprobs.push_back(t.logprob);
    OJson alt = OJson::object();
    for (const auto& [id, lp] : t.top) alt[token_piece_(id)] = lp;
    top.push_back(alt);
    offsets.push_back(text_offset_);
    text_offset_ += static_cast<int64_t>(piece.size());
  }
  return OJson{{"tokens", tokens},
               {"token_logprobs", token_logprobs},
               {"top_logprobs", top},
               {"text_offset", offsets}};
}

std::string ResponseWriter::stream_start() {
  if (endpoint_ != Endpoint::kChat) return {};
  OJson c = chunk_base();
  c["choices"].push_back(
      OJson{{"index", 0},
            {"delta", {{"role", "assistant"}, {"content", ""}, {"refusal", nullptr}}},
            {"logprobs", nullptr},
            {"finish_reason", nullptr}});
  if (include_usage_) c["usage"] = nullptr;
  return sse_event(dump_json(c));
}

std::string ResponseWriter::stream_delta(std::string_view text,
                                         std::span<const engine::TokenLogprob> logprobs) {
  if (text.empty() && logprobs.empty()) return {};
  OJson c = chunk_base();
  OJson lp = logprobs.empty() ? OJson(nullptr) : logprobs_json(logprobs);
  if (endpoint_ == Endpoint::kChat)
    c["choices"].push_back(OJson{{"index", 0},
                                 {"delta", {{"content", text}}},
                                 {"logprobs", lp},
                                 {"finish_reason", nullptr}});
  else
    c["choices"].push_back(
        OJson{{"text", text}, {"index", 0}, {"logprobs", lp}, {"finish_reason", nullptr}});
  if (include_usage_) c["usage"] = nullptr;
  return sse_event(dump_json(c));
}

namespace {

OJson tool_call_delta(OJson chunk, OJson tool_call) {
  chunk["choices"].push_back(
      OJson{{"index", 0},
            {"delta", {{"tool_calls", OJson::array({std::move(tool_call)})}}},
            {"logprobs", nullptr},
            {"finish_reason", nullptr}});
  return chunk;
}

}  // namespace

std::string ResponseWriter::stream_tool_call_start(size_t index, const std::string& id,
                                                   const std::string& name) {
  OJson c = tool_call_delta(chunk_base(), OJson{{"index", index},
                                                {"id", id},
                                                {"type", "function"},
                                                {"function", {{"name", name}, {"arguments", ""}}}});
  if (include_usage_) c["usage"] = nullptr;
  return sse_event(dump_json(c));
}

std::string ResponseWriter::stream_tool_arguments(size_t index, std::string_view fragment) {
  OJson c = tool_call_delta(chunk_base(),
                            OJson{{"index", index}, {"function", {{"arguments", fragment}}}});
  if (include_usage_) c["usage"] = nullptr;
  return sse_event(dump_json(c));
}

std::string ResponseWriter::stream_finish(engine::FinishReason finish, bool tool_calls) {
  OJson c = chunk_base();
  if (endpoint_ == Endpoint::kChat)
    c["choices"].push_back(OJson{{"index", 0},
                                 {"delta", OJson::object()},
                                 {"logprobs", nullptr},
                                 {"finish_reason", finish_reason(finish, tool_calls)}});
  else
    c["choices"].push_back(OJson{{"text", ""},
                                 {"index", 0},
                                 {"logprobs", nullptr},
                                 {"finish_reason", finish_reason(finish)}});
  if (include_usage_) c["usage"] = nullptr;
  return sse_event(dump_json(c));
}

std::string ResponseWriter::stream_usage(const Usage& usage) {
  OJson c = chunk_base();
  c["usage"] = usage_json(usage);
  return sse_event(dump_json(c));
}

OJson ResponseWriter::complete(std::string_view text, engine::FinishReason finish,
                               const Usage& usage, std::span<const engine::TokenLogprob> logprobs,
                               bool want_logprobs, std::span<const ToolCallOut> tool_calls) {
  OJson r;
  r["id"] = id_;
  r["object"] = endpoint_ == Endpoint::kChat ? "chat.completion" : "text_completion";
  r["created"] = static_cast<int64_t>(created_);
  r["model"] = model_;
  const OJson lp = want_logprobs ? logprobs_json(logprobs) : OJson(nullptr);
  if (endpoint_ == Endpoint::kChat) {
    OJson message = {{"role", "assistant"}, {"content", text}, {"refusal", nullptr}};
    if (!tool_calls.empty()) {
      if (text.empty()) message["content"] = nullptr;
      OJson calls = OJson::array();
      for (const ToolCallOut& c : tool_calls)
        calls.push_back(OJson{{"id", c.id},
                              {"type", "function"},
                              {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
      message["tool_calls"] = std::move(calls);
    }
    r["choices"] =
        OJson::array({OJson{{"index", 0},
                            {"message", std::move(message)},
                            {"logprobs", lp},
                            {"finish_reason", finish_reason(finish, !tool_calls.empty())}}});
  } else {
    r["choices"] = OJson::array({OJson{
        {"text", text}, {"index", 0}, {"logprobs", lp}, {"finish_reason", finish_reason(finish)}}});
  }
  r["usage"] = usage_json(usage);
  r["system_fingerprint"] = kFingerprint;
  return r;
}

ApiError request_error(const engine::RequestError& e, const ParsedRequest& r) {
  using Problem = engine::RequestError::Problem;
  const std::string prompt_param = r.endpoint == Endpoint::kChat ? "messages" : "prompt";
  switch (e.problem()) {
    case Problem::kEmptyPrompt:
      return ApiError(400, "the prompt is empty", prompt_param);
    case Problem::kPromptTooLong:
      return ApiError(400,
                      "the prompt is " + std::to_string(e.n_prompt()) +
                          " tokens but the context holds " + std::to_string(e.n_ctx()) +
                          " (--ctx-size); shorten the conversation",
                      prompt_param, "context_length_exceeded");
    case Problem::kNoRoomForTokens:
      return ApiError(400,
                      "the context holds " + std::to_string(e.n_ctx()) + " tokens but " +
                          std::to_string(e.n_prompt()) + " are in the prompt and " +
                          std::to_string(r.max_tokens.value_or(0)) +
                          " were requested for the completion; lower max_tokens",
                      "max_tokens", "context_length_exceeded");
    default:
      return ApiError(400, e.what());
  }
}

int error_status(const engine::Update& u) {
  return u.error_kind == engine::ErrorKind::kUnavailable ? 503 : 500;
}

}  // namespace slm::server
