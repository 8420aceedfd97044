// Batched decoding on the packed K-quant path: sequences decoded together in
// one step (every matrix multiplies 2..11 rows, so the packed tiles take
// several tokens a call, in passes of 8 and tails) get each the logits, bit
// for bit, of the same sequence decoded alone (one row a call), on every ISA.
// The quantized fixture models' matrices are all of their type (n_embd 256,
// n_ff 768: whole super-blocks), so the Q5_K model runs the Q5_K tiles.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "common/fixtures.h"
#include "kernels/kernels.h"
#include "model/decode_step.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/session.h"

namespace slm::model {
namespace {

constexpr int kSeqs = 11;  // one pass of 8 rows and a tail of 3
constexpr int kSteps = 4;

// Prompt and forced continuation of sequence i (ids below the vocabulary).
std::vector<int32_t> tokens_of(int i, int n) {
  std::vector<int32_t> t;
  for (int k = 0; k < n; ++k) t.push_back(1 + (37 * i + 11 * k * k + 5 * k) % 1000);
  return t;
}

class BatchedDecode : public ::testing::TestWithParam<const char*> {};

TEST_P(BatchedDecode, EachSequenceEqualsItselfAlone) {
  const std::string rel = std::string("models/small-llama-") + GetParam() + ".gguf";
  SLM_REQUIRE_FIXTURE(rel);
  const kernels::Isa before = kernels::active_isa();
  ThreadPool pool(2);
  SessionOptions so;
  so.n_ctx = 64;
  for (kernels::Isa isa : kernels::available_isas()) {
    SCOPED_TRACE(std::string(kernels::isa_name(isa)));
    ASSERT_TRUE(kernels::set_active_isa(isa));
    // Loaded under the ISA: it decides whether the weights are packed.
    const auto model = Model::load(test::fixture(rel));
    // Packed where the ISA has a tile for the type (the case this covers).
    EXPECT_EQ(model->packed_bytes() > 0, kernels::PackedMatrix::pays(*dtype_from_name(GetParam())));
    std::vector<std::vector<int32_t>> toks;
    for (int i = 0; i < kSeqs; ++i) toks.push_back(tokens_of(i, 3 + i % 4 + kSteps));

    // Alone: the prompt fed, then one decode call per step.
    std::vector<std::vector<std::vector<float>>> alone(kSeqs);
    for (int i = 0; i < kSeqs; ++i) {
      Session s(*model, so);
      const size_t n_prompt = toks[i].size() - kSteps;
      s.feed(std::span<const int32_t>(toks[i]).first(n_prompt), pool);
      for (int k = 0; k < kSteps; ++k) {
        const auto l = s.decode(toks[i][n_prompt + k], pool);
        alone[i].emplace_back(l.begin(), l.end());
      }
    }
    // Together: the same prompts, then one forward step for all sequences.
    std::vector<std::unique_ptr<Session>> sessions;
    for (int i = 0; i < kSeqs; ++i) {
      sessions.push_back(std::make_unique<Session>(*model, so));
      sessions.back()->feed(std::span<const int32_t>(toks[i]).first(toks[i].size() - kSteps), pool);
    }
    Scratch scratch(model->config(), kSeqs);
    for (int k = 0; k < kSteps; ++k) {
      // Step k batches the first 2 + 3k sequences (capped), so the row count
      // changes from step to step; the others wait.
      const int n = std::min(kSeqs, 2 + 3 * k + (k == kSteps - 1 ? kSeqs : 0));
      std::vector<Session*> batch;
      std::vector<int32_t> next;
      for (int i = 0; i < n; ++i) {
        batch.push_back(sessions[i].get());
        next.push_back(toks[i][static_cast<size_t>(sessions[i]->n_past())]);
      }
      const std::vector<std::vector<float>> got =
          test::decode_step(*model, batch, next, scratch, pool);
      for (int i = 0; i < n; ++i) {
        const size_t step = toks[i].size() - kSteps;
        const int decoded =
            static_cast<int>(sessions[i]->n_past() - static_cast<int64_t>(step)) - 1;
        ASSERT_EQ(alone[i][decoded], got[i])
            << "sequence " << i << " step " << decoded << " rows " << n;
      }
    }
  }
  kernels::set_active_isa(before);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BatchedDecode,
                         ::testing::Values("Q5_K", "Q4_K", "Q6_K", "Q3_K", "Q2_K"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace slm::model
