#include "server/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <limits>
#include <mutex>
#include <random>
#include <thread>

#include "base/error.h"
#include "engine/prompt.h"
#include "server/request.h"
#include "server/response.h"
#include "server/web_index_html.h"

namespace slm::server {
namespace {

using Clock = std::chrono::steady_clock;
using OJson = nlohmann::ordered_json;

// Used when the model file carries no chat template, as most runtimes do.
constexpr const char* kChatmlTemplate =
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content "
    "}}<|im_end|>\n"
    "{% endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

constexpr const char* kJson = "application/json";

// Printable one-line form of untrusted text for the log.
std::string log_safe(std::string_view s, size_t max = 4096) {
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

void log_line(const std::string& s) {
  std::fprintf(stderr, "slm serve: %s\n", s.c_str());
  std::fflush(stderr);
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  if (e.status() == 429) res.set_header("Retry-After", "1");
  res.set_content(dump_json(error_json(e)), kJson);
}

const char* endpoint_label(const std::string& path) {
  if (path == "/v1/chat/completions") return "chat_completions";
  if (path == "/v1/completions") return "completions";
  if (path.rfind("/v1/models", 0) == 0) return "models";
  if (path == "/health") return "health";
  if (path == "/metrics") return "metrics";
  if (path == "/") return "web";
  return "other";
}

bool needs_auth(const std::string& path) {
  return path.rfind("/v1/", 0) == 0 || path == "/metrics";
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// The prompt of one request as token ids, and how to decode what follows.
struct Prompt {
  std::vector<int32_t> tokens;
  std::string text;  // for --log-prompts
  bool strip_leading_space = false;
};

Prompt build_prompt(const Backend& b, const ParsedRequest& r) {
  const tokenizer::Tokenizer& tok = *b.tokenizer;
  Prompt p;
  if (r.endpoint == Endpoint::kChat) {
    chat::ChatInput in;
    in.messages = r.messages;
    in.tools = r.tools;
    in.add_generation_prompt = true;
    engine::Prompt built;
    try {
      built = engine::build_chat_prompt(tok, *b.chat_template, std::move(in));
    } catch (const chat::TemplateError& e) {
      throw ApiError(
          400, std::string("the model's chat template rejected the conversation: ") + e.what(),
          "messages");
    } catch (const Error& e) {  // malformed messages (make_chat_context)
      throw ApiError(400, e.what(), "messages");
    }
    p.text = std::move(built.text);
    p.tokens = std::move(built.tokens);
  } else if (r.prompt_is_tokens) {
    p.tokens = r.prompt_tokens;
  } else {
    p.text = r.prompt;
    p.tokens = engine::tokenize_prompt(tok, r.prompt);
    p.strip_leading_space = r.prompt.empty();
  }
  return p;
}

// State of one streamed response, shared by httplib's content provider and
// its releaser (which runs when the connection ends, finished or not).
struct StreamState {
  std::shared_ptr<Backend> backend;  // keeps the model alive while streaming
  std::shared_ptr<engine::Job> job;
  std::unique_ptr<ResponseWriter> writer;
  bool include_usage = false;
  bool started = false;
  bool done = false;
  Clock::time_point t0, last_write;
  std::string id;
};

}  // namespace

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

std::shared_ptr<Backend> load_backend(const std::string& path, const std::string& model_id,
                                      const engine::SchedulerOptions& options, Metrics* metrics) {
  auto b = std::make_shared<Backend>();
  b->model = model::Model::load(path);
  b->tokenizer.emplace(tokenizer::Tokenizer::from_gguf(b->model->file()));
  const tokenizer::Tokenizer& tok = *b->tokenizer;
  if (const auto src = b->model->file().get_string("tokenizer.chat_template")) {
    try {
      b->chat_template.emplace(*src);
    } catch (const chat::TemplateError& e) {
      throw Error("the chat template in " + path + " does not parse: " + e.what());
    }
  } else {
    b->chat_template.emplace(kChatmlTemplate);
    b->template_is_fallback = true;
  }
  b->model_id = model_id;
  engine::SchedulerOptions so = options;
  if (so.n_ctx == 0) so.n_ctx = std::min<int64_t>(b->model->config().n_ctx_train, kDefaultMaxCtx);
  b->scheduler = std::make_unique<engine::Scheduler>(*b->model, tok, so, metrics);
  return b;
}

struct Server::Impl {
  Impl(ServerOptions o, Metrics& m) : opt(std::move(o)), auth(opt.api_key), metrics(m) {}

  ServerOptions opt;
  ApiKeyCheck auth;
  Metrics& metrics;
  httplib::Server http;
  std::thread thread;
  std::atomic<bool> stopping{false};
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

  void setup();
  void generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  void respond_whole(const std::shared_ptr<engine::Job>& job, ResponseWriter& writer,
                     const ParsedRequest& r, const std::string& id, Clock::time_point t0,
                     httplib::Response& res);
  void stream(std::shared_ptr<StreamState> st, httplib::Response& res);
};

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
  auto model_json = [](const Backend& b) {
    return OJson{{"id", b.model_id}, {"object", "model"}, {"created", 0}, {"owned_by", "slm"}};
  };
  http.Get("/v1/models", [this, model_json](const httplib::Request&, httplib::Response& res) {
    try {
      const auto b = ready_backend();
      res.set_content(
          dump_json(OJson{{"object", "list"}, {"data", OJson::array({model_json(*b)})}}), kJson);
    } catch (const ApiError& e) {
      send_error(res, e);
    }
  });
  http.Get(R"(/v1/models/(.+))",
           [this, model_json](const httplib::Request& req, httplib::Response& res) {
             try {
               const auto b = ready_backend();
               if (req.matches[1] != b->model_id)
                 throw ApiError(404,
                                "the model '" + std::string(req.matches[1]) +
                                    "' does not exist; this server runs '" + b->model_id + "'",
                                "model", "model_not_found");
               res.set_content(dump_json(model_json(*b)), kJson);
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

void Server::Impl::generate(Endpoint endpoint, const httplib::Request& req,
                            httplib::Response& res) {
  const auto t0 = Clock::now();
  try {
    // Cross-site pages can POST text/plain without a CORS preflight; demanding
    // JSON means a browser never sends another site's request here unasked.
    const std::string ctype = lower(req.get_header_value("Content-Type"));
    if (ctype.rfind("application/json", 0) != 0)
      throw ApiError(400, "the request needs 'Content-Type: application/json'", {},
                     "unsupported_content_type");
    const auto b = ready_backend();
    engine::Scheduler& sched = *b->scheduler;
    RequestLimits limits;
    limits.n_vocab = sched.n_vocab();
    limits.max_tokens_cap = opt.max_tokens_cap > 0 ? opt.max_tokens_cap : sched.n_ctx();
    const ParsedRequest r = parse_request(endpoint, req.body, limits);
    if (!r.model.empty() && r.model != b->model_id)
      throw ApiError(
          404, "the model '" + r.model + "' does not exist; this server runs '" + b->model_id + "'",
          "model", "model_not_found");

    Prompt prompt = build_prompt(*b, r);
    const int64_t n_prompt = static_cast<int64_t>(prompt.tokens.size());

    engine::Request jr;
    jr.prompt.tokens = std::move(prompt.tokens);
    jr.sampling = r.sampling;
    if (!r.seed_given)
      jr.sampling.seed =
          std::random_device{}() * uint64_t{0x9E3779B97F4A7C15ull} + std::random_device{}();
    if (r.ignore_eos)
      for (const int32_t id : b->tokenizer->eog_ids())
        jr.sampling.logit_bias[id] = -std::numeric_limits<float>::infinity();
    jr.stops = r.stops;
    // An explicit max_tokens must fit beside the prompt; without one the
    // completion gets what fits, up to the cap.
    jr.max_tokens = r.max_tokens.value_or(limits.max_tokens_cap);
    jr.context = r.max_tokens ? engine::ContextPolicy::kRefuse : engine::ContextPolicy::kClamp;
    jr.top_logprobs = r.logprobs ? r.top_logprobs : -1;
    jr.strip_leading_space = prompt.strip_leading_space;
    jr.deadline = Clock::now() + std::chrono::seconds(opt.request_timeout_s);

    std::shared_ptr<engine::Job> job;
    try {
      job = sched.submit(std::move(jr));
    } catch (const engine::RequestError& e) {
      throw request_error(e, r);
    } catch (const engine::QueueFullError& e) {
      throw ApiError(429, std::string(e.what()) + "; retry later", {}, "queue_full",
                     "rate_limit_error");
    } catch (const Error& e) {
      throw ApiError(400, e.what());
    }

    const tokenizer::Tokenizer* tok = &*b->tokenizer;
    auto writer = std::make_unique<ResponseWriter>(
        endpoint, b->model_id, r.include_usage,
        [tok](int32_t id) { return tok->token_to_piece(id, false); });
    log_line(writer->id() + ": " + std::to_string(n_prompt) + " prompt tokens, max " +
             std::to_string(r.max_tokens.value_or(
                 std::min(limits.max_tokens_cap, sched.n_ctx() - n_prompt))) + (r.stream ? ", streaming" : ""));
    if (opt.log_prompts) log_line(writer->id() + " prompt: " + log_safe(prompt.text, 1 << 20));

    if (r.stream) {
      auto st = std::make_shared<StreamState>();
      st->backend = b;
      st->job = std::move(job);
      st->include_usage = r.include_usage;
      st->t0 = t0;
      st->last_write = Clock::now();
      st->id = writer->id();
      st->writer = std::move(writer);
      stream(std::move(st), res);
    } else {
      respond_whole(job, *writer, r, writer->id(), t0, res);
    }
  } catch (const ApiError& e) {
    send_error(res, e);
  }
}

void Server::Impl::respond_whole(const std::shared_ptr<engine::Job>& job, ResponseWriter& writer,
                                 const ParsedRequest& r, const std::string& id,
                                 Clock::time_point t0, httplib::Response& res) {
  std::string text;
  std::vector<engine::TokenLogprob> logprobs;
  engine::Update u;
  for (;;) {
    if (stopping.load()) {
      job->cancel();
      throw ApiError(503, "the server is shutting down", {}, {}, "server_error");
    }
    if (!job->take(u, std::chrono::milliseconds(250))) continue;
    text += u.text;
    logprobs.insert(logprobs.end(), u.logprobs.begin(), u.logprobs.end());
    if (u.done) break;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  log_line(id + ": " + std::string(engine::finish_reason_name(u.finish)) + " after " + std::to_string(u.n_generated) +
           " tokens (" + std::to_string(u.n_cached) + " prompt tokens cached), " +
           std::to_string(secs) + " s");
  if (u.finish == engine::FinishReason::kError)
    throw ApiError(error_status(u), u.error, {}, {}, "server_error");
  if (u.finish == engine::FinishReason::kCancelled)
    throw ApiError(503, "the request was cancelled", {}, {}, "server_error");
  const Usage usage{u.n_prompt, u.n_cached, u.n_generated};
  res.set_content(dump_json(writer.complete(text, u.finish, usage, logprobs, r.logprobs)), kJson);
}

void Server::Impl::stream(std::shared_ptr<StreamState> st, httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, st](size_t, httplib::DataSink& sink) -> bool {
        auto write = [&](const std::string& s) {
          return s.empty() || sink.write(s.data(), s.size());
        };
        if (!st->started) {
          st->started = true;
          if (!write(st->writer->stream_start())) return false;
        }
        if (stopping.load()) return false;
        engine::Update u;
        if (!st->job->take(u, std::chrono::milliseconds(250))) {
          // A comment line now and then finds out whether a client waiting in
          // the queue is still there (clients ignore SSE comments).
          if (Clock::now() - st->last_write > std::chrono::seconds(5)) {
            st->last_write = Clock::now();
            return write(": keep-alive\n\n");
          }
          return true;
        }
        std::string out = st->writer->stream_delta(u.text, u.logprobs);
        if (u.done) {
          st->done = true;
          if (u.finish == engine::FinishReason::kError) {
            out += sse_event(
                dump_json(error_json(ApiError(error_status(u), u.error, {}, {}, "server_error"))));
          } else if (u.finish != engine::FinishReason::kCancelled) {
            out += st->writer->stream_finish(u.finish);
            if (st->include_usage)
              out += st->writer->stream_usage(Usage{u.n_prompt, u.n_cached, u.n_generated});
          }
          out += sse_done();
          const bool ok = write(out);
          sink.done();
          const double secs = std::chrono::duration<double>(Clock::now() - st->t0).count();
          log_line(st->id + ": " + std::string(engine::finish_reason_name(u.finish)) + " after " +
                   std::to_string(u.n_generated) + " tokens (" + std::to_string(u.n_cached) +
                   " prompt tokens cached), " + std::to_string(secs) + " s");
          return ok;
        }
        st->last_write = Clock::now();
        return write(out);
      },
      [st](bool) {
        // The connection ended before the job did: the client went away.
        if (!st->done) {
          st->job->cancel();
          log_line(st->id + ": client disconnected; cancelled");
        }
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
}

int Server::start() {
  Impl& im = *impl_;
  if (im.opt.port == 0) {
    port_ = im.http.bind_to_any_port(im.opt.host);
    if (port_ <= 0) throw Error("cannot listen on " + im.opt.host);
  } else {
    if (!im.http.bind_to_port(im.opt.host, im.opt.port))
      throw Error("cannot listen on " + im.opt.host + ":" + std::to_string(im.opt.port) +
                  " (in use, or the address is not on this machine)");
    port_ = im.opt.port;
  }
  im.thread = std::thread([&im] { im.http.listen_after_bind(); });
  return port_;
}

void Server::set_backend(std::shared_ptr<Backend> backend) {
  metrics_->set_model(backend->model_id);
  std::lock_guard<std::mutex> lock(impl_->backend_mutex);
  impl_->backend = std::move(backend);
}

void Server::stop() {
  impl_->stopping.store(true);
  impl_->http.stop();
}

void Server::wait() {
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace slm::server
