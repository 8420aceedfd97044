// One forward step that decodes a token for each of several sessions, for the
// model tests that compare a batched decoding step with each sequence's own
// (test_batched_decode, test_sparsity).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/thread_pool.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/session.h"

namespace slm::test {

// Feeds next[i] to sessions[i], every i, in one forward step through scratch
// (room for sessions.size() rows); returns each session's logits for its next
// token, [sessions.size()][n_vocab].
inline std::vector<std::vector<float>> decode_step(const model::Model& m,
                                                   std::span<model::Session* const> sessions,
                                                   std::span<const int32_t> next,
                                                   model::Scratch& scratch, ThreadPool& pool) {
  const size_t n_vocab = static_cast<size_t>(m.config().n_vocab);
  std::vector<std::vector<float>> logits(sessions.size(), std::vector<float>(n_vocab));
  std::vector<model::SeqChunk> chunks;
  for (size_t i = 0; i < sessions.size(); ++i)
    chunks.push_back({sessions[i], next.subspan(i, 1), logits[i].data()});
  model::forward(m, chunks, scratch, pool);
  return logits;
}

}  // namespace slm::test
