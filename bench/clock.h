// Seconds for the benchmarks: wall time, or this thread's CPU time, which a
// shared machine's other load disturbs much less (a busy neighbour steals
// wall time, not the cycles this thread was given).
#pragma once

#include <chrono>
#include <ctime>

namespace slm::bench {

inline double now(bool cpu_time) {
  if (!cpu_time)
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace slm::bench
