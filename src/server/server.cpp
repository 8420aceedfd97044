// `slm serve`'s HTTP side: the Server's construction, start and stop, the
// listener's settings, authentication, error and exception handlers, request
// logging and metrics, and every route (the completion routes hand over to
// Server::Impl::generate in generate.cpp); also load_backend(). The logging
// and error helpers that generate.cpp shares are defined here.
#include "server/server.h"

#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "base/error.h"
#include "server/request.h"
#include "server/response.h"
#include "server/server_impl.h"
#include "server/status.h"
#include "server/web_index_html.h"

namespace slm::server {
namespace detail {

std::string log_safe(std::string_view s, size_t max) {
  std::string out;
  for (const char c : s.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

}  // namespace detail

void log_line(const std::string& s) {
  char stamp[32] = "";
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  if (gmtime_r(&now, &tm) != nullptr)
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ ", &tm);
  const std::string line = std::string(stamp) + "slm serve: " + s + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

namespace detail {

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  if (e.status() == 429) res.set_header("Retry-After", "1");
  res.set_content(dump_json(error_json(e)), kJson);
}

}  // namespace detail

using detail::kJson;
using detail::log_line;
using detail::log_safe;
using detail::send_error;

namespace {

using OJson = nlohmann::ordered_json;

// Used when the model file carries no chat template, as most runtimes do.
constexpr const char* kChatmlTemplate =
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content "
    "}}<|im_end|>\n"
    "{% endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

const char* endpoint_label(const std::string& path) {
  if (path == "/v1/chat/completions") return "chat_completions";
  if (path == "/v1/completions") return "completions";
  if (path.rfind("/v1/models", 0) == 0) return "models";
  if (path.rfind("/v1/adapters", 0) == 0) return "adapters";
  if (path == "/health") return "health";
  if (path == "/metrics") return "metrics";
  if (path == "/slm/status") return "status";
  if (path == "/") return "web";
  return "other";
}

bool needs_auth(const std::string& path) {
  return path.rfind("/v1/", 0) == 0 || path == "/metrics" || path == "/slm/status";
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

bool Backend::is_base_name(std::string_view name) const {
  return name.empty() || name == model_id ||
         std::find(aliases.begin(), aliases.end(), name) != aliases.end();
}

std::shared_ptr<Backend> load_backend(const std::string& path, const std::string& model_id,
                                      const engine::SchedulerOptions& options, Metrics* metrics,
                                      const BackendOptions& extra) {
  auto b = std::make_shared<Backend>();
  b->model = model::Model::load(path, options.n_threads);
  b->model->set_prune(extra.prune, extra.sparsity_name);
  b->tokenizer.emplace(tokenizer::Tokenizer::from_gguf(b->model->file()));
  const tokenizer::Tokenizer& tok = *b->tokenizer;
  if (const auto src = b->model->file().get_string("tokenizer.chat_template")) {
    try {
      b->chat_template.emplace(*src);
      b->tool_format = engine::detect_tool_format(*src);
    } catch (const chat::TemplateError& e) {
      throw Error("the chat template in " + path + " does not parse: " + e.what());
    }
  } else {
    b->chat_template.emplace(kChatmlTemplate);
    b->template_is_fallback = true;
  }
  b->model_id = model_id;
  b->model_path = path;
  b->kv_type = options.kv_type;
  b->aliases = extra.aliases;
  std::vector<std::string> reserved = extra.aliases;
  reserved.push_back(model_id);
  b->adapters.set_reserved(std::move(reserved));
  b->adapters.set_allowed_dirs(extra.lora_dirs);
  b->adapters.set_type(extra.lora_type);
  for (const AdapterSpec& a : extra.adapters) {
    if (b->adapters.find(a.name)) throw Error("--lora: the name '" + a.name + "' is given twice");
    if (b->is_base_name(a.name)) throw Error("--lora: '" + a.name + "' is the base model's name");
    auto e = std::make_shared<AdapterEntry>();
    e->name = a.name;
    e->path = a.file.path;
    e->scale = a.file.scale;
    e->created = std::time(nullptr);
    e->adapter = model::LoraAdapter::load(*b->model, {a.file}, extra.lora_type);
    b->adapters.add(std::move(e), false);
  }
  engine::SchedulerOptions so = options;
  if (so.n_ctx == 0) so.n_ctx = std::min<int64_t>(b->model->config().n_ctx_train, kDefaultMaxCtx);
  b->scheduler = std::make_unique<engine::Scheduler>(*b->model, tok, so, metrics);
  return b;
}

void Server::Impl::setup() {
  const int threads =
      opt.http_threads > 0
          ? opt.http_threads
          : static_cast<int>(std::max<int64_t>(16, 2 * (opt.n_slots + opt.max_queue) + 8));
  http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http.set_payload_max_length(opt.max_body_bytes);
  http.set_read_timeout(opt.read_timeout_s, 0);
  http.set_write_timeout(opt.write_timeout_s, 0);
  http.set_keep_alive_timeout(5);
  http.set_keep_alive_max_count(1000);
  http.set_tcp_nodelay(true);

  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!needs_auth(req.path) || auth.check(req.get_header_value("Authorization")))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "invalid or missing API key: send 'Authorization: Bearer KEY'",
                             {}, "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // httplib's own refusals (unknown path, oversized or malformed request)
  // get the same error object as ours; bodies already set are kept.
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    switch (res.status) {
      case 404:
        send_error(res, ApiError(404,
                                 "unknown URL: " + log_safe(req.method, 16) + " " +
                                     log_safe(req.path, 200),
                                 {}, "unknown_url"));
        break;
      case 413:
        send_error(res, ApiError(413,
                                 "the request body is larger than " +
                                     std::to_string(opt.max_body_bytes) + " bytes",
                                 {}, "request_too_large"));
        break;
      case 405:
        send_error(res, ApiError(405, "method not allowed"));
        break;
      default:
        if (res.status >= 500)
          send_error(res, ApiError(res.status, "internal server error", {}, {}, "server_error"));
        else
          send_error(res, ApiError(res.status, "bad request"));
    }
  });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        log_line("internal error: " + log_safe(what));
        send_error(res, ApiError(500, "internal server error: " + what, {}, {}, "server_error"));
      });
  // Counted once the status is final but before the response is written (the
  // logger runs after it), so a client that reads /metrics right after its
  // answer sees its own request.
  http.set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const char* label = endpoint_label(req.path);
    if (std::string_view(label) != "web") metrics.on_request(label, res.status);
  });
  http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    log_line(log_safe(req.method, 16) + " " + log_safe(req.path, 200) + " " +
             std::to_string(res.status));
  });

  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    // Everything the page needs is inline; nothing may load from elsewhere.
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                   "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_content(std::string(kWebIndexHtml), "text/html; charset=utf-8");
  });
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const auto b = get_backend();
    if (!b) {
      res.status = 503;
      res.set_content(R"({"status":"loading"})", kJson);
      return;
    }
    const engine::SchedulerStats s = b->scheduler->stats();
    res.set_content(dump_json(OJson{{"status", "ok"},
                                    {"slots_idle", s.n_slots - s.active},
                                    {"slots_processing", s.active},
                                    {"queue", s.queued}}),
                    kJson);
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    const auto b = get_backend();
    engine::SchedulerStats s;
    if (b) s = b->scheduler->stats();
    res.set_content(metrics.render(s), "text/plain; version=0.0.4; charset=utf-8");
  });
  // What the web page needs before it has a key: no secrets here.
  http.Get("/slm/info", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(dump_json(OJson{{"auth_required", auth.enabled()},
                                    {"ready", get_backend() != nullptr},
                                    {"cost_per_hour", opt.cost_per_hour},
                                    {"watts", opt.watts},
                                    {"usd_per_million_tokens", metrics.usd_per_million_tokens()}}),
                    kJson);
  });
  // What this server holds, for `slm ps` (status.h).
  http.Get("/slm/status", [this](const httplib::Request&, httplib::Response& res) {
    const auto b = get_backend();
    const double up = std::chrono::duration<double>(detail::Clock::now() - started).count();
    res.set_content(dump_json(status_json(b.get(), up)), kJson);
  });
  auto model_json = [](const Backend& b) {
    return OJson{{"id", b.model_id}, {"object", "model"}, {"created", 0}, {"owned_by", "slm"}};
  };
  auto adapter_json = [](const Backend& b, const AdapterEntry& e) {
    return OJson{{"id", e.name},         {"object", "model"},
                 {"created", e.created}, {"owned_by", "slm"},
                 {"parent", b.model_id}, {"root", b.model_id},
                 {"scale", e.scale},     {"rank", e.adapter->max_rank()}};
  };
  http.Get("/v1/models", [this, model_json, adapter_json](const httplib::Request&,
                                                          httplib::Response& res) {
    try {
      const auto b = ready_backend();
      OJson data = OJson::array({model_json(*b)});
      for (const auto& e : b->adapters.list()) data.push_back(adapter_json(*b, *e));
      res.set_content(dump_json(OJson{{"object", "list"}, {"data", std::move(data)}}), kJson);
    } catch (const ApiError& e) {
      send_error(res, e);
    }
  });
  http.Get(R"(/v1/models/(.+))",
           [this, model_json, adapter_json](const httplib::Request& req, httplib::Response& res) {
             try {
               const auto b = ready_backend();
               const std::string name = req.matches[1];
               if (b->is_base_name(name)) {
                 res.set_content(dump_json(model_json(*b)), kJson);
               } else if (const auto e = b->adapters.find(name)) {
                 res.set_content(dump_json(adapter_json(*b, *e)), kJson);
               } else {
                 throw ApiError(404,
                                "the model '" + log_safe(name, 200) +
                                    "' does not exist; this server runs '" + b->model_id +
                                    "' and its adapters (GET /v1/models)",
                                "model", "model_not_found");
               }
             } catch (const ApiError& e) {
               send_error(res, e);
             }
           });
  // Run-time adapters: files inside --lora-dir only (AdapterRegistry).
  http.Post("/v1/adapters", [this, adapter_json](const httplib::Request& req,
                                                 httplib::Response& res) {
    try {
      const auto b = ready_backend();
      const nlohmann::json j = nlohmann::json::parse(req.body, nullptr, false);
      if (j.is_discarded() || !j.is_object())
        throw ApiError(400, "the body must be a JSON object {\"name\", \"path\", \"scale\"}");
      auto str = [&](const char* key) {
        if (!j.contains(key) || !j[key].is_string())
          throw ApiError(400, std::string("'") + key + "' must be a string", key);
        return j[key].get<std::string>();
      };
      const std::string name = str("name"), path = str("path");
      float scale = 1.0f;
      if (j.contains("scale") && !j["scale"].is_null()) {
        if (!j["scale"].is_number()) throw ApiError(400, "'scale' must be a number", "scale");
        scale = j["scale"].get<float>();
      }
      bool replace = false;
      if (j.contains("replace") && !j["replace"].is_null()) {
        if (!j["replace"].is_boolean())
          throw ApiError(400, "'replace' must be true or false", "replace");
        replace = j["replace"].get<bool>();
      }
      if (const std::string why = adapter_name_problem(name); !why.empty())
        throw ApiError(400, why, "name");
      const std::filesystem::path file = b->adapters.resolve_runtime_path(path);
      const auto e = b->adapters.load(*b->model, name, file.string(), scale, replace);
      log_line("adapter '" + name + "' loaded from " + log_safe(file.string(), 400) + " (scale " +
               std::to_string(scale) + ", rank " + std::to_string(e->adapter->max_rank()) + ")");
      res.status = 201;
      res.set_content(dump_json(adapter_json(*b, *e)), kJson);
    } catch (const ApiError& e) {
      send_error(res, e);
    }
  });
  http.Delete(R"(/v1/adapters/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
    try {
      const auto b = ready_backend();
      const std::string name = req.matches[1];
      if (!b->adapters.remove(name))
        throw ApiError(404, "no adapter named '" + log_safe(name, 200) + "' is loaded", "name",
                       "model_not_found");
      log_line("adapter '" + name + "' removed");
      res.set_content(dump_json(OJson{{"id", name}, {"object", "model"}, {"deleted", true}}),
                      kJson);
    } catch (const ApiError& e) {
      send_error(res, e);
    }
  });
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    generate(Endpoint::kChat, req, res);
  });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    generate(Endpoint::kCompletion, req, res);
  });
}
Server::Server(ServerOptions options, bool allow_insecure) {
  if (!is_loopback_host(options.host) && options.api_key.empty() && !allow_insecure)
    throw Error(
        "refusing to listen on " + options.host +
        " without an API key: anyone who can reach it could use the model. Pass --api-key or "
        "--api-key-file, or --insecure-no-auth if that is really intended");
  if (options.port < 0 || options.port > 65535) throw Error("--port must be between 0 and 65535");
  metrics_ = std::make_unique<Metrics>(MetricsInfo{"", options.cost_per_hour, options.watts});
  impl_ = std::make_unique<Impl>(std::move(options), *metrics_);
  impl_->setup();
}

