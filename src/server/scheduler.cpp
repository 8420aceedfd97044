#include "server/scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <span>

#include "base/thread_pool.h"
#include "engine/stop.h"
#include "model/model.h"
#include "model/session.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

namespace slm::server {
namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

size_t common_prefix(std::span<const int32_t> a, std::span<const int32_t> b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

// Natural-log probability of id under softmax(logits) and the k most likely
// tokens (ties to the lower id, so the list is deterministic).
TokenLogprob logprob_of(std::span<const float> logits, int32_t id, int k,
                        std::vector<int32_t>& order) {
  float mx = -std::numeric_limits<float>::infinity();
  for (const float l : logits) mx = std::max(mx, l);
  double sum = 0;
  for (const float l : logits) sum += std::exp(static_cast<double>(l - mx));
  const double lse = static_cast<double>(mx) + std::log(sum);
  TokenLogprob out;
  out.id = id;
  out.logprob = static_cast<float>(logits[static_cast<size_t>(id)] - lse);
  if (k > 0) {
    order.resize(logits.size());
    std::iota(order.begin(), order.end(), 0);
    const size_t m = std::min(order.size(), static_cast<size_t>(k));
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(m), order.end(),
                      [&](int32_t a, int32_t b) {
                        const float la = logits[static_cast<size_t>(a)],
                                    lb = logits[static_cast<size_t>(b)];
                        return la > lb || (la == lb && a < b);
                      });
    for (size_t i = 0; i < m; ++i)
      out.top.emplace_back(order[i],
                           static_cast<float>(logits[static_cast<size_t>(order[i])] - lse));
  }
  return out;
}

}  // namespace

const char* finish_name(Finish f) {
  switch (f) {
    case Finish::kStop:
      return "stop";
    case Finish::kLength:
      return "length";
    case Finish::kCancelled:
      return "cancelled";
    case Finish::kError:
      return "error";
  }
  return "stop";
}

void JobUpdate::merge(JobUpdate&& later) {
  text += later.text;
  logprobs.insert(logprobs.end(), std::make_move_iterator(later.logprobs.begin()),
                  std::make_move_iterator(later.logprobs.end()));
  done = later.done;
  finish = later.finish;
  if (!later.error.empty()) error = std::move(later.error);
  error_status = later.error_status;
  n_prompt = later.n_prompt;
  n_cached = later.n_cached;
  n_generated = later.n_generated;
}

bool Job::take(JobUpdate& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!cv_.wait_for(lock, timeout, [&] { return has_news_; })) return false;
  out = std::move(pending_);
  pending_ = JobUpdate{};
  has_news_ = false;
  return true;
}

