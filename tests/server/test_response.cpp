// Response bodies and server-sent events in OpenAI's exact shapes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/response.h"

namespace slm::server {
namespace {

using Json = nlohmann::json;

// Splits an SSE text into the JSON payloads of its events; checks framing.
std::vector<std::string> events(const std::string& sse) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < sse.size()) {
    const size_t end = sse.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated event";
    if (end == std::string::npos) break;
    const std::string ev = sse.substr(pos, end - pos);
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    EXPECT_EQ(ev.find('\n'), std::string::npos) << "one line per event";
    out.push_back(ev.substr(6));
    pos = end + 2;
  }
  return out;
}

std::string piece(int32_t id) {
  if (id == 99) return "\xE2\x82";
  std::string s = "t";
  s += std::to_string(id);
  return s;
}

TEST(Sse, EventFraming) {
  EXPECT_EQ(sse_event("{}"), "data: {}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
}

TEST(Sse, ChatStreamShape) {
  ResponseWriter w(Endpoint::kChat, "m", /*include_usage=*/true, piece, 1700000000);
  std::string sse = w.stream_start();
  sse += w.stream_delta("Hel", {});
  sse += w.stream_delta("", {});  // nothing to say: no event
  sse += w.stream_delta("lo \xC3\xA9", {});
  sse += w.stream_finish(engine::FinishReason::kLength);
  sse += w.stream_usage(Usage{12, 4, 2});
  sse += sse_done();
  const std::vector<std::string> ev = events(sse);
  ASSERT_EQ(ev.size(), 6u);
  EXPECT_EQ(ev.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    const Json c = Json::parse(ev[i]);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    EXPECT_EQ(c["id"], w.id());
    EXPECT_EQ(c["model"], "m");
    EXPECT_EQ(c["created"], 1700000000);
    ASSERT_TRUE(c.contains("usage"));
    if (i == 0) {
      EXPECT_EQ(c["choices"][0]["delta"]["role"], "assistant");
      EXPECT_TRUE(c["choices"][0]["finish_reason"].is_null());
      EXPECT_TRUE(c["usage"].is_null());
    } else if (i < 3) {
      text += c["choices"][0]["delta"]["content"].get<std::string>();
      EXPECT_FALSE(c["choices"][0]["delta"].contains("role"));
    } else if (i == 3) {
      EXPECT_EQ(c["choices"][0]["finish_reason"], "length");
      EXPECT_TRUE(c["choices"][0]["delta"].empty());
    } else {
      EXPECT_TRUE(c["choices"].empty());
      EXPECT_EQ(c["usage"]["prompt_tokens"], 12);
      EXPECT_EQ(c["usage"]["completion_tokens"], 2);
      EXPECT_EQ(c["usage"]["total_tokens"], 14);
      EXPECT_EQ(c["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    }
  }
  EXPECT_EQ(text, "Hello \xC3\xA9");
  EXPECT_EQ(w.id().rfind("chatcmpl-", 0), 0u);
}

TEST(Sse, NoUsageFieldWithoutIncludeUsage) {
  ResponseWriter w(Endpoint::kChat, "m", false, piece);
  const Json c = Json::parse(events(w.stream_delta("x", {}))[0]);
  EXPECT_FALSE(c.contains("usage"));
}

TEST(Sse, CompletionStreamShape) {
  ResponseWriter w(Endpoint::kCompletion, "m", false, piece);
  EXPECT_EQ(w.stream_start(), "");
  const Json d = Json::parse(events(w.stream_delta("abc", {}))[0]);
  EXPECT_EQ(d["object"], "text_completion");
  EXPECT_EQ(d["choices"][0]["text"], "abc");
  const Json f = Json::parse(events(w.stream_finish(engine::FinishReason::kStop))[0]);
  EXPECT_EQ(f["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(f["choices"][0]["text"], "");
  EXPECT_EQ(w.id().rfind("cmpl-", 0), 0u);
}

TEST(Response, ChatCompletionWithLogprobs) {
  ResponseWriter w(Endpoint::kChat, "m", false, piece);
  std::vector<engine::TokenLogprob> lp(2);
  lp[0] = {5, -0.5f, {{5, -0.5f}, {6, -1.5f}}};
  lp[1] = {99, -0.25f, {}};  // a piece that is half a character
  const auto r = w.complete("hi", engine::FinishReason::kStop, Usage{3, 0, 2}, lp, true);
  const Json j = Json::parse(dump_json(r));
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  const Json& c = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0]["token"], "t5");
  EXPECT_FLOAT_EQ(c[0]["logprob"].get<float>(), -0.5f);
  EXPECT_EQ(c[0]["bytes"], (Json{116, 53}));
  EXPECT_EQ(c[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(c[0]["top_logprobs"][1]["token"], "t6");
  // Broken UTF-8 is replaced in "token"; "bytes" keeps the exact bytes.
  EXPECT_EQ(c[1]["token"], "\xEF\xBF\xBD");
  EXPECT_EQ(c[1]["bytes"], (Json{0xE2, 0x82}));
  EXPECT_EQ(j["usage"]["total_tokens"], 5);
}

TEST(Response, CompletionLogprobs) {
  ResponseWriter w(Endpoint::kCompletion, "m", false, piece);
  std::vector<engine::TokenLogprob> lp = {{1, -1.0f, {{1, -1.0f}}}, {22, -2.0f, {{22, -2.0f}}}};
  const Json j =
      Json::parse(dump_json(w.complete("t1t22", engine::FinishReason::kLength, Usage{1, 0, 2}, lp, true)));
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "t1t22");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  const Json& l = j["choices"][0]["logprobs"];
  EXPECT_EQ(l["tokens"], (Json{"t1", "t22"}));
  EXPECT_EQ(l["text_offset"], (Json{0, 2}));
  EXPECT_FLOAT_EQ(l["top_logprobs"][1]["t22"].get<float>(), -2.0f);
  const Json none = Json::parse(dump_json(w.complete("x", engine::FinishReason::kStop, Usage{}, {}, false)));
  EXPECT_TRUE(none["choices"][0]["logprobs"].is_null());
}

TEST(Response, IdsAreDistinct) {
  EXPECT_NE(make_request_id("x-"), make_request_id("x-"));
  EXPECT_EQ(make_request_id("x-").size(), 26u);
}

}  // namespace
}  // namespace slm::server
