#include "base/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace slm {
namespace {

// A spin-wait hint: lets the sibling hyper-thread run and saves power.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// Spins until done() holds or the spin budget runs out; returns done().
// The first iterations only pause (the common case: the next job is
// microseconds away); later ones also yield so an oversubscribed machine
// still makes progress.
template <typename Done>
bool spin_until(Done done, int64_t budget_us) {
  constexpr int kPauseOnly = 1 << 12;
  for (int i = 0; i < kPauseOnly; ++i) {
    if (done()) return true;
    cpu_relax();
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(budget_us);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    std::this_thread::yield();
    if (std::chrono::steady_clock::now() > deadline) return done();
  }
}

constexpr uint64_t kTaskMask = (uint64_t{1} << 24) - 1;
inline uint32_t tag_of(uint64_t s) {
  return static_cast<uint32_t>(s >> 48);
}
inline int64_t n_tasks_of(uint64_t s) {
  return static_cast<int64_t>((s >> 24) & kTaskMask);
}
inline int64_t next_of(uint64_t s) {
  return static_cast<int64_t>(s & kTaskMask);
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  static_assert(kTaskBits == 24, "state_ packing assumes 24-bit task fields");
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  { std::lock_guard<std::mutex> lock(mutex_); }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run_tasks(uint32_t tag, int thread_index) {
  uint64_t s = state_.load(std::memory_order_acquire);
  while (tag_of(s) == tag && next_of(s) < n_tasks_of(s)) {
    if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) {
      // Read the job only now: the claimed task keeps this job (the one
      // whose tag matched, even if the 16-bit tag has wrapped) unfinished,
      // so its slot cannot have been reused.
      const Fn* fn = jobs_[tag & 1].load(std::memory_order_acquire);
      (*fn)(next_of(s), thread_index);
      done_.fetch_add(1, std::memory_order_release);
      s = state_.load(std::memory_order_acquire);
    }
  }
}

void ThreadPool::run_job(int64_t n_tasks, const Fn& fn) {
  tag_ = (tag_ + 1) & 0xFFFF;
  jobs_[tag_ & 1].store(&fn, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  state_.store(static_cast<uint64_t>(tag_) << 48 | static_cast<uint64_t>(n_tasks) << 24);
  // seq_cst pairs with the worker's sleeping_ increment then generation_
  // load: either it sees the new generation or we see it asleep and notify.
  generation_.fetch_add(1);
  if (sleeping_.load() > 0) {
    { std::lock_guard<std::mutex> lock(mutex_); }  // a sleeper is now inside wait()
    wake_.notify_all();
  }
  run_tasks(tag_, 0);
  // Only tasks already running elsewhere remain; spin (never sleep) for them.
  auto finished = [&] { return done_.load(std::memory_order_acquire) == n_tasks; };
  while (!spin_until(finished, 1000)) {
  }
}

void ThreadPool::parallel_for(int64_t n_tasks, const Fn& fn) {
  if (n_tasks <= 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  constexpr int64_t kMaxTasks = static_cast<int64_t>(kTaskMask);
  if (n_tasks <= kMaxTasks) return run_job(n_tasks, fn);
  for (int64_t base = 0; base < n_tasks; base += kMaxTasks) {
    const Fn part = [&fn, base](int64_t task, int thread) { fn(base + task, thread); };
    run_job(std::min(kMaxTasks, n_tasks - base), part);
  }
}

void ThreadPool::worker(int thread_index) {
  uint64_t seen = 0;
  for (;;) {
    auto changed = [&] { return generation_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(changed, kSpinMicros)) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleeping_.fetch_add(1);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
      sleeping_.fetch_sub(1);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    run_tasks(tag_of(state_.load(std::memory_order_acquire)), thread_index);
  }
}

}  // namespace slm