void Job::publish(JobUpdate&& update) {
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

struct Scheduler::Slot {
  std::unique_ptr<model::Session> session;
  // The sequence: prompt, then generated tokens. The first session->n_past()
  // of them are in the KV cache; while generating, the last one is the token
  // sampled but not fed yet. Kept after the job ends for prefix reuse.
  std::vector<int32_t> tokens;
  std::shared_ptr<Job> job;  // null: free
  size_t n_prompt = 0;
  int64_t n_cached = 0;
  int64_t n_generated = 0;
  std::vector<float> logits;  // [n_vocab]
  std::unique_ptr<tokenizer::StreamDecoder> decoder;
  engine::StopMatcher stop;
  uint64_t order = 0;  // admission tick: FIFO prefill order and least-recently-used choice
  bool got_first_token = false;
  Clock::time_point last_token_time;

  bool busy() const { return job != nullptr; }
  bool prefilling() const { return static_cast<size_t>(session->n_past()) < n_prompt; }
  std::span<const int32_t> cached() const {
    return std::span<const int32_t>(tokens).first(static_cast<size_t>(session->n_past()));
  }
};

struct Scheduler::Runtime {
  Runtime(int n_threads, const model::ModelConfig& config, int64_t max_rows)
      : pool(n_threads), scratch(config, max_rows) {}
  ThreadPool pool;
  model::Scratch scratch;
  std::vector<model::SeqChunk> chunks;
  std::vector<Slot*> chunk_slots;
  std::vector<Slot*> order;
  std::vector<int32_t> top_order;  // logprobs sort buffer [n_vocab]
};

Scheduler::Scheduler(const model::Model& model, const tokenizer::Tokenizer& tokenizer,
                     const SchedulerOptions& options, Metrics* metrics)
    : model_(model), tokenizer_(tokenizer), options_(options), metrics_(metrics) {
  if (options.n_slots < 1 || options.n_slots > 256)
    throw Error("--parallel must be between 1 and 256");
  if (options.n_threads < 1 || options.n_threads > 1024)
    throw Error("--threads must be between 1 and 1024");
  if (options.prefill_chunk < 1 || options.prefill_chunk > 8192)
    throw Error("the prefill chunk must be between 1 and 8192 tokens");
  if (options.max_queue < 0) throw Error("the queue length cannot be negative");
  const model::ModelConfig& c = model.config();
  if (tokenizer.n_vocab() > c.n_vocab)
    throw Error("the tokenizer has " + std::to_string(tokenizer.n_vocab()) +
                " tokens but the model only " + std::to_string(c.n_vocab));
  model::SessionOptions so;
  so.n_ctx = options.n_ctx;
  so.n_batch = options.prefill_chunk;
  so.allow_beyond_train_ctx = options.allow_beyond_train_ctx;
  for (int i = 0; i < options.n_slots; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->session = std::make_unique<model::Session>(model, so);
    slot->logits.assign(static_cast<size_t>(c.n_vocab), 0.0f);
    slots_.push_back(std::move(slot));
  }
  n_ctx_ = slots_.front()->session->n_ctx();
  rt_ = std::make_unique<Runtime>(options.n_threads, c, options.n_slots + options.prefill_chunk);
  thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  for (auto& slot : slots_)
    if (slot->busy()) finish(*slot, Finish::kError, {}, "the server is shutting down", 503);
  for (auto& job : queue_) {
    JobUpdate u;
    u.done = true;
    u.finish = Finish::kError;
    u.error = "the server is shutting down";
    u.error_status = 503;
    job->publish(std::move(u));
  }
}

int64_t Scheduler::n_vocab() const {
  return model_.config().n_vocab;
}

int64_t Scheduler::kv_bytes() const {
  const model::ModelConfig& c = model_.config();
  return 2 * c.n_layer * n_ctx_ * c.kv_dim() * static_cast<int64_t>(sizeof(float)) *
         options_.n_slots;
}

std::shared_ptr<Job> Scheduler::submit(JobRequest request) {
  const int64_t n_prompt = static_cast<int64_t>(request.prompt.size());
  if (n_prompt == 0) throw Error("the prompt is empty");
  for (const int32_t id : request.prompt)
    if (id < 0 || id >= n_vocab())
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
  if (request.max_tokens < 1) throw Error("max_tokens must be at least 1");
  if (n_prompt > n_ctx_ - 1 || request.max_tokens > n_ctx_ - n_prompt)
    throw Error("the prompt (" + std::to_string(n_prompt) + " tokens) plus max_tokens (" +
                std::to_string(request.max_tokens) + ") does not fit the context of " +
                std::to_string(n_ctx_) + " tokens");
  if (request.top_logprobs > 20) throw Error("top_logprobs must be at most 20");
  auto job = std::make_shared<Job>();
  job->sampler_ = std::make_unique<engine::Sampler>(request.sampling, n_vocab());
  job->request_ = std::move(request);
  job->submitted_ = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_) throw Error("the server is shutting down");
    const int64_t free_slots = options_.n_slots - active_.load();
    if (static_cast<int64_t>(queue_.size()) >=
        options_.max_queue + std::max<int64_t>(0, free_slots))
      throw QueueFullError("the server is busy: " + std::to_string(queue_.size()) +
                           " requests are waiting");
    queue_.push_back(job);
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
  s.n_ctx = n_ctx_;
  s.kv_active_tokens = kv_active_.load();
  s.kv_cached_tokens = kv_cached_.load();
  return s;
}

void Scheduler::run() {
  for (;;) {
    std::vector<std::shared_ptr<Job>> admitted;
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
    for (auto& job : admitted) {
      try {
        admit(job);
      } catch (const std::exception& e) {
        // Not expected (every request was validated); fail it, not the server.
        JobUpdate u;
        u.done = true;
        u.finish = Finish::kError;
        u.error = std::string("internal error: ") + e.what();
        --active_;
        job->publish(std::move(u));
      }
    }
    if (active_.load() == 0) continue;
    try {
      step();
    } catch (const std::exception& e) {
      // Whatever went wrong, the running sequences' caches cannot be trusted.
      for (auto& s : slots_) {
        if (!s->busy()) continue;
        s->session->reset();
        finish(*s, Finish::kError, {}, std::string("internal error: ") + e.what());
      }
    }
  }
}

