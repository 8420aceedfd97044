// make_chat_context: the variables a chat template sees, and the checks on
// the conversation's shape.
#include <gtest/gtest.h>

#include "chat/template.h"

namespace {

using Json = nlohmann::ordered_json;

TEST(ChatContext, PassesTheConversationThrough) {
  slm::chat::ChatInput in;
  in.messages = Json::parse(R"([{"role": "user", "content": "hi"},
      {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "id": "c1",
        "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "ok"}])");
  in.add_generation_prompt = true;
  in.bos_token = "<s>";
  in.eos_token = "</s>";
  in.extra = {{"enable_thinking", false}};
  const Json ctx = slm::chat::make_chat_context(in);
  EXPECT_EQ(ctx["messages"], in.messages);
  EXPECT_FALSE(ctx.contains("tools"));  // templates test `tools is defined`
  EXPECT_EQ(ctx["add_generation_prompt"], true);
  EXPECT_EQ(ctx["bos_token"], "<s>");
  EXPECT_EQ(ctx["eos_token"], "</s>");
  EXPECT_EQ(ctx["enable_thinking"], false);
  EXPECT_EQ(slm::chat::render("{{ messages[1].tool_calls[0].function.name }}{{ tools is defined }}", ctx), "fFalse");

  in.tools = Json::parse(R"([{"type": "function", "function": {"name": "f", "parameters": {}}}])");
  EXPECT_EQ(slm::chat::make_chat_context(in)["tools"], in.tools);
}

TEST(ChatContext, RejectsMalformedConversations) {
  const auto bad = [](const char* messages) {
    slm::chat::ChatInput in;
    in.messages = Json::parse(messages);
    EXPECT_THROW(slm::chat::make_chat_context(in), slm::Error) << messages;
  };
  bad(R"({"role": "user"})");
  bad(R"([1])");
  bad(R"([{"content": "no role"}])");
  bad(R"([{"role": "user", "content": 5}])");
  bad(R"([{"role": "assistant", "tool_calls": {}}])");
  bad(R"([{"role": "assistant", "tool_calls": [{"type": "function"}]}])");
  bad(R"([{"role": "assistant", "tool_calls": [{"function": {"name": 1}}]}])");

  slm::chat::ChatInput in;
  in.tools = Json::object();
  EXPECT_THROW(slm::chat::make_chat_context(in), slm::Error);
  in.tools = nullptr;
  in.extra = {{"messages", Json::array()}};
  EXPECT_THROW(slm::chat::make_chat_context(in), slm::Error);
}

}  // namespace