Server::~Server() {
  stop();
  wait();
  // The scheduler (in the backend) goes first: its thread may still be
  // finishing a step that reports to metrics_.
  impl_.reset();
}

namespace {

// Why binding host:port failed, from a bind of our own with the listener's
// options (the HTTP library does not say).
std::string bind_failure(const std::string& host, int port) {
  const std::string where = host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0)
    return "cannot listen on " + where + ": unknown address (" + gai_strerror(rc) + ")";
  int err = 0;
  for (addrinfo* a = res; a != nullptr && err != EADDRINUSE; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    err = ::bind(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
    ::close(fd);
  }
  freeaddrinfo(res);
  if (err == EADDRINUSE)
    return "port " + std::to_string(port) + " is already in use (another server listens on " +
           where + "); stop it or choose another --port";
  if (err == EADDRNOTAVAIL)
    return "cannot listen on " + where + ": the address is not on this machine";
  if (err == EACCES)
    return "cannot listen on " + where + ": permission denied (ports below 1024 need privileges)";
  return "cannot listen on " + where +
         (err != 0 ? std::string(": ") + std::strerror(err) : std::string());
}

}  // namespace

int Server::start() {
  Impl& im = *impl_;
  // httplib's default sets SO_REUSEPORT, which lets a second server bind a
  // port another one listens on and the kernel then splits the connections
  // between them. SO_REUSEADDR alone allows a quick restart (TIME_WAIT) and
  // makes a busy port fail to bind.
  // The socket httplib binds last is the one it listens on (it closes the
  // candidates whose bind failed).
  socket_t bound = INVALID_SOCKET;
  im.http.set_socket_options([&bound](socket_t sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    bound = sock;
  });
  if (im.opt.port == 0) {
    port_ = im.http.bind_to_any_port(im.opt.host);
    if (port_ <= 0) throw Error(bind_failure(im.opt.host, 0));
  } else {
    if (!im.http.bind_to_port(im.opt.host, im.opt.port))
      throw Error(bind_failure(im.opt.host, im.opt.port));
    port_ = im.opt.port;
  }
  // Debian's compiled httplib listens with a backlog of 5. While the forward
  // pass holds every core, its accept loop runs late, so in a burst of
  // connections (16 clients at once) the kernel dropped the SYNs beyond the
  // full queue and those clients retried a second later: 8 of 16 benchmark
  // streams reached the scheduler 1.0 s after the rest. Listening again on
  // the bound socket raises the backlog (Linux keeps the socket, updates the
  // queue length; SOMAXCONN is capped by net.core.somaxconn).
  if (bound != INVALID_SOCKET) ::listen(bound, SOMAXCONN);
  std::lock_guard<std::mutex> lock(im.life_mutex);
  im.thread = std::thread([&im] {
    im.http.listen_after_bind();
    im.listener_done.store(true);
  });
  im.listener_started = true;
  // stop() came first (a model that failed to load at once, a signal): it
  // could not end a listener that did not exist yet.
  if (im.stopping.load()) im.stop_listener();
  return port_;
}

void Server::Impl::stop_listener() {
  if (listener_ended) return;
  // httplib's stop() is a no-op until listen_after_bind() has set its running
  // flag, a moment after the thread starts: wait for that (or for the loop to
  // have returned), then stop it once.
  while (!http.is_running() && !listener_done.load())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!listener_done.load()) http.stop();
  listener_ended = true;
}

void Server::set_backend(std::shared_ptr<Backend> backend) {
  metrics_->set_model(backend->model_id);
  std::lock_guard<std::mutex> lock(impl_->backend_mutex);
  impl_->backend = std::move(backend);
}

void Server::stop() {
  impl_->stopping.store(true);
  // A stream's provider sees `stopping` within one 250 ms take() and ends
  // its answer with an error event; after httplib's stop() it would only be
  // cut. Whole answers get their 503 either way.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (impl_->open_streams.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::lock_guard<std::mutex> lock(impl_->life_mutex);
  if (impl_->listener_started) impl_->stop_listener();
}

void Server::wait() {
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace slm::server
