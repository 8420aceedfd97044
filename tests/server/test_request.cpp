// Request parsing and validation: every field's type and range, OpenAI's
// error shape with the field named, invalid UTF-8 located by JSON path.
#include <gtest/gtest.h>

#include <string>

#include "server/request.h"

namespace slm::server {
namespace {

RequestLimits limits() {
  RequestLimits l;
  l.n_vocab = 512;
  l.max_tokens_cap = 1000;
  return l;
}

ParsedRequest chat(const std::string& body) {
  return parse_request(Endpoint::kChat, body, limits());
}
ParsedRequest completion(const std::string& body) {
  return parse_request(Endpoint::kCompletion, body, limits());
}

// The ApiError a body raises (status 0 when it parses).
ApiError error_of(Endpoint e, const std::string& body) {
  try {
    parse_request(e, body, limits());
  } catch (const ApiError& err) {
    return err;
  }
  return ApiError(0, "parsed");
}

void expect_bad(const std::string& body, const std::string& param, Endpoint e = Endpoint::kChat) {
  const ApiError err = error_of(e, body);
  EXPECT_EQ(err.status(), 400) << body;
  EXPECT_EQ(err.param(), param) << body << " -> " << err.what();
  EXPECT_EQ(err.type(), "invalid_request_error");
}

const std::string kMsgs = R"("messages":[{"role":"user","content":"hi"}])";

TEST(Request, ChatDefaultsFollowOpenAI) {
  const ParsedRequest r = chat("{" + kMsgs + R"(,"model":"m"})");
  EXPECT_EQ(r.model, "m");
  EXPECT_FALSE(r.stream);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 1.0f);
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.0f);
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_FALSE(r.seed_given);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0]["content"], "hi");
}

TEST(Request, ChatFieldsAreRead) {
  const ParsedRequest r =
      chat("{" + kMsgs +
           R"(,"stream":true,"stream_options":{"include_usage":true},"temperature":0,
      "top_p":0.5,"max_tokens":7,"max_completion_tokens":9,"seed":-3,"stop":["a","","b"],
      "presence_penalty":1.5,"frequency_penalty":-2,"logit_bias":{"42":-100,"7":2.5},
      "logprobs":true,"top_logprobs":3,"user":"u1","n":1,
      "response_format":{"type":"text"},"ignore_eos":true})");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(*r.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_TRUE(r.seed_given);
  EXPECT_EQ(r.sampling.seed, static_cast<uint64_t>(int64_t{-3}));
  EXPECT_EQ(r.stops, (std::vector<std::string>{"a", "b"}));
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 1.5f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -2.0f);
  EXPECT_FLOAT_EQ(r.sampling.logit_bias.at(42), -100.0f);
  EXPECT_FLOAT_EQ(r.sampling.logit_bias.at(7), 2.5f);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 3);
  EXPECT_EQ(r.user, "u1");
  EXPECT_TRUE(r.ignore_eos);
}

TEST(Request, UnknownFieldsAndNullsAreIgnored) {
  const ParsedRequest r =
      chat("{" + kMsgs + R"(,"frobnicate":{"x":[1,2]},"temperature":null,"stop":null})");
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_TRUE(r.stops.empty());
}

TEST(Request, MessagesAreNormalised) {
  const ParsedRequest r = chat(R"({"messages":[
      {"role":"developer","content":"be brief"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"name":"n"},
      {"role":"assistant","content":null,"tool_calls":[{"type":"function","id":"c1",
        "function":{"name":"f","arguments":"{}"}}]},
      {"role":"tool","content":"42","tool_call_id":"c1"}],
      "tools":[{"type":"function","function":{"name":"f","parameters":{}}}]})");
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0]["role"], "system");
  EXPECT_EQ(r.messages[1]["content"], "a\nb");
  EXPECT_EQ(r.messages[1]["name"], "n");
  EXPECT_TRUE(r.messages[2]["content"].is_null());
  EXPECT_EQ(r.messages[2]["tool_calls"][0]["function"]["name"], "f");
  EXPECT_EQ(r.messages[3]["tool_call_id"], "c1");
  ASSERT_TRUE(r.tools.is_array());
  EXPECT_EQ(r.tools.size(), 1u);
}

