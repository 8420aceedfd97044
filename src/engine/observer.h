// What the engine reports as it runs, for whoever measures it (the server's
// Prometheus metrics implement this). Every hook has an empty default.
//
// Thread-safety: hooks are called on the thread that steps the engine (the
// scheduler thread in the server); an implementation shared with other
// threads synchronises itself.
#pragma once

#include <cstdint>

namespace slm::engine {

struct EngineObserver {
  virtual ~EngineObserver() = default;
  // A request entered a slot: its prompt tokens, of which n_cached were reused.
  virtual void on_prompt(int64_t /*n_prompt*/, int64_t /*n_cached*/) {}
  // A request left the queue for a slot, seconds after its submission.
  virtual void on_admitted(double /*queue_seconds*/) {}
  // What one batched step feeds: n_sequences sequences with n_rows token rows
  // in all (decoding rows, drafts and prompt chunks).
  virtual void on_batch(int64_t /*n_sequences*/, int64_t /*n_rows*/) {}
  // From submission to a request's first sampled token.
  virtual void on_first_token(double /*seconds*/) {}
  // Between consecutive tokens of one request.
  virtual void on_token_interval(double /*seconds*/) {}
  // One batched forward step that took seconds and produced n_tokens tokens.
  virtual void on_step(double /*seconds*/, int64_t /*n_tokens*/) {}
  // Dynamic pruning (--sparsity) in one step: of total tapped projection
  // inputs, zeroed were pruned.
  virtual void on_pruned(uint64_t /*zeroed*/, uint64_t /*total*/) {}
};

}  // namespace slm::engine
