// Continuous batching for many callers (the server): a queue of jobs and one
// scheduler thread that admits them into a BatchEngine as slots free up and
// steps it while anything runs. Requests join and leave between steps; a new
// prompt is fed in chunks so the others keep streaming; a slot keeps its KV
// cache after a request ends so the next request sharing that prefix (a system
// prompt) skips recomputing it (see batch.h).
//
// Ownership: a Scheduler borrows the model, tokenizer and observer (they must
// outlive it) and owns the thread pool, the batch engine and its thread. A Job
// is shared between the scheduler and the front-end thread that submitted it.
// Thread-safety: submit(), stats() and every Job method may be called from any
// thread; everything else runs on the scheduler thread, which is also where
// the observer is called.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "engine/batch.h"

namespace slm::engine {

class Job {
 public:
  // Moves everything produced since the last call into out (replacing it).
  // Waits up to timeout when there is nothing new; returns false then.
  bool take(Update& out, std::chrono::milliseconds timeout);
  // Asks the scheduler to stop this job; its slot is freed at the next step.
  void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  friend class Scheduler;
  void publish(Update&& update);

  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  Update pending_;
  bool has_news_ = false;
};

class QueueFullError : public Error {
 public:
  using Error::Error;
};

struct SchedulerOptions {
  int n_slots = 4;              // sequences decoded together
  int64_t n_ctx = 0;            // per slot; 0: the model's training context
  int64_t prefill_chunk = 256;  // prompt tokens per step, over all sequences (serve's default)
  int64_t max_queue = 64;       // waiting requests beyond the slots
  int n_threads = 2;            // forward-pass threads
  bool allow_beyond_train_ctx = false;
  DType kv_type = DType::F32;   // of every slot's KV cache
  int draft_max = 0;            // speculative decoding by prompt lookup (BatchOptions)
  // Drafts from this model instead (BatchOptions::draft_model); borrowed.
  const model::Model* draft_model = nullptr;
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
  // options are invalid) and starts the scheduler thread. observer may be null.
  Scheduler(const model::Model& model, const tokenizer::Tokenizer& tokenizer,
            const SchedulerOptions& options, EngineObserver* observer = nullptr);
  ~Scheduler();  // fails what is still running or queued, and joins the thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Validates and queues a request. Throws RequestError when it cannot run
  // (see Sequence), QueueFullError when max_queue requests wait, slm::Error
  // while shutting down.
  std::shared_ptr<Job> submit(Request request);

  SchedulerStats stats() const;
  int64_t n_ctx() const { return engine_.n_ctx(); }
  int64_t n_vocab() const { return engine_.n_vocab(); }
  int64_t kv_bytes() const { return engine_.kv_bytes(); }

 private:
  struct Queued {
    std::shared_ptr<Job> job;
    std::unique_ptr<Sequence> seq;
  };
  void run();
  void expire_queued();  // mutex_ held

  SchedulerOptions options_;
  ThreadPool pool_;
  BatchEngine engine_;  // driven by thread_ only

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Queued> queue_;
  bool stop_ = false;
  std::atomic<int64_t> active_{0};
  std::atomic<int64_t> kv_active_{0}, kv_cached_{0};
  std::thread thread_;
};

}  // namespace slm::engine