TEST(Request, BadMessagesNameTheField) {
  expect_bad(R"({"messages":[]})", "messages");
  expect_bad(R"({})", "messages");
  expect_bad(R"({"messages":"hi"})", "messages");
  expect_bad(R"({"messages":[42]})", "messages[0]");
  expect_bad(R"({"messages":[{"content":"x"}]})", "messages[0].role");
  expect_bad(R"({"messages":[{"role":"wizard","content":"x"}]})", "messages[0].role");
  expect_bad(R"({"messages":[{"role":"user"}]})", "messages[0].content");
  expect_bad(R"({"messages":[{"role":"user","content":5}]})", "messages[0].content");
  expect_bad(
      R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]})",
      "messages[0].content[0].type");
  expect_bad(R"({"messages":[{"role":"user","content":"x","tool_calls":[]}]})",
             "messages[0].tool_calls");
  expect_bad(R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]})",
             "tools[0].function");
}

TEST(Request, WrongTypesAndRanges) {
  expect_bad("{" + kMsgs + R"(,"temperature":"hot"})", "temperature");
  expect_bad("{" + kMsgs + R"(,"temperature":2.5})", "temperature");
  expect_bad("{" + kMsgs + R"(,"temperature":-0.1})", "temperature");
  expect_bad("{" + kMsgs + R"(,"top_p":1.01})", "top_p");
  expect_bad("{" + kMsgs + R"(,"max_tokens":-1})", "max_tokens");
  expect_bad("{" + kMsgs + R"(,"max_tokens":0})", "max_tokens");
  expect_bad("{" + kMsgs + R"(,"max_tokens":1001})", "max_tokens");  // over the cap
  expect_bad("{" + kMsgs + R"(,"max_tokens":1e30})", "max_tokens");
  expect_bad("{" + kMsgs + R"(,"max_tokens":99999999999999999999})", "max_tokens");
  expect_bad("{" + kMsgs + R"(,"max_tokens":18446744073709551615})", "max_tokens");
  expect_bad("{" + kMsgs + R"(,"max_tokens":2.5})", "max_tokens");
  expect_bad("{" + kMsgs + R"(,"max_completion_tokens":"5"})", "max_completion_tokens");
  expect_bad("{" + kMsgs + R"(,"n":2})", "n");
  expect_bad("{" + kMsgs + R"(,"n":-9223372036854775808})", "n");
  expect_bad("{" + kMsgs + R"(,"stream":"yes"})", "stream");
  expect_bad("{" + kMsgs + R"(,"seed":1.5})", "seed");
  expect_bad("{" + kMsgs + R"(,"presence_penalty":3})", "presence_penalty");
  expect_bad("{" + kMsgs + R"(,"frequency_penalty":-2.01})", "frequency_penalty");
  expect_bad("{" + kMsgs + R"(,"stop":5})", "stop");
  expect_bad("{" + kMsgs + R"(,"stop":["a",7]})", "stop[1]");
  expect_bad(
      "{" + kMsgs +
          R"(,"stop":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16",)"
          R"("17"]})",
      "stop");
  expect_bad("{" + kMsgs + R"(,"stop":")" + std::string(2000, 'x') + R"("})", "stop");
  expect_bad("{" + kMsgs + R"(,"logit_bias":[1]})", "logit_bias");
  expect_bad("{" + kMsgs + R"(,"logit_bias":{"512":1}})", "logit_bias.512");
  expect_bad("{" + kMsgs + R"(,"logit_bias":{"-1":1}})", "logit_bias.-1");
  expect_bad("{" + kMsgs + R"(,"logit_bias":{"abc":1}})", "logit_bias.abc");
  expect_bad("{" + kMsgs + R"(,"logit_bias":{"99999999999999999999":1}})",
             "logit_bias.99999999999999999999");
  expect_bad("{" + kMsgs + R"(,"logit_bias":{"5":101}})", "logit_bias.5");
  expect_bad("{" + kMsgs + R"(,"logit_bias":{"5":"x"}})", "logit_bias.5");
  expect_bad("{" + kMsgs + R"(,"logprobs":1})", "logprobs");
  expect_bad("{" + kMsgs + R"(,"top_logprobs":2})", "top_logprobs");  // needs logprobs
  expect_bad("{" + kMsgs + R"(,"logprobs":true,"top_logprobs":21})", "top_logprobs");
  expect_bad("{" + kMsgs + R"(,"stream_options":{"include_usage":true}})", "stream_options");
  expect_bad("{" + kMsgs + R"(,"stream":true,"stream_options":{"include_usage":1}})",
             "stream_options.include_usage");
  expect_bad("{" + kMsgs + R"(,"user":5})", "user");
  expect_bad("{" + kMsgs + R"(,"ignore_eos":"no"})", "ignore_eos");
  expect_bad("{" + kMsgs + R"(,"model":["m"]})", "model");
}

