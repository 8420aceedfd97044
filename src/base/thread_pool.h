// A fixed pool of worker threads created once; parallel_for hands out task
// indices with an atomic counter so no thread is created per operation.
//
// Decoding one token runs ~170 parallel_for calls of tens of microseconds
// each, so waking workers through a condition variable per call (~10-50 us on
// Linux) would cost as much as the work. Workers therefore spin on a
// generation counter (with a pause hint, then yielding) for a bounded time
// after each job, and only then sleep on the condition variable; a caller
// notifies the condition variable only when some worker is asleep.
// The caller waits for the job's tasks, never for the workers: a worker the
// OS has descheduled (a busy machine) simply takes no task of that job.
//
// Thread-safety: one caller at a time runs parallel_for (the pool belongs to a
// sequence or batch, style.md §2).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace slm {

class ThreadPool {
 public:
  // n_threads counts the calling thread: ThreadPool(1) runs everything inline.
  explicit ThreadPool(int n_threads);
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool();

  int size() const { return n_threads_; }

  // Runs fn(task, thread) for task in [0, n_tasks); thread in [0, size()).
  // Returns when every task is done. fn must not throw.
  void parallel_for(int64_t n_tasks, const std::function<void(int64_t, int)>& fn);

  // How long an idle worker keeps spinning before it sleeps (microseconds).
  static constexpr int64_t kSpinMicros = 2000;

 private:
  using Fn = std::function<void(int64_t, int)>;
  // Tasks of one job: at most 2^24 - 1 (larger counts run as several jobs).
  static constexpr int kTaskBits = 24;

  void worker(int thread_index);
  // Claims and runs tasks of the job tagged tag until none is left.
  void run_tasks(uint32_t tag, int thread_index);
  void run_job(int64_t n_tasks, const Fn& fn);

  int n_threads_;
  std::vector<std::thread> workers_;
  // The current job in one word, [tag:16][n_tasks:24][next task:24]: a
  // claim is a compare-exchange on it, so a late worker can never take a
  // task of a finished job (its tag no longer matches).
  std::atomic<uint64_t> state_{0};
  uint32_t tag_ = 0;                     // caller side: tag of the last job
  std::atomic<const Fn*> jobs_[2] = {};  // the job of tag t in jobs_[t & 1]
  std::atomic<int64_t> done_{0};         // tasks of the current job finished
  // Bumped once per job (and at shutdown); idle workers wait for it to change.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleeping_{0};  // workers blocked on wake_
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
};

}  // namespace slm
