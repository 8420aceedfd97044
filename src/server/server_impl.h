// Internal to the server (server.cpp, generate.cpp): Server::Impl, which
// holds the HTTP listener, its options and the current Backend, and the
// logging and error helpers both files use. server.cpp owns start/stop,
// routes, authentication and the logging setup; generate.cpp owns the path
// from a completion request to its response, whole or streamed. Not part of
// the server's API: server.h is.
//
// Thread-safety: Impl's handlers run on httplib's connection threads; the
// backend pointer is guarded by backend_mutex, stopping is atomic.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/scheduler.h"
#include "server/request.h"
#include "server/response.h"
#include "server/server.h"

namespace slm::server {
namespace detail {

using Clock = std::chrono::steady_clock;

inline constexpr const char* kJson = "application/json";

// Printable one-line form of untrusted text for the log.
std::string log_safe(std::string_view s, size_t max = 4096);
using server::log_line;
// Sets res to e's status and OpenAI error body (with Retry-After on 429).
void send_error(httplib::Response& res, const ApiError& e);

// One streamed response's state; defined in generate.cpp.
struct StreamState;

// structured.cpp: the grammar r's answer must follow (null: free text),
// compiled once per source through b.grammars; ApiError 400 naming the field
// when it does not compile or breaks strict mode.
std::shared_ptr<const grammar::Grammar> request_grammar(Backend& b, const ParsedRequest& r);
// Whether r's answer is parsed for tool calls (chat, tools, tool_choice not none).
bool parses_tool_calls(const ParsedRequest& r);
// Whether r's answer is decoded under the tool-call grammar (tool_choice
// required or named): its calls are parsed as forced (engine/tool_calls.h).
bool tool_calls_forced(const ParsedRequest& r);
// A new call id for b's family.
std::string tool_call_id(const Backend& b);
// Parsed calls as the API shows them (ids made here; one when
// parallel_tool_calls is false).
std::vector<ToolCallOut> api_tool_calls(const Backend& b, const ParsedRequest& r,
                                        std::vector<engine::ToolCall> calls);

}  // namespace detail

struct Server::Impl {
  Impl(ServerOptions o, Metrics& m) : opt(std::move(o)), auth(opt.api_key), metrics(m) {}

  ServerOptions opt;
  ApiKeyCheck auth;
  Metrics& metrics;
  httplib::Server http;
  std::thread thread;
  // The listener's life. httplib's stop() does nothing until its listen loop
  // has marked itself running, so a stop() that arrives before (or while)
  // start() spawns the listener would be lost and serve would hang: stop()
  // and start() both end the listener under life_mutex once both happened
  // (stop_listener), and listener_done says the loop has returned.
  std::mutex life_mutex;
  bool listener_started = false;  // guarded by life_mutex: the thread exists
  bool listener_ended = false;    // guarded by life_mutex: httplib's stop() was called
  std::atomic<bool> listener_done{false};
  const detail::Clock::time_point started = detail::Clock::now();  // for uptime
  std::atomic<bool> stopping{false};
  // Streamed answers not yet ended: stop() gives them time to send their
  // error event, as httplib ends every stream the moment it stops.
  std::atomic<int> open_streams{0};
  std::mutex backend_mutex;
  std::shared_ptr<Backend> backend;

  std::shared_ptr<Backend> get_backend() {
    std::lock_guard<std::mutex> lock(backend_mutex);
    return backend;
  }
  std::shared_ptr<Backend> ready_backend() {
    auto b = get_backend();
    if (!b)
      throw ApiError(503, "the model is still loading; retry shortly", {}, "model_loading",
                     "server_error");
    return b;
  }

  // server.cpp
  void setup();
  // Ends the listener once it runs (or has returned); life_mutex held, listener_started.
  void stop_listener();
  // generate.cpp
  void generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  void respond_whole(const Backend& b, const std::shared_ptr<engine::Job>& job,
                     ResponseWriter& writer, const ParsedRequest& r, const std::string& id,
                     const std::string& adapter, detail::Clock::time_point t0,
                     httplib::Response& res);
  void stream(std::shared_ptr<detail::StreamState> st, httplib::Response& res);
};

}  // namespace slm::server
