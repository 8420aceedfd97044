// slm serve: an OpenAI-compatible HTTP server with continuous batching,
// streaming, metrics and a web chat page (src/server).
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/format.h"
#include "cli/args.h"
#include "cli/command.h"
#include "cli/common.h"
#include "cli/prune_args.h"
#include "server/auth.h"
#include "server/server.h"
#include "store/store.h"

namespace slm::cli {
namespace {

// The addresses of this machine's up, non-loopback interfaces (IPv4, plus
// IPv6 when bound to "::"), as URL hosts.
std::vector<std::string> interface_addresses(bool v6) {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || !(a->ifa_flags & IFF_UP) || (a->ifa_flags & IFF_LOOPBACK))
      continue;
    const int fam = a->ifa_addr->sa_family;
    if (fam != AF_INET && !(v6 && fam == AF_INET6)) continue;
    char host[NI_MAXHOST];
    const socklen_t len = fam == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (getnameinfo(a->ifa_addr, len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0) continue;
    std::string h = host;
    if (fam == AF_INET6) {
      if (h.rfind("fe80", 0) == 0) continue;  // link-local needs a zone; not for sharing
      h = "[" + h + "]";
    }
    if (std::find(out.begin(), out.end(), h) == out.end()) out.push_back(h);
  }
  freeifaddrs(list);
  return out;
}

Options serve_options() {
  Options o(
      "serve",
      "usage: slm serve [[--model] M] [--host 127.0.0.1] [--port 8080] [--parallel N] [options]\n"
      "  An OpenAI-compatible server: POST /v1/chat/completions, /v1/completions; GET /v1/models,\n"
      "  /health, /metrics (Prometheus), and a chat page at /.\n");
  add_model_option(o);
  o.value("--host", "H", "address to listen on (other addresses than loopback need an API key)")
      .def("127.0.0.1");
  o.value("--port", "P", "TCP port; 0 picks a free one, printed at start")
      .integer(0, 65535)
      .def("8080");
  o.value("--parallel", "N", "requests decoded together, each with the full context")
      .integer(1, 256)
      .def("4")
      .alias("-np");
  o.value("--ctx-size,-c", "N", "context of every request in tokens; 0: the model's, at most 8192")
      .integer(0, int64_t{1} << 24)
      .def("0");
  o.flag("--allow-long-context", "permit --ctx-size beyond the model's training context");
  add_kv_type_option(o);
  add_draft_options(o);
  add_prune_options(o);
  add_threads_option(o, "threads for the forward pass");
  o.value("--api-key", "K", "require 'Authorization: Bearer K' on /v1/* and /metrics");
  o.value("--api-key-file", "F",
          "the same, with the key read from F's first line (keeps it out of ps)");
  o.value("--max-queue", "N", "requests that may wait for a slot before 429")
      .integer(0, 100000)
      .def("64");
  o.value("--timeout", "S", "limit on one request's queue wait plus generation, in seconds")
      .integer(1, 86400)
      .def("600");
  o.value("--prefill-chunk", "N", "prompt tokens processed per batched step")
      .integer(1, 8192)
      .def("256");
  o.value("--cost-per-hour", "USD", "machine cost per hour, for cost-per-token estimates")
      .number(0, 1e6)
      .def("0");
  o.value("--watts", "W", "power draw, for energy-per-token estimates").number(0, 1e7).def("0");
  o.flag("--log-prompts", "log prompt text (never logged otherwise)");
  o.value(
       "--lora", "NAME=F[:S]",
       "serve LoRA adapter F (llama.cpp GGUF layout, scale S) as model NAME, in the same batches")
      .repeatable();
  o.value("--lora-dir", "D", "allow POST /v1/adapters {name, path, scale} to load files inside D")
      .repeatable();
  add_lora_type_option(o);
  o.value("--alias", "A", "another name the base model answers to").repeatable();
  // Server-wide defaults for what a request leaves out (an explicit field wins).
  o.value("--n-predict,-n", "N",
          "tokens per answer when a request sets no max_tokens; 0: all that fits in the context")
      .integer(0, int64_t{1} << 24)
      .def("0")
      .alias("--max-tokens");
  o.value("--temp", "T", "temperature when a request sets none").number(0, 2).def_note("1, as OpenAI's");
  o.value("--system", "TEXT", "system message put first in chats that have none");
  o.flag("--insecure-no-auth", "allow a non-loopback address without an API key");
  return o;
}

int run_serve(int argc, char** argv) {
  const Args args = serve_options().parse(argc, argv);
  const std::optional<std::string> model_spec = model_argument(args, 0).spec;

  server::ServerOptions so;
  so.host = *args.get("--host");
  so.port = static_cast<int>(args.get_int("--port"));
  so.n_slots = static_cast<int>(args.get_int("--parallel"));
  so.max_queue = args.get_int("--max-queue");
  so.request_timeout_s = static_cast<int>(args.get_int("--timeout"));
  so.log_prompts = args.flag("--log-prompts");
  so.cost_per_hour = args.get_double("--cost-per-hour");
  so.watts = args.get_double("--watts");
  so.request_defaults.max_tokens = args.get_int("--n-predict");
  if (args.has("--temp"))
    so.request_defaults.temperature = static_cast<float>(args.get_double("--temp"));
  so.request_defaults.system = args.get("--system").value_or("");
  if (args.has("--api-key") && args.has("--api-key-file"))
    throw UsageError("give --api-key or --api-key-file, not both");
  if (const auto k = args.get("--api-key")) {
    if (k->empty()) throw Error("--api-key is empty");
    so.api_key = *k;
  } else if (const auto f = args.get("--api-key-file")) {
    so.api_key = server::read_key_file(*f);
  }

  engine::SchedulerOptions sched;
  sched.n_slots = so.n_slots;
  sched.max_queue = so.max_queue;
  sched.n_threads = thread_count(args);
  sched.prefill_chunk = args.get_int("--prefill-chunk");
  sched.allow_beyond_train_ctx = args.flag("--allow-long-context");
  sched.kv_type = kv_type_option(args);
  sched.draft_max = draft_option(args);
  // Declared before the server and the backend, so it outlives their scheduler.
  const std::unique_ptr<model::Model> draft_model = load_draft_model(args);
  sched.draft_model = draft_model.get();
  const int64_t ctx_arg = args.get_int("--ctx-size");

  server::BackendOptions extra;
  for (const std::string& a : args.get_all("--lora"))
    extra.adapters.push_back(server::parse_adapter_spec(a));
  extra.lora_dirs = args.get_all("--lora-dir");
  extra.lora_type = lora_type_option(args);
  extra.prune = prune_options(args);
  extra.sparsity_name = args.get("--sparsity").value_or("");
  for (const std::string& a : args.get_all("--alias")) {
    if (a.empty()) throw UsageError(args.shown("--alias") + " must not be empty");
    extra.aliases.push_back(a);
  }

  const store::ResolvedModel resolved = store::resolve_model(model_spec);
  std::string model_id = resolved.name;
  if (model_id.empty()) {
    model_id = std::filesystem::path(resolved.path).filename().string();
    if (model_id.size() > 5 && model_id.ends_with(".gguf")) model_id.resize(model_id.size() - 5);
  }

  // Signals go to one watcher thread (blocked everywhere else, including the
  // threads started below), which stops the server cleanly. A client that
  // vanishes must never kill the process through SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  server::Server srv(so, args.flag("--insecure-no-auth"));
  std::atomic<bool> interrupted{false};  // set by the signal watcher
  const int port = srv.start();
  std::atomic<bool> watcher_done{false};
  std::thread watcher([&] {
    const timespec tick{0, 200 * 1000 * 1000};
    while (!watcher_done.load()) {
      if (sigtimedwait(&sigs, nullptr, &tick) > 0) {
        interrupted.store(true);
        server::log_line("stopping");
        srv.stop();
        return;
      }
    }
  });
  struct Joiner {
    std::atomic<bool>& done;
    std::thread& t;
    ~Joiner() {
      done.store(true);
      t.join();
    }
  } joiner{watcher_done, watcher};

  // The listener is up before the model loads, so /health can answer "loading".
  const std::string host_shown =
      so.host.find(':') != std::string::npos ? "[" + so.host + "]" : so.host;
  server::log_line("listening on http://" + host_shown + ":" + std::to_string(port) + " (loading " +
                   resolved.path + ")");
  // Bound to every interface: the addresses a colleague can actually open.
  if (so.host == "0.0.0.0" || so.host == "::")
    for (const std::string& ip : interface_addresses(so.host == "::"))
      server::log_line("reachable at http://" + ip + ":" + std::to_string(port) + "/");

  std::shared_ptr<server::Backend> backend;
  try {
    sched.n_ctx = ctx_arg;
    backend = server::load_backend(resolved.path, model_id, sched, &srv.metrics(), extra);
  } catch (...) {
    srv.stop();
    srv.wait();
    throw;
  }
  if (interrupted.load()) {
    srv.wait();
    return 130;
  }
  const engine::Scheduler& s = *backend->scheduler;
  char ready[256];
  std::snprintf(ready, sizeof ready, "ready: model %s, %d slots x %lld tokens of context, KV cache %s (%s), %d threads%s",
                model_id.c_str(), so.n_slots, static_cast<long long>(s.n_ctx()),
                human_bytes(static_cast<double>(s.kv_bytes())).c_str(),
                std::string(dtype_name(sched.kv_type)).c_str(), sched.n_threads,
                so.api_key.empty() ? "" : ", API key required");
  std::vector<std::string> notes;
  if (backend->template_is_fallback)
    notes.push_back("the model has no chat template; chat requests use ChatML");
  for (const auto& e : backend->adapters.list())
    notes.push_back("adapter " + e->name + ": " + e->path + " (scale " + std::to_string(e->scale) +
                    ", " + std::to_string(e->adapter->n_matrices()) + " matrices, rank " +
                    std::to_string(e->adapter->max_rank()) + ")");
  // Serving first, then "ready:": a client that waits for that line (scripts,
  // the tests) must never meet "the model is still loading".
  srv.set_backend(std::move(backend));
  server::log_line(ready);
  for (const std::string& n : notes) server::log_line(n);
  srv.wait();
  return interrupted.load() ? 0 : 1;
}

SLM_COMMAND("serve", "OpenAI-compatible HTTP server with continuous batching and a web chat",
            serve_options, run_serve);

}  // namespace
}  // namespace slm::cli
