// Pieces shared by `slm finetune` and `slm train`: the plan of optimizer
// steps (every shuffle drawn up front, so a step index is the whole data
// position), the hash of what the optimizer sees, eval loss, Ctrl-C handling
// and a run's checkpoints (train/checkpoint.h) with their messages.
#pragma once

#include <csignal>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cli/args.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/dpo.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace slm::cli {

std::string read_text_file(const std::string& path);
// "M:SS" of a duration in seconds.
std::string clock_text(double seconds);
// A double exactly ("%.17g"), for settings compared on resume.
std::string number_text(double v);

// Mean loss per target token over data (no gradients).
double eval_loss(train::Trainer& tr, const std::vector<train::Example>& data);

// The optimizer steps: each a run of consecutive items of a shuffled epoch
// holding at least batch_tokens of sizes (an epoch's last may hold fewer);
// `epochs` epochs, or with fixed_steps > 0 that many steps. Every shuffle is
// drawn here, from seed, before training: a step index is the whole
// data-order and RNG position a checkpoint needs. epoch_of[s]: the epoch
// (0-based) of step s.
std::vector<std::vector<size_t>> plan_steps(const std::vector<int64_t>& sizes, int64_t epochs,
                                            int64_t fixed_steps, int64_t batch_tokens,
                                            uint64_t seed, std::vector<int64_t>& epoch_of);

// A hash (16 hex digits) of what the optimizer sees: every example's tokens
// and targets, every pair's, and the planned steps.
std::string data_hash(const std::vector<train::Example>& data,
                      const std::vector<train::PreferencePair>& pairs,
                      const std::vector<std::vector<size_t>>& steps);

// The settings of the optimizer and schedule that every run's checkpoint
// records (a resume with another value is refused, naming it), from the
// options both commands share (--lr, --batch-tokens, --grad-clip,
// --weight-decay, --seed) and the run's step count, warm-up and data_hash();
// a command adds its own (method, shape, ...).
std::map<std::string, std::string> run_settings(const Args& args, int64_t steps, int64_t warmup,
                                                const std::string& data);

// Catches SIGINT while alive: the first Ctrl-C sets a flag the training loop
// polls between steps (a second one ends the process at once, SA_RESETHAND);
// the previous handler comes back on scope exit.
class SigintScope {
 public:
  SigintScope();
  ~SigintScope();
  SigintScope(const SigintScope&) = delete;
  SigintScope& operator=(const SigintScope&) = delete;
  static bool fired();

 private:
  struct sigaction old_ {};
};

// The checkpoints of one run: state (trained tensors and AdamW's moments,
// train::optimizer_spans), opt's step counter, the model identity and every
// setting that shapes the loss curve. command names the messages
// ("finetune: resumed from ...").
class RunCheckpoint {
 public:
  RunCheckpoint(std::string command, std::string path, std::string model_id,
                std::map<std::string, std::string> settings, std::vector<train::NamedSpan> state,
                train::AdamW& opt, std::vector<int64_t> epoch_of);

  // Restores state and opt from resume_path (refused, naming the difference,
  // unless model and settings match) and returns the first step to run.
  int64_t resume(const std::string& resume_path);
  // Writes the checkpoint after `done` steps (atomically).
  void save(int64_t done) const;
  // Between steps: after Ctrl-C, writes the checkpoint at `done`, says so on
  // stderr and returns true (the command then exits 130).
  bool interrupted(int64_t done) const;

 private:
  std::string command_, path_, model_id_;
  std::map<std::string, std::string> settings_;
  std::vector<train::NamedSpan> state_;
  train::AdamW& opt_;
  std::vector<int64_t> epoch_of_;
};

}  // namespace slm::cli
