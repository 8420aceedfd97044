// Logits processors: steps that reshape one row of next-token logits before
// the sampler's filters (top-k, top-p, min-p) and its draw. A Sampler runs a
// per-sequence chain of them in order: logit bias, then the repetition /
// presence / frequency penalties, then whatever a front end appends (a grammar
// mask later) -- see Sampler::add_processor.
//
// Contract: apply() edits logits [n_vocab] in place; history holds the tokens
// of the sequence so far (prompt and generated, oldest first). A processor
// must be deterministic (same row and history, same result on every platform:
// no fused multiply-add, no libm), must not allocate (buffers are sized at
// construction), and leaves no NaN or +inf in what it touches (sanitize_logit).
// It may throw slm::Error on invalid input (a history id out of range).
//
// Ownership / thread-safety: a processor belongs to one sequence's sampler and
// is driven by one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

namespace slm::engine {

struct LogitsProcessor {
  virtual ~LogitsProcessor() = default;
  virtual void apply(std::span<float> logits, std::span<const int32_t> history) = 0;
  // Optional work that depends on the history only (not on the logits), done
  // before apply() with the same history; the batch engine runs it for the
  // sequences of one step in parallel (a grammar mask). Must not throw: a
  // failure is kept and reported by the apply() that follows.
  virtual void prepare(std::span<const int32_t> /*history*/) {}
  // True when prepare() does work worth a thread.
  virtual bool has_prepare() const { return false; }
  // When apply() with this history reads and writes only a few ids (a bias,
  // penalties over the history): appends them to ids (repeats allowed) and
  // returns true, so a greedy pick need not copy the whole row. False: any
  // id. The ids are not checked here (apply() reports a bad one).
  virtual bool few_ids(std::span<const int32_t> /*history*/, std::vector<int32_t>& /*ids*/) const {
    return false;
  }
};

// NaN would break the sampler's strict ordering and +inf would make every
// weight NaN: NaN becomes -inf (never chosen), +inf the largest float.
float sanitize_logit(float l);

// Adds a fixed bias to chosen tokens; -inf bans a token. Ids are checked by
// validate(SamplerParams) before a processor is built.
class LogitBias final : public LogitsProcessor {
 public:
  explicit LogitBias(std::map<int32_t, float> bias) : bias_(std::move(bias)) {}
  void apply(std::span<float> logits, std::span<const int32_t> history) override;
  bool few_ids(std::span<const int32_t> history, std::vector<int32_t>& ids) const override;

 private:
  std::map<int32_t, float> bias_;  // token id -> bias
};

// Repetition penalty (divides positive logits, multiplies negative ones) and
// the OpenAI presence / frequency penalties over the last window tokens of the
// history (window < 0: all of it). Each distinct token is penalised once.
class Penalties final : public LogitsProcessor {
 public:
  Penalties(float repeat, int32_t window, float presence, float frequency, int64_t n_vocab);
  void apply(std::span<float> logits, std::span<const int32_t> history) override;
  bool few_ids(std::span<const int32_t> history, std::vector<int32_t>& ids) const override;

 private:
  float repeat_, presence_, frequency_;
  int32_t window_;
  std::vector<int32_t> counts_;  // occurrences in the window [n_vocab], all-zero between calls
};

}  // namespace slm::engine
