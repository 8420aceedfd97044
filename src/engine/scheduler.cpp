#include "engine/scheduler.h"

#include <algorithm>

namespace slm::engine {
namespace {

int checked_threads(const SchedulerOptions& o) {
  if (o.n_threads < 1 || o.n_threads > 1024) throw Error("--threads must be between 1 and 1024");
  if (o.max_queue < 0) throw Error("the queue length cannot be negative");
  return o.n_threads;
}

BatchOptions batch_options(const SchedulerOptions& o) {
  BatchOptions b;
  b.n_slots = o.n_slots;
  b.n_ctx = o.n_ctx;
  b.prefill_chunk = o.prefill_chunk;
  b.allow_beyond_train_ctx = o.allow_beyond_train_ctx;
  b.kv_type = o.kv_type;
  b.draft_max = o.draft_max;
  b.draft_model = o.draft_model;
  // Reserved up front, so touched up front: 16 fresh slots first written by
  // a burst's prompts took about 2% of those steps in page faults.
  b.prefault_kv = true;
  return b;
}

Update failed(const std::string& error, ErrorKind kind, FinishReason why = FinishReason::kError) {
  Update u;
  u.done = true;
  u.finish = why;
  u.error = error;
  u.error_kind = kind;
  return u;
}

}  // namespace

bool Job::take(Update& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!cv_.wait_for(lock, timeout, [&] { return has_news_; })) return false;
  out = std::move(pending_);
  pending_ = Update{};
  has_news_ = false;
  return true;
}

void Job::publish(Update&& update) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (has_news_)
      pending_.merge(std::move(update));
    else
      pending_ = std::move(update);
    has_news_ = true;
  }
  cv_.notify_all();
}

Scheduler::Scheduler(const model::Model& model, const tokenizer::Tokenizer& tokenizer,
                     const SchedulerOptions& options, EngineObserver* observer)
    : options_(options),
      pool_(checked_threads(options)),
      engine_(model, tokenizer, batch_options(options), pool_, observer) {
  thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  engine_.fail_all("the server is shutting down", ErrorKind::kUnavailable, false);
  for (auto& q : queue_)
    q.job->publish(failed("the server is shutting down", ErrorKind::kUnavailable));
}

std::shared_ptr<Job> Scheduler::submit(Request request) {
  auto job = std::make_shared<Job>();
  // The sink runs on the scheduler thread; a finished job leaves the active
  // count before its caller can see the end.
  auto sink = [this, job](Update&& u) {
    if (u.done) {
      // The cache counts first (the slot is already free), then the active
      // count: whoever reads stats() and sees the count drop also sees the
      // finished sequence's positions as cached, not active.
      const KvUse kv = engine_.kv_use();
      kv_active_.store(kv.active);
      kv_cached_.store(kv.cached);
      --active_;
    }
    job->publish(std::move(u));
  };
  std::unique_ptr<Sequence> seq = engine_.make_sequence(std::move(request), sink, &job->cancelled_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_) throw Error("the server is shutting down");
    const int64_t free_slots = options_.n_slots - active_.load();
    if (static_cast<int64_t>(queue_.size()) >=
        options_.max_queue + std::max<int64_t>(0, free_slots))
      throw QueueFullError("the server is busy: " + std::to_string(queue_.size()) +
                           " requests are waiting");
    queue_.push_back({job, std::move(seq)});
  }
  wake_.notify_all();
  return job;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    s.queued = static_cast<int64_t>(queue_.size());
  }
  s.active = active_.load();
  s.n_slots = options_.n_slots;
  s.n_ctx = engine_.n_ctx();
  s.kv_active_tokens = kv_active_.load();
  s.kv_cached_tokens = kv_cached_.load();
  return s;
}

void Scheduler::run() {
  for (;;) {
    std::vector<Queued> admitted;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || !queue_.empty() || active_.load() > 0; });
      if (stop_) return;
      expire_queued();
      const int64_t free_slots = options_.n_slots - active_.load();
      while (!queue_.empty() && static_cast<int64_t>(admitted.size()) < free_slots) {
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      active_ += static_cast<int64_t>(admitted.size());
    }
    // Slot choice copies KV caches: done outside the lock so submit() never waits on it.
    for (auto& q : admitted) {
      try {
        engine_.admit(std::move(q.seq));
      } catch (const std::exception& e) {
        // Not expected (every request was validated); fail it, not the server.
        --active_;
        q.job->publish(failed(std::string("internal error: ") + e.what(), ErrorKind::kInternal));
      }
    }
    if (active_.load() == 0) continue;
    try {
      engine_.step();
    } catch (const std::exception& e) {
      // Whatever went wrong, the running sequences' caches cannot be trusted.
      engine_.fail_all(std::string("internal error: ") + e.what(), ErrorKind::kInternal, true);
    }
    const KvUse kv = engine_.kv_use();
    kv_active_.store(kv.active);
    kv_cached_.store(kv.cached);
  }
}

void Scheduler::expire_queued() {
  const auto now = Clock::now();
  for (auto it = queue_.begin(); it != queue_.end();) {
    const Sequence& seq = *it->seq;
    const bool expired = seq.expired(now);
    if (!expired && !it->job->cancelled()) {
      ++it;
      continue;
    }
    Update u = expired ? failed("timed out waiting for a free slot", ErrorKind::kUnavailable)
                       : failed({}, ErrorKind::kInternal, FinishReason::kCancelled);
    u.n_prompt = static_cast<int64_t>(seq.request().prompt.tokens.size());
    it->job->publish(std::move(u));
    it = queue_.erase(it);
  }
}

}  // namespace slm::engine