TEST(Request, ResponseFormatsAndGrammar) {
  using Format = ParsedRequest::Format;
  const RequestLimits lim{.n_vocab = 1000};
  auto parse = [&](const std::string& extra) {
    return parse_request(Endpoint::kChat, "{" + kMsgs + "," + extra + "}", lim);
  };
  EXPECT_EQ(parse(R"("response_format":{"type":"text"})").format, Format::kText);
  EXPECT_EQ(parse(R"("response_format":{"type":"json_object"})").format, Format::kJsonObject);
  const ParsedRequest s = parse(
      R"("response_format":{"type":"json_schema","json_schema":{"name":"p","strict":true,"schema":{"type":"object"}}})");
  EXPECT_EQ(s.format, Format::kJsonSchema);
  EXPECT_TRUE(s.format_strict);
  EXPECT_EQ(s.format_source, R"({"type":"object"})");
  const ParsedRequest g = parse(R"("grammar":"root ::= \"a\"")");
  EXPECT_EQ(g.format, Format::kGrammar);
  EXPECT_EQ(g.format_source, "root ::= \"a\"");

  const ApiError e = error_of(Endpoint::kChat, "{" + kMsgs + R"(,"response_format":{"type":"xml"}})");
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.param(), "response_format.type");
  EXPECT_NE(std::string(e.what()).find("not supported"), std::string::npos);
  expect_bad("{" + kMsgs + R"(,"response_format":"json"})", "response_format");
  expect_bad("{" + kMsgs + R"(,"response_format":{}})", "response_format.type");
  expect_bad("{" + kMsgs + R"(,"response_format":{"type":"json_schema"}})", "response_format.json_schema");
  expect_bad("{" + kMsgs + R"(,"response_format":{"type":"json_schema","json_schema":{"schema":{}}}})",
             "response_format.json_schema.name");
  expect_bad("{" + kMsgs + R"(,"response_format":{"type":"json_schema","json_schema":{"name":"a b"}}})",
             "response_format.json_schema.name");
  expect_bad("{" + kMsgs + R"(,"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":3}}})",
             "response_format.json_schema.schema");
  expect_bad("{" + kMsgs + R"(,"grammar":5})", "grammar");
  expect_bad("{" + kMsgs + R"(,"grammar":"root ::= \"a\"","response_format":{"type":"json_object"}})", "grammar");
}

TEST(Request, ToolsAndToolChoice) {
  using TC = ParsedRequest::ToolChoice;
  const RequestLimits lim{.n_vocab = 1000};
  const std::string tools =
      R"("tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}])";
  auto parse = [&](const std::string& extra) {
    return parse_request(Endpoint::kChat, "{" + kMsgs + "," + extra + "}", lim);
  };
  EXPECT_EQ(parse(tools).tool_choice, TC::kAuto);
  EXPECT_TRUE(parse(tools).parallel_tool_calls);
  EXPECT_EQ(parse(R"("user":"x")").tool_choice, TC::kNone);
  EXPECT_EQ(parse(tools + R"(,"tool_choice":"required","parallel_tool_calls":false)").tool_choice, TC::kRequired);
  EXPECT_FALSE(parse(tools + R"(,"tool_choice":"required","parallel_tool_calls":false)").parallel_tool_calls);
  EXPECT_EQ(parse(tools + R"(,"tool_choice":"none")").tool_choice, TC::kNone);
  const ParsedRequest named =
      parse(tools + R"(,"tool_choice":{"type":"function","function":{"name":"get_weather"}})");
  EXPECT_EQ(named.tool_choice, TC::kNamed);
  EXPECT_EQ(named.tool_choice_name, "get_weather");
  expect_bad("{" + kMsgs + "," + tools + R"(,"tool_choice":"sometimes"})", "tool_choice");
  expect_bad("{" + kMsgs + "," + tools + R"(,"tool_choice":{"type":"function","function":{"name":"nope"}}})",
             "tool_choice.function.name");
  expect_bad("{" + kMsgs + R"(,"tool_choice":"required"})", "tool_choice");
  expect_bad("{" + kMsgs + "," + tools + R"(,"tool_choice":"required","response_format":{"type":"json_object"}})",
             "tool_choice");
  expect_bad("{" + kMsgs + R"(,"tools":[{"type":"function","function":{"name":"a b"}}]})", "tools[0].function.name");
  expect_bad("{" + kMsgs + R"(,"tools":[{"type":"function","function":{"name":"f","parameters":[]}}]})",
             "tools[0].function.parameters");
  expect_bad("{" + kMsgs + R"(,"tools":[{"type":"retrieval","function":{"name":"f"}}]})", "tools[0].type");
  expect_bad("{" + kMsgs + "," + tools + R"(,"parallel_tool_calls":"yes"})", "parallel_tool_calls");
}

