// ThreadPool: every task runs exactly once, thread indices are in range, many
// back-to-back jobs (the decode pattern) and jobs after the workers went to
// sleep both complete.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "base/thread_pool.h"

namespace slm {
namespace {

void check_job(ThreadPool& pool, int64_t n_tasks) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n_tasks));
  std::atomic<bool> bad_thread{false};
  pool.parallel_for(n_tasks, [&](int64_t task, int thread) {
    hits[static_cast<size_t>(task)].fetch_add(1);
    if (thread < 0 || thread >= pool.size()) bad_thread = true;
  });
  for (int64_t i = 0; i < n_tasks; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << i;
  EXPECT_FALSE(bad_thread.load());
}

TEST(ThreadPool, EveryTaskOnce) {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1000}) check_job(pool, n);
  }
}

TEST(ThreadPool, ManyBackToBackJobs) {
  ThreadPool pool(3);
  std::atomic<int64_t> sum{0};
  for (int job = 0; job < 2000; ++job)
    pool.parallel_for(5, [&](int64_t task, int) { sum.fetch_add(task); });
  EXPECT_EQ(sum.load(), 2000 * 10);
}

TEST(ThreadPool, WakesSleepingWorkers) {
  ThreadPool pool(2);
  for (int round = 0; round < 3; ++round) {
    // Longer than the spin budget, so the worker is asleep on the next job.
    std::this_thread::sleep_for(std::chrono::microseconds(ThreadPool::kSpinMicros * 3));
    std::atomic<int> worker_ran{0};
    std::atomic<int> done{0};
    pool.parallel_for(2, [&](int64_t, int thread) {
      if (thread != 0) worker_ran = 1;
      // Keep the first task busy so the worker must take the second.
      if (done.fetch_add(1) == 0)
        while (done.load() < 2 && worker_ran.load() == 0) std::this_thread::yield();
    });
    EXPECT_EQ(done.load(), 2);
  }
}

TEST(ThreadPool, NonPositiveThreadCountRunsInline) {
  ThreadPool pool(0);
  EXPECT_EQ(pool.size(), 1);
  check_job(pool, 10);
}

}  // namespace
}  // namespace slm
