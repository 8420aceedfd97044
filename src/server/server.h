// `slm serve`: the HTTP front end. An OpenAI-compatible API
// (/v1/chat/completions, /v1/completions, /v1/models) with streaming as
// server-sent events, /health, Prometheus /metrics and a web chat page at /,
// over cpp-httplib's thread-per-connection server. Requests are parsed and
// checked for shape here (request.h), turned into token ids with the model's
// chat template and tokenizer, and handed to the engine's continuous-batching
// Scheduler, which validates what depends on the model (prompt length against
// the context, sampling) once, at submission. No generation happens here.
//
// The server listens before the model is loaded so /health can say
// "loading"; set_backend() makes it ready.
//
// Ownership: a Server owns its HTTP listener and metrics and shares the
// Backend (model, tokenizer, template, scheduler) with in-flight requests.
// Thread-safety: start/stop/set_backend from the owning thread; handlers run
// on httplib's connection threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/template.h"
#include "engine/constraint.h"
#include "engine/scheduler.h"
#include "engine/tool_calls.h"
#include "model/model.h"
#include "server/adapters.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/request.h"
#include "tokenizer/tokenizer.h"

namespace slm::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;           // 0: any free port (see Server::port())
  std::string api_key;       // empty: no authentication
  bool log_prompts = false;  // prompt text is never logged otherwise
  size_t max_body_bytes = size_t{8} << 20;
  int64_t max_tokens_cap = 0;   // largest max_tokens accepted; 0: the context
  int read_timeout_s = 30;      // receiving a request
  int write_timeout_s = 60;     // a client that stops reading
  int request_timeout_s = 600;  // queue wait plus generation
  int http_threads = 0;         // 0: enough for every slot and queued request
  int64_t max_queue = 64;       // sizes the connection threads; the scheduler enforces it
  int n_slots = 4;
  double cost_per_hour = 0;  // USD, for the cost estimates
  double watts = 0;
  RequestDefaults request_defaults;  // -n, --temp, --system: what a request leaves out
};

// What a loaded model brings. Members are destroyed in reverse order, so the
// scheduler (which borrows the rest) goes first.
struct Backend {
  std::unique_ptr<model::Model> model;
  std::optional<tokenizer::Tokenizer> tokenizer;
  std::optional<chat::Template> chat_template;
  bool template_is_fallback = false;  // the model has none: ChatML is used
  engine::ToolFormat tool_format = engine::ToolFormat::kHermes;  // its tool-call syntax
  engine::GrammarCache grammars{256};  // compiled response formats and tool grammars
  std::string model_id;
  std::string model_path;            // as given to load_backend
  DType kv_type = DType::F16;        // of every slot's KV cache
  std::vector<std::string> aliases;  // other names the base answers to (--alias)
  // Named LoRA adapters (after the model: destroyed first, as they refer to it).
  AdapterRegistry adapters;
  std::unique_ptr<engine::Scheduler> scheduler;

  // Whether name picks the base: empty, the model id or an alias.
  bool is_base_name(std::string_view name) const;
};

// Serving options beyond the scheduler's.
struct BackendOptions {
  std::vector<AdapterSpec> adapters;   // --lora NAME=FILE[:SCALE], loaded at start
  std::vector<std::string> lora_dirs;  // --lora-dir: where run-time loads may read
  backend::LoraType lora_type = backend::LoraType::kF16;  // --lora-type: every adapter's factors
  std::vector<std::string> aliases;    // --alias
  model::PruneOptions prune;           // --sparsity, --moe-top-k, --moe-min-weight
  std::string sparsity_name;           // the --sparsity file, for messages
};

// Loads path and starts a scheduler over it. model_id names it in the API.
// options.n_ctx 0 means the model's training context capped at
// kDefaultMaxCtx: every slot gets the whole context and its KV cache is
// allocated up front, so the default must stay modest. Throws slm::Error
// naming what failed.
inline constexpr int64_t kDefaultMaxCtx = 8192;
// Adapters in extra that do not fit the model are an slm::Error naming them.
std::shared_ptr<Backend> load_backend(const std::string& path, const std::string& model_id,
                                      const engine::SchedulerOptions& options, Metrics* metrics,
                                      const BackendOptions& extra = {});

class Server {
 public:
  // Throws slm::Error when the options are unsafe: a non-loopback host
  // without an API key (unless allow_insecure).
  Server(ServerOptions options, bool allow_insecure);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and serves on a background thread. Throws slm::Error when the
  // address cannot be bound. Returns the port (useful with port 0).
  int start();
  void set_backend(std::shared_ptr<Backend> backend);
  // Stops accepting; connections end at their next write. Safe from any
  // thread (a signal-watching one) and idempotent.
  void stop();
  // Blocks until the listener has stopped; call from the thread that started it.
  void wait();
  int port() const { return port_; }
  Metrics& metrics() { return *metrics_; }

 private:
  struct Impl;
  // metrics_ outlives impl_: the backend's scheduler thread reports to it
  // until the scheduler is destroyed with impl_.
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);

// The server's log: one line on stdout (the one stream of everything slm serve
// reports while running), "2026-11-30T17:55:01Z slm serve: " first, flushed.
// Thread-safe (one write per line).
void log_line(const std::string& s);

}  // namespace slm::server