void Scheduler::expire_queued() {
  const auto now = Clock::now();
  for (auto it = queue_.begin(); it != queue_.end();) {
    Job& job = **it;
    const bool expired = now >= job.request_.deadline;
    if (!expired && !job.cancelled()) {
      ++it;
      continue;
    }
    JobUpdate u;
    u.done = true;
    u.n_prompt = static_cast<int64_t>(job.request_.prompt.size());
    if (expired) {
      u.finish = Finish::kError;
      u.error = "timed out waiting for a free slot";
      u.error_status = 503;
    } else {
      u.finish = Finish::kCancelled;
    }
    job.publish(std::move(u));
    it = queue_.erase(it);
  }
}

void Scheduler::admit(const std::shared_ptr<Job>& job) {
  const std::vector<int32_t>& prompt = job->request_.prompt;
  // The free slot whose cache shares the longest prefix with the prompt; among
  // equals the least recently used, so popular prefixes stay cached longest.
  Slot* best = nullptr;
  size_t best_cp = 0;
  for (auto& s : slots_) {
    if (s->busy()) continue;
    const size_t cp = common_prefix(s->cached(), prompt);
    if (best == nullptr || cp > best_cp || (cp == best_cp && s->order < best->order)) {
      best = s.get();
      best_cp = cp;
    }
  }
  // A longer shared prefix in another slot (running or idle) is copied over:
  // copying cache rows is far cheaper than recomputing them.
  Slot* donor = nullptr;
  size_t donor_cp = best_cp;
  for (auto& s : slots_) {
    if (s.get() == best) continue;
    const size_t cp = common_prefix(s->cached(), prompt);
    if (cp > donor_cp) {
      donor = s.get();
      donor_cp = cp;
    }
  }
  // At least one prompt token is always fed, to get logits for the first choice.
  const size_t limit = prompt.size() - 1;
  size_t reuse = std::min(best_cp, limit);
  if (donor != nullptr && std::min(donor_cp, limit) > reuse) {
    reuse = std::min(donor_cp, limit);
    best->session->copy_prefix(*donor->session, static_cast<int64_t>(reuse));
  } else {
    best->session->truncate(static_cast<int64_t>(reuse));
  }

  Slot& slot = *best;
  const JobRequest& req = job->request_;
  slot.tokens = prompt;
  slot.n_prompt = prompt.size();
  slot.n_cached = static_cast<int64_t>(reuse);
  slot.n_generated = 0;
  tokenizer::DecodeOptions dopt;
  dopt.render_special = false;
  dopt.strip_space_prefix = req.strip_leading_space;
  slot.decoder = std::make_unique<tokenizer::StreamDecoder>(tokenizer_, dopt);
  slot.stop = engine::StopMatcher(req.stops);
  slot.order = ++tick_;
  slot.got_first_token = false;
  slot.job = job;
  if (metrics_) metrics_->on_prompt(static_cast<int64_t>(slot.n_prompt), slot.n_cached);
}

void Scheduler::finish(Slot& slot, Finish why, std::string text, std::string error,
                       int error_status) {
  JobUpdate u;
  u.text = std::move(text);
  if (why == Finish::kStop || why == Finish::kLength) {
    // Release what the decoder and stop matcher still hold back.
    const std::string held = slot.decoder->flush();
    u.text += slot.stop.feed(held);
    u.text += slot.stop.finish();
  }
  u.done = true;
  u.finish = why;
  u.error = std::move(error);
  u.error_status = error_status;
  u.n_prompt = static_cast<int64_t>(slot.n_prompt);
  u.n_cached = slot.n_cached;
  u.n_generated = slot.n_generated;
  // Free the slot before telling the client, so a client that sees the end
  // also sees the slot free. What stays in the cache is reusable history.
  const std::shared_ptr<Job> job = std::move(slot.job);
  slot.tokens.resize(static_cast<size_t>(slot.session->n_past()));
  --active_;
  job->publish(std::move(u));
}

