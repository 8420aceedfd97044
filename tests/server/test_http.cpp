// The HTTP layer in-process: a busy port refused, stop() at any moment, /health while loading and
// once ready, the API's 503 before the model is there, a request served end
// to end, the server-wide request defaults (-n, --temp, --system) and what
// requests still running see when the server stops.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

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

// stop() at any moment ends the server: right after start() (what serve does
// when the model fails to load at once), before start(), and from another
// thread while start() runs. httplib ignores a stop that arrives before its
// listen loop has begun, which used to leave wait() blocked forever. A hang
// here is caught by the TIMEOUT of the test_http_stop_race CTest entry.
TEST(Http, StopAtAnyMomentEndsTheServer) {
  ServerOptions o;
  o.port = 0;
  for (int i = 0; i < 20; ++i) {
    Server srv(o, false);
    ASSERT_GT(srv.start(), 0);
    srv.stop();
    srv.wait();
  }
  for (int i = 0; i < 5; ++i) {
    Server srv(o, false);
    srv.stop();
    ASSERT_GT(srv.start(), 0);
    srv.wait();
  }
  for (int i = 0; i < 20; ++i) {
    Server srv(o, false);
    std::thread stopper([&srv] { srv.stop(); });
    ASSERT_GT(srv.start(), 0);
    stopper.join();
    srv.wait();
  }
  // Once stopped, the port is no longer served.
  Server srv(o, false);
  const int port = srv.start();
  srv.stop();
  srv.wait();
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(2);
  EXPECT_FALSE(cli.Get("/health"));
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
  // The scheduler's view of that one request: queued once; one step for its
  // prompt and one per further token, each of one sequence; the rows fed are
  // the prompt and every sampled token but the last.
  const int64_t n_prompt = j["usage"]["prompt_tokens"].get<int64_t>();
  const int64_t n_gen = j["usage"]["completion_tokens"].get<int64_t>();
  ASSERT_EQ(n_gen, 8);
  auto has = [&](const std::string& line) {
    EXPECT_NE(metrics->body.find(line + "\n"), std::string::npos) << line << "\n" << metrics->body;
  };
  has("slm_queue_seconds_count 1");
  has("slm_step_batch_size_bucket{le=\"1\"} " + std::to_string(n_gen));
  has("slm_step_batch_size_count " + std::to_string(n_gen));
  has("slm_step_tokens_sum " + std::to_string(n_prompt + n_gen - 1));
  has("slm_step_tokens_count " + std::to_string(n_gen));
  srv.stop();
  srv.wait();
}