TEST(Request, MalformedBodies) {
  expect_bad("", "");
  expect_bad("{", "");
  expect_bad("[1,2]", "");
  expect_bad("null", "");
  expect_bad(R"({"messages":[{"role":"user","content":"hi"}],})", "");
  const ApiError e = error_of(Endpoint::kChat, "{\"messages\": tru}");
  EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos);
  // A NUL ends nlohmann's input; what follows it must not be ignored.
  const std::string nul_tail = std::string("{" + kMsgs + "}") + '\0' + "\xFF junk";
  expect_bad(nul_tail, "");
  expect_bad(std::string("{" + kMsgs + "}") + '\0', "");
  // A number beyond double's range is an error answer, not an escaped exception.
  const ApiError big = error_of(Endpoint::kChat, "{" + kMsgs + R"(,"temperature":1E95184})");
  EXPECT_EQ(big.status(), 400);
  EXPECT_NE(std::string(big.what()).find("number overflow"), std::string::npos);
  // Deep nesting is refused before the parser sees it.
  expect_bad(std::string(100000, '[') + std::string(100000, ']'), "");
}

TEST(Request, InvalidUtf8NamesTheField) {
  expect_bad(
      "{\"messages\":[{\"role\":\"user\",\"content\":\"ok\"},{\"role\":\"user\",\"content\":\"bad "
      "\xC3\x28\"}]}",
      "messages[1].content");
  expect_bad("{" + kMsgs + ",\"stop\":[\"fine\",\"\xED\xA0\x80\"]}", "stop[1]");
  expect_bad("{\"prompt\":\"\xFF\"}", "prompt", Endpoint::kCompletion);
  // Escaped lone surrogates are invalid too.
  const ApiError e =
      error_of(Endpoint::kChat, R"({"messages":[{"role":"user","content":"\ud800"}]})");
  EXPECT_EQ(e.status(), 400);
}

TEST(Request, Completions) {
  ParsedRequest r = completion(R"({"prompt":"Once upon","max_tokens":5,"logprobs":2})");
  EXPECT_EQ(r.prompt, "Once upon");
  EXPECT_FALSE(r.prompt_is_tokens);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 2);
  r = completion(R"({"prompt":["one"]})");
  EXPECT_EQ(r.prompt, "one");
  r = completion(R"({"prompt":[1,2,3]})");
  EXPECT_TRUE(r.prompt_is_tokens);
  EXPECT_EQ(r.prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  r = completion(R"({"prompt":[[4,5]]})");
  EXPECT_EQ(r.prompt_tokens, (std::vector<int32_t>{4, 5}));
  r = completion(R"({"prompt":"","echo":false,"suffix":null,"best_of":1})");
  EXPECT_EQ(r.prompt, "");

  expect_bad(R"({})", "prompt", Endpoint::kCompletion);
  expect_bad(R"({"prompt":5})", "prompt", Endpoint::kCompletion);
  expect_bad(R"({"prompt":[]})", "prompt", Endpoint::kCompletion);
  expect_bad(R"({"prompt":["a","b"]})", "prompt", Endpoint::kCompletion);
  expect_bad(R"({"prompt":[1,512]})", "prompt[1]", Endpoint::kCompletion);
  expect_bad(R"({"prompt":[1,-1]})", "prompt[1]", Endpoint::kCompletion);
  expect_bad(R"({"prompt":[1,"x"]})", "prompt[1]", Endpoint::kCompletion);
  expect_bad(R"({"prompt":[[1],[2]]})", "prompt", Endpoint::kCompletion);
  expect_bad(R"({"prompt":"a","echo":true})", "echo", Endpoint::kCompletion);
  expect_bad(R"({"prompt":"a","suffix":"z"})", "suffix", Endpoint::kCompletion);
  expect_bad(R"({"prompt":"a","best_of":2})", "best_of", Endpoint::kCompletion);
  expect_bad(R"({"prompt":"a","logprobs":6})", "logprobs", Endpoint::kCompletion);
}

