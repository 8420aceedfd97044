// Drives a BatchEngine the way the scheduler does, for the engine tests:
// each request is admitted as a slot frees up, and the engine steps until
// every request is done.
#pragma once

#include <cstddef>
#include <deque>
#include <utility>
#include <vector>

#include "engine/batch.h"

namespace slm::test {

// on_update(i, update) sees every update of requests[i], the last with done.
template <class OnUpdate>
void run_requests(engine::BatchEngine& engine, const std::vector<engine::Request>& requests,
                  OnUpdate on_update) {
  std::deque<size_t> waiting;
  for (size_t i = 0; i < requests.size(); ++i) waiting.push_back(i);
  size_t done = 0;
  while (done < requests.size()) {
    while (!waiting.empty() && engine.n_active() < engine.n_slots()) {
      const size_t i = waiting.front();
      waiting.pop_front();
      engine.admit(engine.make_sequence(requests[i], [&on_update, &done, i](engine::Update&& u) {
        const bool last = u.done;
        on_update(i, std::move(u));
        if (last) ++done;
      }));
    }
    engine.step();
  }
}

}  // namespace slm::test
