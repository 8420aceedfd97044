// LoRA adapters in `slm serve`, in-process over HTTP: requests on four
// adapters and the base decoded in the same batched steps give exactly the
// tokens each gives alone; /v1/models lists the adapters; run-time loading
// stays inside --lora-dir (canonical paths: no "..", no symlink out), names
// are checked, removed adapters answer 404; /metrics counts requests and
// tokens per adapter. The hot-reload memory test has its own process
// (test_http_lora_reload.cpp).
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "server/lora_server_fixture.h"
#include "server/request.h"
#include "server/server.h"

namespace slm::server {
namespace {

using Json = nlohmann::json;
using test_lora::HttpLora;

TEST_F(HttpLora, MixedBatchEqualsEachAlone) {
  httplib::Client& c = start(8);
  const std::vector<std::string> models = {"", "a1", "a2", "a3", "a4", "a1", "tiny", "a3"};
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back({1, 450 + 7 * i, 4996, 17354 + i, 1701});

  std::vector<std::string> alone(8), mixed(8);
  for (int i = 0; i < 8; ++i) {
    auto r = complete(c, models[i], prompts[i], 16);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const Json j = Json::parse(r->body);
    EXPECT_EQ(j["model"], models[i].empty() ? "tiny" : models[i]);
    alone[i] = j["choices"][0]["text"];
  }
  // The adapters change the output (same prompt, different model).
  std::set<std::string> distinct;
  for (const char* m : {"tiny", "a1", "a2", "a3", "a4"}) {
    auto r = complete(c, m, prompts[0], 16);
    ASSERT_TRUE(r && r->status == 200);
    distinct.insert(Json::parse(r->body)["choices"][0]["text"].get<std::string>());
  }
  EXPECT_EQ(distinct.size(), 5u);

  // All eight at once, released together: one batch mixing five weight sets.
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      httplib::Client own("127.0.0.1", port_);
      ++ready;
      while (ready.load() < 8) std::this_thread::yield();
      auto r = complete(own, models[i], prompts[i], 16);
      if (r && r->status == 200) mixed[i] = Json::parse(r->body)["choices"][0]["text"];
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(mixed[i], alone[i]) << "request " << i << " on '" << models[i] << "'";

  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("slm_adapter_requests_total{adapter=\"a1\"} 5"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("slm_adapter_generated_tokens_total{adapter=\"a1\"} 80"),
            std::string::npos);
  EXPECT_NE(metrics->body.find("slm_adapter_requests_total{adapter=\"\"} 5"), std::string::npos);
}

TEST_F(HttpLora, ModelsAndSelection) {
  httplib::Client& c = start(2);
  auto r = c.Get("/v1/models");
  ASSERT_TRUE(r);
  const Json list = Json::parse(r->body);
  ASSERT_EQ(list["data"].size(), 5u);
  EXPECT_EQ(list["data"][0]["id"], "tiny");
  EXPECT_FALSE(list["data"][0].contains("parent"));
  EXPECT_EQ(list["data"][1]["id"], "a1");
  EXPECT_EQ(list["data"][1]["parent"], "tiny");
  EXPECT_EQ(list["data"][1]["object"], "model");
  r = c.Get("/v1/models/a2");
  ASSERT_TRUE(r);
  EXPECT_EQ(Json::parse(r->body)["parent"], "tiny");
  EXPECT_EQ(c.Get("/v1/models/base-alias")->status, 200);
  EXPECT_EQ(c.Get("/v1/models/nope")->status, 404);

  auto base = complete(c, "tiny", {1, 450, 4996}, 6);
  auto alias = complete(c, "base-alias", {1, 450, 4996}, 6);
  ASSERT_TRUE(base && alias);
  EXPECT_EQ(Json::parse(base->body)["choices"][0]["text"],
            Json::parse(alias->body)["choices"][0]["text"]);
  auto unknown = complete(c, "a9", {1, 450}, 4);
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(Json::parse(unknown->body)["error"]["code"], "model_not_found");
}

TEST_F(HttpLora, RuntimeLoadingRules) {
  httplib::Client& c = start(2, "k-123");
  auto post = [&](const Json& body) {
    return c.Post("/v1/adapters", body.dump(), "application/json");
  };
  auto code = [](const httplib::Result& r) {
    return Json::parse(r->body)["error"]["code"].get<std::string>();
  };

  auto r = post({{"name", "hot"}, {"path", (allowed() / "a1.gguf").string()}, {"scale", 0.5}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(Json::parse(r->body)["parent"], "tiny");
  EXPECT_EQ(complete(c, "hot", {1, 450}, 4)->status, 200);
  // Relative to --lora-dir; taken names; replace.
  EXPECT_EQ(post({{"name", "rel"}, {"path", "a2.gguf"}})->status, 201);
  r = post({{"name", "hot"}, {"path", "a2.gguf"}});
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(post({{"name", "hot"}, {"path", "a2.gguf"}, {"replace", true}})->status, 201);
  EXPECT_EQ(post({{"name", "tiny"}, {"path", "a2.gguf"}})->status, 409);
  EXPECT_EQ(post({{"name", "base-alias"}, {"path", "a2.gguf"}})->status, 409);
  // Paths outside --lora-dir, however spelled.
  for (const std::string& p :
       std::vector<std::string>{(root() / "outside" / "evil.gguf").string(),
                                (allowed() / ".." / "outside" / "evil.gguf").string(),
                                std::string("../outside/evil.gguf"), std::string("link.gguf"),
                                std::string("/etc/passwd")}) {
    r = post({{"name", "x"}, {"path", p}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403) << p << ": " << r->body;
    EXPECT_EQ(code(r), "path_not_allowed") << p;
  }
  r = post({{"name", "x"}, {"path", "missing.gguf"}});
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(code(r), "file_not_found");
  // Names.
  for (const std::string& n :
       std::vector<std::string>{"", "-x", "a b", "a/b", std::string(65, 'a'), "x\"y"}) {
    r = post({{"name", n}, {"path", "a1.gguf"}});
    EXPECT_EQ(r->status, 400) << n;
  }
  EXPECT_EQ(post({{"path", "a1.gguf"}})->status, 400);
  EXPECT_EQ(post({{"name", "y"}, {"path", "a1.gguf"}, {"scale", "big"}})->status, 400);
  EXPECT_EQ(c.Post("/v1/adapters", "not json", "application/json")->status, 400);
  // A file that is not an adapter for this model.
  {
    std::ofstream(allowed() / "junk.gguf") << "GGUF but not really";
    r = post({{"name", "junk"}, {"path", "junk.gguf"}});
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(code(r), "invalid_adapter");
  }
  // Delete.
  EXPECT_EQ(c.Delete("/v1/adapters/hot")->status, 200);
  EXPECT_EQ(c.Delete("/v1/adapters/hot")->status, 404);
  EXPECT_EQ(complete(c, "hot", {1, 450}, 4)->status, 404);
  // The key guards loading and removing.
  httplib::Client anon("127.0.0.1", port_);
  EXPECT_EQ(
      anon.Post("/v1/adapters", R"({"name":"z","path":"a1.gguf"})", "application/json")->status,
      401);
  EXPECT_EQ(anon.Delete("/v1/adapters/rel")->status, 401);
  EXPECT_EQ(c.Delete("/v1/adapters/rel")->status, 200);
}

TEST(AdapterRegistry, RuntimeLoadingNeedsLoraDir) {
  AdapterRegistry reg;
  try {
    reg.resolve_runtime_path("/tmp/x.gguf");
    ADD_FAILURE();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 403);
    EXPECT_NE(std::string(e.what()).find("--lora-dir"), std::string::npos);
  }
  EXPECT_THROW(parse_adapter_spec("noequals.gguf"), Error);
  EXPECT_THROW(parse_adapter_spec("bad name=x.gguf"), Error);
  const AdapterSpec s = parse_adapter_spec("fr=dir/fr.gguf:0.5");
  EXPECT_EQ(s.name, "fr");
  EXPECT_EQ(s.file.path, "dir/fr.gguf");
  EXPECT_FLOAT_EQ(s.file.scale, 0.5f);
}

}  // namespace
}  // namespace slm::server
