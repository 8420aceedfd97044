// Continuous batching for the server: one scheduler thread owns every model
// Session (one per slot, each with the full --ctx-size context; the context is
// never divided between slots) and advances all running sequences together
// with model::forward, so each weight is read once per step for every user.
// Requests join and leave between steps; a new prompt is fed in chunks of at
// most prefill_chunk tokens per step so the others keep streaming; a slot
// keeps the tokens of its KV cache after a request ends so the next request
// sharing that prefix (a system prompt) skips recomputing it.
//
// Ownership: a Scheduler borrows the model and tokenizer (they must outlive
// it) and owns the sessions, the thread pool and its thread. A Job is shared
// between the scheduler and the front-end thread that submitted it.
// Thread-safety: submit(), stats() and every Job method may be called from any
// thread; everything else runs on the scheduler thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "engine/sampler.h"

namespace slm::model {
class Model;
}
namespace slm::tokenizer {
class Tokenizer;
}

namespace slm::server {

class Metrics;

enum class Finish {
  kStop,       // end-of-generation token or a stop string
  kLength,     // max_tokens, the context, or the request's time limit
  kCancelled,  // the client went away or cancelled
  kError,      // see JobUpdate::error
};
const char* finish_name(Finish f);  // "stop", "length", "cancelled", "error"

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;                           // natural log of the model's probability
  std::vector<std::pair<int32_t, float>> top;  // most likely tokens, best first
};

struct JobRequest {
  std::vector<int32_t> prompt;  // token ids, BOS included where wanted; validated by the caller
  engine::SamplerParams sampling;
  std::vector<std::string> stops;
  int64_t max_tokens = 16;  // >= 1; prompt + max_tokens must fit the context
  int top_logprobs = -1;    // < 0: no logprobs; else 0..20 alternatives per token
  // A prompt that is only BOS starts the text: drop the space SentencePiece
  // puts before its first word. Otherwise the output continues the prompt.
  bool strip_leading_space = false;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

// What a job produced since the front end last looked.
struct JobUpdate {
  std::string text;                    // whole UTF-8 characters, stop strings removed
  std::vector<TokenLogprob> logprobs;  // one per generated token (only when asked for)
  bool done = false;
  Finish finish = Finish::kStop;
  std::string error;        // with Finish::kError: a message for the client
  int error_status = 500;   // with Finish::kError: 503 when the server was busy or stopping
  int64_t n_prompt = 0;     // prompt tokens
  int64_t n_cached = 0;     // of them, reused from a KV cache instead of computed
  int64_t n_generated = 0;  // tokens generated so far

  void merge(JobUpdate&& later);
};

class Job {
 public:
  // Moves everything produced since the last call into out (replacing it).
  // Waits up to timeout when there is nothing new; returns false then.
  bool take(JobUpdate& out, std::chrono::milliseconds timeout);
  // Asks the scheduler to stop this job; its slot is freed at the next step.
  void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  friend class Scheduler;
  void publish(JobUpdate&& update);

  JobRequest request_;
  std::unique_ptr<engine::Sampler> sampler_;
  std::chrono::steady_clock::time_point submitted_;
  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  JobUpdate pending_;
  bool has_news_ = false;
};

class QueueFullError : public Error {
 public:
  using Error::Error;
};

struct SchedulerOptions {
  int n_slots = 4;              // sequences decoded together
  int64_t n_ctx = 0;            // per slot; 0: the model's training context
  int64_t prefill_chunk = 128;  // prompt tokens per step, over all sequences
  int64_t max_queue = 64;       // waiting requests beyond the slots
  int n_threads = 2;            // forward-pass threads
  bool allow_beyond_train_ctx = false;
};

struct SchedulerStats {
  int64_t queued = 0;
  int64_t active = 0;  // slots running a request
  int64_t n_slots = 0;
  int64_t n_ctx = 0;             // per slot
  int64_t kv_active_tokens = 0;  // positions held by running requests
  int64_t kv_cached_tokens = 0;  // positions kept by idle slots for prefix reuse
};

class Scheduler {
 public:
  // Allocates every slot's KV cache up front (throws slm::Error when the
  // options are invalid) and starts the scheduler thread. metrics may be null.
  Scheduler(const model::Model& model, const tokenizer::Tokenizer& tokenizer,
            const SchedulerOptions& options, Metrics* metrics = nullptr);
  ~Scheduler();  // fails what is still running and joins the thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. Throws QueueFullError when max_queue requests wait,
  // slm::Error when the request cannot run (empty prompt, bad token id, prompt
  // plus max_tokens beyond the context, invalid sampling parameters).
  std::shared_ptr<Job> submit(JobRequest request);

  SchedulerStats stats() const;
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_vocab() const;
  // Bytes of KV cache allocated for all slots.
  int64_t kv_bytes() const;

 private:
  struct Slot;
  void run();
  void admit(const std::shared_ptr<Job>& job);  // puts a dequeued job into a free slot
  void step();                                  // one batched forward pass and what follows it
  void expire_queued();                         // mutex_ held
  void finish(Slot& slot, Finish why, std::string text = {}, std::string error = {},
              int error_status = 500);
  void publish_and_finish(Slot& slot, JobUpdate&& update, Finish why);
  void sample(Slot& slot);

  const model::Model& model_;
  const tokenizer::Tokenizer& tokenizer_;
  SchedulerOptions options_;
  Metrics* metrics_;
  int64_t n_ctx_ = 0;
  std::vector<std::unique_ptr<Slot>> slots_;
  struct Runtime;
  std::unique_ptr<Runtime> rt_;  // pool, scratch, step buffers

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
  std::atomic<int64_t> active_{0};
  std::atomic<int64_t> kv_active_{0}, kv_cached_{0};
  uint64_t tick_ = 0;  // admission counter, for least-recently-used slot choice
  std::thread thread_;
};

}  // namespace slm::server
