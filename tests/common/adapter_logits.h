// The logits of a short prompt with or without a LoRA adapter, and how far two
// logit vectors differ, for the adapter tests (model/test_lora, convert/test_peft).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/thread_pool.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/session.h"

namespace slm::test {

// Every position's logits ([tokens.size()][n_vocab]) of one fresh session
// (context 64, 2 threads) over tokens, on adapter (nullptr: the base).
inline std::vector<float> logits_of(const model::Model& m, const model::LoraAdapter* adapter,
                                    const std::vector<int32_t>& tokens) {
  model::SessionOptions so;
  so.n_ctx = 64;
  model::Session s(m, so);
  s.set_adapter(adapter);
  ThreadPool pool(2);
  std::vector<float> out;
  s.feed(tokens, pool, &out);
  return out;
}

// max |a - b| / max |a|.
inline double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double mx = 0, md = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    mx = std::max(mx, std::fabs(static_cast<double>(a[i])));
    md = std::max(md, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return md / mx;
}

}  // namespace slm::test
