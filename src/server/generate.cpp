// The path from a completion request to its response: checks the request
// (content type, model name, fields), builds the prompt's token ids with the
// chat template or tokenizer, submits it to the engine's Scheduler and writes
// the answer, whole (respond_whole) or as server-sent events (stream). Routes,
// authentication and logging setup are in server.cpp.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "engine/prompt.h"
#include "engine/tool_calls.h"
#include "server/server_impl.h"

namespace slm::server {

using detail::Clock;
using detail::kJson;
using detail::log_line;
using detail::log_safe;
using detail::send_error;
using detail::StreamState;

namespace detail {

// State of one streamed response, shared by httplib's content provider and
// its releaser (which runs when the connection ends, finished or not).
struct StreamState {
  std::shared_ptr<Backend> backend;  // keeps the model alive while streaming
  std::shared_ptr<engine::Job> job;
  std::unique_ptr<ResponseWriter> writer;
  bool include_usage = false;
  // Tool calls parsed out of the stream (null: plain text).
  std::unique_ptr<engine::ToolCallStream> tools;
  std::shared_ptr<const ParsedRequest> request;
  int n_calls = 0;
  bool started = false;
  bool done = false;
  // Counted in Impl::open_streams from stream() until the answer has ended.
  std::atomic<int>* open_streams = nullptr;
  void end() {
    if (done) return;
    done = true;
    if (open_streams) open_streams->fetch_sub(1);
  }
  // Normally ended by the provider or the releaser; this covers a response
  // httplib dropped before either ran.
  ~StreamState() { end(); }
  Clock::time_point t0, last_write;
  std::string id;
  std::string adapter;  // its name for the metrics; "": the base
};

}  // namespace detail

namespace {

// What a request still running when the server stops gets (503 or an SSE
// error event).
ApiError shutdown_error() {
  return ApiError(503, "the server is shutting down", {}, "server_shutdown", "server_error");
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
    // OpenAI sends a call's arguments as JSON text; the templates of most
    // families read them as an object (Functionary's concatenates the text).
    if (b.tool_format != engine::ToolFormat::kFunctionary)
      for (auto& m : in.messages) {
        if (!m.contains("tool_calls") || !m["tool_calls"].is_array()) continue;
        for (auto& c : m["tool_calls"]) {
          if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) continue;
          auto& fn = c["function"];
          if (!fn.contains("arguments") || !fn["arguments"].is_string()) continue;
          auto a =
              nlohmann::ordered_json::parse(fn["arguments"].get<std::string>(), nullptr, false);
          if (!a.is_discarded() && a.is_object()) fn["arguments"] = std::move(a);
        }
      }
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

}  // namespace

void Server::Impl::generate(Endpoint endpoint, const httplib::Request& req,
                            httplib::Response& res) {
  const auto t0 = Clock::now();
  try {
    // Cross-site pages can POST text/plain (or a form) without a CORS
    // preflight; demanding JSON means a browser never sends another site's
    // request here unasked. A browser always names a type, so a request with
    // none (a script, curl -d) is read as JSON.
    const std::string ctype = lower(req.get_header_value("Content-Type"));
    if (!ctype.empty() && ctype.rfind("application/json", 0) != 0)
      throw ApiError(400, "the request needs 'Content-Type: application/json'", {},
                     "unsupported_content_type");
    const auto b = ready_backend();
    engine::Scheduler& sched = *b->scheduler;
    RequestLimits limits;
    limits.n_vocab = sched.n_vocab();
    limits.max_tokens_cap = opt.max_tokens_cap > 0 ? opt.max_tokens_cap : sched.n_ctx();
    const auto parsed = std::make_shared<const ParsedRequest>(
        parse_request(endpoint, req.body, limits, opt.request_defaults));
    const ParsedRequest& r = *parsed;
    // "model" picks the base (absent, its id or an alias) or a LoRA adapter.
    std::shared_ptr<const AdapterEntry> adapter;
    if (!b->is_base_name(r.model)) {
      adapter = b->adapters.find(r.model);
      if (!adapter)
        throw ApiError(404,
                       "the model '" + log_safe(r.model, 200) +
                           "' does not exist; this server runs '" + b->model_id +
                           "' and its adapters (GET /v1/models)",
                       "model", "model_not_found");
    }
    const std::string& model_name = adapter ? adapter->name : b->model_id;

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
    // An explicit max_tokens must fit beside the prompt; without one (or with
    // the server's -n default) the completion gets what fits, up to the cap.
    jr.max_tokens = r.max_tokens.value_or(limits.max_tokens_cap);
    jr.context = r.max_tokens && !r.max_tokens_defaulted ? engine::ContextPolicy::kRefuse
                                                         : engine::ContextPolicy::kClamp;
    jr.top_logprobs = r.logprobs ? r.top_logprobs : -1;
    jr.strip_leading_space = prompt.strip_leading_space;
    jr.deadline = Clock::now() + std::chrono::seconds(opt.request_timeout_s);
    jr.grammar = detail::request_grammar(*b, r);
    // The request holds the adapter: removing it from the registry now does
    // not end this request.
    if (adapter) jr.adapter = adapter->adapter;

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
        endpoint, model_name, r.include_usage,
        [tok](int32_t id) { return tok->token_to_piece(id, false); });
    log_line(writer->id() + ": " + std::to_string(n_prompt) + " prompt tokens, max " +
             std::to_string(std::min(r.max_tokens.value_or(limits.max_tokens_cap),
                                     r.max_tokens && !r.max_tokens_defaulted
                                         ? limits.max_tokens_cap
                                         : sched.n_ctx() - n_prompt)) +
             (r.stream ? ", streaming" : "") +
             (adapter ? ", adapter " + adapter->name : std::string()));
    if (opt.log_prompts) log_line(writer->id() + " prompt: " + log_safe(prompt.text, 1 << 20));

    if (r.stream) {
      auto st = std::make_shared<StreamState>();
      st->backend = b;
      st->job = std::move(job);
      st->include_usage = r.include_usage;
      st->request = parsed;
      if (detail::parses_tool_calls(r))
        st->tools =
            std::make_unique<engine::ToolCallStream>(b->tool_format, detail::tool_calls_forced(r));
      st->t0 = t0;
      st->last_write = Clock::now();
      st->id = writer->id();
      st->adapter = adapter ? adapter->name : std::string();
      st->writer = std::move(writer);
      stream(std::move(st), res);
    } else {
      respond_whole(*b, job, *writer, r, writer->id(), adapter ? adapter->name : std::string(), t0,
                    res);
    }
  } catch (const ApiError& e) {
    send_error(res, e);
  }
}