// slm serve -n / --temp / --system: what a request leaves out comes from the
// server; what it gives wins.
TEST(Request, ServerDefaultsFillWhatTheRequestLeavesOut) {
  RequestDefaults d;
  d.max_tokens = 64;
  d.temperature = 0.25f;
  d.system = "Be brief.";
  const std::string user = R"("messages":[{"role":"user","content":"hi"}])";
  ParsedRequest r = parse_request(Endpoint::kChat, "{" + user + "}", limits(), d);
  ASSERT_TRUE(r.max_tokens);
  EXPECT_EQ(*r.max_tokens, 64);
  EXPECT_TRUE(r.max_tokens_defaulted);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.25f);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0]["role"], "system");
  EXPECT_EQ(r.messages[0]["content"], "Be brief.");
  EXPECT_EQ(r.messages[1]["content"], "hi");

  r = parse_request(Endpoint::kChat, "{" + user + R"(,"max_tokens":5,"temperature":0})", limits(),
                    d);
  EXPECT_EQ(*r.max_tokens, 5);
  EXPECT_FALSE(r.max_tokens_defaulted);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.0f);
  r = parse_request(Endpoint::kChat, "{" + user + R"(,"max_completion_tokens":7})", limits(), d);
  EXPECT_EQ(*r.max_tokens, 7);
  EXPECT_FALSE(r.max_tokens_defaulted);

  // A system (or developer) message of its own anywhere: nothing is added.
  for (const char* role : {"system", "developer"}) {
    r = parse_request(Endpoint::kChat,
                      std::string(R"({"messages":[{"role":"user","content":"hi"},{"role":")") +
                          role + R"(","content":"mine"}]})",
                      limits(), d);
    ASSERT_EQ(r.messages.size(), 2u) << role;
    EXPECT_EQ(r.messages[0]["role"], "user");
    EXPECT_EQ(r.messages[1]["content"], "mine");
  }
  // Completions take the numbers; there is no chat to put a system message in.
  r = parse_request(Endpoint::kCompletion, R"({"prompt":"x"})", limits(), d);
  EXPECT_EQ(*r.max_tokens, 64);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.25f);
  EXPECT_EQ(r.prompt, "x");

  // A default above the cap is lowered to it; without defaults, OpenAI's.
  d.max_tokens = 5000;
  r = parse_request(Endpoint::kCompletion, R"({"prompt":"x"})", limits(), d);
  EXPECT_EQ(*r.max_tokens, 1000);
  r = completion(R"({"prompt":"x"})");
  EXPECT_FALSE(r.max_tokens);
  EXPECT_FALSE(r.max_tokens_defaulted);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_EQ(chat("{" + user + "}").messages.size(), 1u);
}

TEST(Request, ErrorJsonHasOpenAIShape) {
  const nlohmann::json j = error_json(ApiError(400, "bad thing", "temperature"));
  EXPECT_EQ(j["error"]["message"], "bad thing");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "temperature");
  EXPECT_TRUE(j["error"]["code"].is_null());
  const nlohmann::json k = error_json(ApiError(401, "no", {}, "invalid_api_key"));
  EXPECT_TRUE(k["error"]["param"].is_null());
  EXPECT_EQ(k["error"]["code"], "invalid_api_key");
}

TEST(JsonText, PathAtOffset) {
  const std::string t =
      R"({"a":1,"messages":[{"role":"user","content":"xyz"},{"content":"q"}],"s":["p","r"]})";
  EXPECT_EQ(json_path_at(t, t.find("xyz")), "messages[0].content");
  EXPECT_EQ(json_path_at(t, t.find("\"q\"") + 1), "messages[1].content");
  EXPECT_EQ(json_path_at(t, t.find("\"r\"") + 1), "s[1]");
  EXPECT_EQ(json_path_at(t, 0), "");
  EXPECT_EQ(json_path_at(R"({"k\"ey":"v)", 10), "k\\\"ey");
}

TEST(JsonText, Depth) {
  EXPECT_EQ(json_depth("{}"), 1);
  EXPECT_EQ(json_depth(R"({"a":[{"b":[]}]})"), 4);
  EXPECT_EQ(json_depth(R"({"a":"[[[[[["})"), 1);  // brackets in strings do not count
  EXPECT_EQ(json_depth(R"({"a":"\"[[["})"), 1);
}

}  // namespace
}  // namespace slm::server
