// The HTTP layer in-process: a busy port refused, /health while loading and
// once ready, the API's 503 before the model is there, and a request served
// end to end.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "common/fixtures.h"
#include "server/server.h"

namespace slm::server {
namespace {

using Json = nlohmann::json;

// A second server on a busy port must refuse to start: with SO_REUSEPORT
// (httplib's default, which slm used to keep) both would listen and the
// kernel would split the requests between them.
TEST(Http, BusyPortIsRefused) {
  httplib::Server other;  // httplib's defaults, SO_REUSEPORT included, as another slm serve had
  const int port = other.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  ServerOptions o;
  o.port = port;
  Server srv(o, false);
  try {
    srv.start();
    ADD_FAILURE() << "a second server started on busy port " << port;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("port " + std::to_string(port) + " is already in use"),
              std::string::npos)
        << e.what();
  }
}

TEST(Http, LoadingThenReady) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  ServerOptions o;
  o.port = 0;
  Server srv(o, false);
  const int port = srv.start();
  ASSERT_GT(port, 0);
  httplib::Client cli("127.0.0.1", port);

  auto health = cli.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_EQ(Json::parse(health->body)["status"], "loading");
  auto early = cli.Post("/v1/completions", R"({"prompt":"Once"})", "application/json");
  ASSERT_TRUE(early);
  EXPECT_EQ(early->status, 503);
  EXPECT_EQ(Json::parse(early->body)["error"]["code"], "model_loading");

  engine::SchedulerOptions so;
  so.n_slots = 2;
  srv.set_backend(
      load_backend(test::fixture("models/stories260K.gguf"), "stories", so, &srv.metrics()));
  health = cli.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(Json::parse(health->body)["status"], "ok");

  auto r =
      cli.Post("/v1/completions", R"({"prompt":"Once upon a time","max_tokens":8,"temperature":0})",
               "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Json j = Json::parse(r->body);
  EXPECT_EQ(j["model"], "stories");
  EXPECT_EQ(j["choices"][0]["text"], ", there was a little girl");

  auto page = cli.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<title>slm chat</title>"), std::string::npos);
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("default-src 'none'"),
            std::string::npos);

  auto metrics = cli.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("slm_requests_total{endpoint=\"completions\",status=\"200\"} 1"),
            std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("slm_model_info{model=\"stories\"} 1"), std::string::npos);
  srv.stop();
  srv.wait();
}

}  // namespace
}  // namespace slm::server