void Scheduler::step() {
  Runtime& rt = *rt_;
  const auto now = Clock::now();
  for (auto& s : slots_) {
    if (!s->busy()) continue;
    if (s->job->cancelled())
      finish(*s, Finish::kCancelled);
    else if (now >= s->job->request_.deadline)
      finish(*s, s->prefilling() ? Finish::kError : Finish::kLength, {},
             s->prefilling() ? "timed out before the prompt was processed" : "", 503);
  }

  // Decoding rows first, so running streams never wait behind a long prompt;
  // the prompt budget then goes to waiting prompts in arrival order.
  rt.chunks.clear();
  rt.chunk_slots.clear();
  rt.order.clear();
  for (auto& s : slots_) {
    if (!s->busy()) continue;
    if (s->prefilling()) {
      rt.order.push_back(s.get());
    } else {
      rt.chunks.push_back({s->session.get(), std::span<const int32_t>(&s->tokens.back(), 1),
                           s->logits.data(), false});
      rt.chunk_slots.push_back(s.get());
    }
  }
  std::sort(rt.order.begin(), rt.order.end(),
            [](const Slot* a, const Slot* b) { return a->order < b->order; });
  int64_t budget = options_.prefill_chunk;
  for (Slot* s : rt.order) {
    if (budget <= 0) break;
    const int64_t past = s->session->n_past();
    const int64_t n = std::min<int64_t>(budget, static_cast<int64_t>(s->n_prompt) - past);
    const bool last = past + n == static_cast<int64_t>(s->n_prompt);
    rt.chunks.push_back({s->session.get(),
                         std::span<const int32_t>(s->tokens).subspan(static_cast<size_t>(past),
                                                                     static_cast<size_t>(n)),
                         last ? s->logits.data() : nullptr, false});
    rt.chunk_slots.push_back(s);
    budget -= n;
  }

  if (!rt.chunks.empty()) {
    const auto t0 = Clock::now();
    try {
      model::forward(model_, rt.chunks, rt.scratch, rt.pool);
    } catch (const std::exception& e) {
      // A failed step leaves the caches of its sequences undefined: drop them.
      for (Slot* s : rt.chunk_slots) {
        s->session->reset();
        finish(*s, Finish::kError, {}, std::string("internal error: ") + e.what());
      }
      return;
    }
    int64_t n_sampled = 0;
    for (size_t i = 0; i < rt.chunks.size(); ++i) {
      if (rt.chunks[i].logits == nullptr) continue;
      sample(*rt.chunk_slots[i]);
      ++n_sampled;
    }
    if (metrics_) metrics_->on_step(seconds(t0, Clock::now()), n_sampled);
  }

  int64_t kv_active = 0, kv_cached = 0;
  for (auto& s : slots_) (s->busy() ? kv_active : kv_cached) += s->session->n_past();
  kv_active_.store(kv_active);
  kv_cached_.store(kv_cached);
}

void Scheduler::sample(Slot& slot) {
  Job& job = *slot.job;
  const JobRequest& req = job.request_;
  const std::span<const float> logits(slot.logits);
  int32_t id = 0;
  try {
    id = job.sampler_->sample(logits, slot.tokens);
  } catch (const std::exception& e) {
    finish(slot, Finish::kError, {}, std::string("sampling failed: ") + e.what());
    return;
  }
  const auto now = Clock::now();
  if (metrics_) {
    if (!slot.got_first_token)
      metrics_->on_first_token(seconds(job.submitted_, now));
    else
      metrics_->on_token_interval(seconds(slot.last_token_time, now));
  }
  slot.got_first_token = true;
  slot.last_token_time = now;

  JobUpdate u;
  if (req.top_logprobs >= 0)
    u.logprobs.push_back(logprob_of(logits, id, req.top_logprobs, rt_->top_order));
  if (tokenizer_.is_eog(id)) {
    publish_and_finish(slot, std::move(u), Finish::kStop);
    return;
  }
  ++slot.n_generated;
  slot.tokens.push_back(id);
  const std::string piece = slot.decoder->push(id);
  u.text = std::string(slot.stop.feed(piece));
  // The next step feeds this token, which needs one more position.
  const bool no_room = slot.session->n_past() + 1 > n_ctx_;
  if (slot.stop.stopped()) {
    publish_and_finish(slot, std::move(u), Finish::kStop);
  } else if (slot.n_generated >= req.max_tokens || no_room) {
    publish_and_finish(slot, std::move(u), Finish::kLength);
  } else {
    u.n_prompt = static_cast<int64_t>(slot.n_prompt);
    u.n_cached = slot.n_cached;
    u.n_generated = slot.n_generated;
    job.publish(std::move(u));
  }
}

void Scheduler::publish_and_finish(Slot& slot, JobUpdate&& u, Finish why) {
  // Logprobs of the last token travel in their own update just before the end.
  if (!u.logprobs.empty()) {
    JobUpdate head;
    head.logprobs = std::move(u.logprobs);
    head.n_prompt = static_cast<int64_t>(slot.n_prompt);
    head.n_cached = slot.n_cached;
    head.n_generated = slot.n_generated;
    slot.job->publish(std::move(head));
  }
  finish(slot, why, std::move(u.text));
}

}  // namespace slm::server