// A server started with -n 5 --temp 0 --system TEXT: requests that leave
// max_tokens and temperature out get them; explicit fields win; a chat with
// no system message gets TEXT first, one with its own keeps it.
TEST(Http, ServerWideRequestDefaults) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  ServerOptions o;
  o.port = 0;
  o.log_prompts = true;
  o.request_defaults.max_tokens = 5;
  o.request_defaults.temperature = 0.0f;
  o.request_defaults.system = "Be brief.";
  Server srv(o, false);
  const int port = srv.start();
  engine::SchedulerOptions so;
  so.n_slots = 1;
  srv.set_backend(
      load_backend(test::fixture("models/stories260K.gguf"), "stories", so, &srv.metrics()));
  httplib::Client cli("127.0.0.1", port);

  // Greedy (temperature 0 from the default) and 5 tokens (from -n): the
  // prefix of the reference continuation, twice the same.
  for (int i = 0; i < 2; ++i) {
    auto r = cli.Post("/v1/completions", R"({"prompt":"Once upon a time","ignore_eos":true})",
                      "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const Json j = Json::parse(r->body);
    EXPECT_EQ(j["usage"]["completion_tokens"], 5) << r->body;
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(j["choices"][0]["text"], ", there was a little") << r->body;
  }
  // An explicit max_tokens wins over -n.
  auto r = cli.Post("/v1/completions",
                    R"({"prompt":"Once upon a time","max_tokens":8,"ignore_eos":true})",
                    "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(Json::parse(r->body)["choices"][0]["text"], ", there was a little girl");
  // So does max_completion_tokens.
  r = cli.Post("/v1/completions",
               R"({"prompt":"Once upon a time","max_completion_tokens":2,"ignore_eos":true})",
               "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(Json::parse(r->body)["usage"]["completion_tokens"], 2);

  // Chat: the system default is in the prompt the template built; the
  // prompt's token count shows it (the same chat with the system message
  // spelled out counts the same, one with another system message differs).
  auto chat_prompt_tokens = [&](const std::string& messages) {
    auto c = cli.Post("/v1/chat/completions", R"({"max_tokens":1,"messages":)" + messages + "}",
                      "application/json");
    EXPECT_TRUE(c);
    if (!c) return int64_t{-1};
    EXPECT_EQ(c->status, 200) << c->body;
    return Json::parse(c->body)["usage"]["prompt_tokens"].get<int64_t>();
  };
  const int64_t with_default = chat_prompt_tokens(R"([{"role":"user","content":"Hi"}])");
  const int64_t spelled_out = chat_prompt_tokens(
      R"([{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}])");
  const int64_t own_system =
      chat_prompt_tokens(R"([{"role":"system","content":"x"},{"role":"user","content":"Hi"}])");
  EXPECT_EQ(with_default, spelled_out);
  EXPECT_LT(own_system, with_default);
  srv.stop();
  srv.wait();
}

// Stopping the server (what SIGINT/SIGTERM do in slm serve) while answers
// are being generated: a streamed one ends with an SSE error event and
// [DONE], not a silent cut; a whole one gets a 503 error object.
TEST(Http, ShutdownEndsRunningRequestsWithAnError) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  ServerOptions o;
  o.port = 0;
  Server srv(o, false);
  const int port = srv.start();
  engine::SchedulerOptions so;
  so.n_slots = 2;
  // A long context so that both answers are still running when stop() comes.
  so.n_ctx = 1 << 15;
  so.allow_beyond_train_ctx = true;
  srv.set_backend(
      load_backend(test::fixture("models/stories260K.gguf"), "stories", so, &srv.metrics()));
  const std::string body = R"({"prompt":"Once upon a time","ignore_eos":true,"max_tokens":30000)";

  int whole_status = 0;
  std::string whole_body;
  std::thread whole_thread([&] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    if (auto w = c.Post("/v1/completions", body + "}", "application/json")) {
      whole_status = w->status;
      whole_body = w->body;
    }
  });

  std::string streamed;
  std::atomic<bool> stop_sent{false};
  std::thread stopper;
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(60, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body + R"(,"stream":true})";
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    streamed.append(data, n);
    // Once tokens flow, and both requests hold a slot, stop the server.
    if (!stop_sent.load() && streamed.find("\"text\"") != std::string::npos) {
      httplib::Client h("127.0.0.1", port);
      auto health = h.Get("/health");
      if (health && health->status == 200 &&
          Json::parse(health->body)["slots_processing"].get<int>() == 2) {
        stop_sent.store(true);
        stopper = std::thread([&] { srv.stop(); });
      }
    }
    return true;
  };
  auto res = cli.send(req);
  whole_thread.join();
  if (stopper.joinable()) stopper.join();
  srv.wait();
  ASSERT_TRUE(stop_sent.load()) << "the answers ended before the server was stopped";

  ASSERT_TRUE(res) << httplib::to_string(res.error()) << "\n" << streamed;
  EXPECT_EQ(res->status, 200);
  // The last two events: the error, then [DONE].
  const size_t err = streamed.rfind("data: {\"error\"");
  ASSERT_NE(err, std::string::npos)
      << streamed.substr(streamed.size() > 400 ? streamed.size() - 400 : 0);
  const size_t eol = streamed.find("\n\n", err);
  ASSERT_NE(eol, std::string::npos);
  const Json e = Json::parse(streamed.substr(err + 6, eol - err - 6));
  EXPECT_EQ(e["error"]["code"], "server_shutdown");
  EXPECT_EQ(e["error"]["type"], "server_error");
  EXPECT_EQ(e["error"]["message"], "the server is shutting down");
  EXPECT_EQ(streamed.substr(eol + 2), "data: [DONE]\n\n");
  EXPECT_EQ(streamed.find("finish_reason\":\"length"), std::string::npos);

  EXPECT_EQ(whole_status, 503) << whole_body;
  EXPECT_EQ(Json::parse(whole_body, nullptr, false)["error"]["code"], "server_shutdown");
}

}  // namespace
}  // namespace slm::server