void Server::Impl::respond_whole(const Backend& b, const std::shared_ptr<engine::Job>& job,
                                 ResponseWriter& writer, const ParsedRequest& r,
                                 const std::string& id, const std::string& adapter,
                                 Clock::time_point t0, httplib::Response& res) {
  std::string text;
  std::vector<engine::TokenLogprob> logprobs;
  engine::Update u;
  for (;;) {
    if (stopping.load()) {
      job->cancel();
      throw shutdown_error();
    }
    if (!job->take(u, std::chrono::milliseconds(250))) continue;
    text += u.text;
    logprobs.insert(logprobs.end(), u.logprobs.begin(), u.logprobs.end());
    if (u.done) break;
  }
  metrics.on_adapter_request(adapter, u.n_generated);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  log_line(id + ": " + std::string(engine::finish_reason_name(u.finish)) + " after " +
           std::to_string(u.n_generated) + " tokens (" + std::to_string(u.n_cached) +
           " prompt tokens cached), " + std::to_string(secs) + " s");
  if (u.finish == engine::FinishReason::kError)
    throw ApiError(error_status(u), u.error, {}, {}, "server_error");
  if (u.finish == engine::FinishReason::kCancelled)
    throw ApiError(503, "the request was cancelled", {}, {}, "server_error");
  const Usage usage{u.n_prompt, u.n_cached, u.n_generated};
  std::vector<ToolCallOut> calls;
  if (detail::parses_tool_calls(r)) {
    engine::ToolParse p =
        engine::parse_tool_calls(b.tool_format, text, detail::tool_calls_forced(r));
    if (!p.calls.empty()) {
      text = std::move(p.content);
      calls = detail::api_tool_calls(b, r, std::move(p.calls));
    }
  }
  res.set_content(dump_json(writer.complete(text, u.finish, usage, logprobs, r.logprobs, calls)),
                  kJson);
}

void Server::Impl::stream(std::shared_ptr<StreamState> st, httplib::Response& res) {
  st->open_streams = &open_streams;
  open_streams.fetch_add(1);
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
        // Shutting down: the client gets an error event and the end of the
        // stream rather than a connection cut mid-answer (httplib keeps
        // calling providers until every connection thread has finished).
        if (stopping.load()) {
          st->end();
          st->job->cancel();
          const bool ok = write(sse_event(dump_json(error_json(shutdown_error()))) + sse_done());
          sink.done();
          log_line(st->id + ": ended by server shutdown");
          return ok;
        }
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
        std::string out;
        if (st->tools) {
          // Content that cannot be a call goes out now; a call's start (id and
          // name) and its arguments as the stream makes them certain.
          auto emit = [&](engine::ToolStreamOut&& p, std::span<const engine::TokenLogprob> lp) {
            out += st->writer->stream_delta(p.content, lp);
            for (const engine::ToolCallDelta& d : p.deltas) {
              if (!st->request->parallel_tool_calls && d.index > 0) break;  // as api_tool_calls
              if (!d.name.empty()) {
                out += st->writer->stream_tool_call_start(
                    d.index, detail::tool_call_id(*st->backend), d.name);
                st->n_calls = static_cast<int>(d.index) + 1;
              }
              if (!d.arguments.empty())
                out += st->writer->stream_tool_arguments(d.index, d.arguments);
            }
          };
          emit(st->tools->feed(u.text), u.logprobs);
          if (u.done) emit(st->tools->finish(), {});
        } else {
          out = st->writer->stream_delta(u.text, u.logprobs);
        }
        if (u.done) {
          st->end();
          metrics.on_adapter_request(st->adapter, u.n_generated);
          if (u.finish == engine::FinishReason::kError) {
            out += sse_event(
                dump_json(error_json(ApiError(error_status(u), u.error, {}, {}, "server_error"))));
          } else if (u.finish != engine::FinishReason::kCancelled) {
            out += st->writer->stream_finish(u.finish, st->n_calls > 0);
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
          st->end();
          st->job->cancel();
          log_line(st->id + ": client disconnected; cancelled");
        }
      });
}

}  // namespace slm::server
