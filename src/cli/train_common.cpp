// train_common.h: shared pieces of slm finetune and slm train.
#include "cli/train_common.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <numeric>
#include <random>
#include <utility>

#include "base/error.h"
#include "train/dpo.h"

namespace slm::cli {

namespace {
// Set by SIGINT while a SigintScope lives. A signal handler can only reach a
// global.
volatile std::sig_atomic_t g_interrupted = 0;
void on_sigint(int) {
  g_interrupted = 1;
}
}  // namespace

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the file");
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

std::string clock_text(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

double eval_loss(train::Trainer& tr, const std::vector<train::Example>& data) {
  double loss = 0;
  int64_t n = 0;
  for (const train::Example& ex : data) {
    const train::LossSum l = tr.run(ex, false);
    loss += l.loss;
    n += l.n_targets;
  }
  return n > 0 ? loss / static_cast<double>(n) : 0.0;
}

std::vector<std::vector<size_t>> plan_steps(const std::vector<int64_t>& sizes, int64_t epochs,
                                            int64_t fixed_steps, int64_t batch_tokens,
                                            uint64_t seed, std::vector<int64_t>& epoch_of) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<size_t>> steps;
  for (int64_t e = 0;
       fixed_steps > 0 ? static_cast<int64_t>(steps.size()) < fixed_steps : e < epochs; ++e) {
    std::vector<size_t> order(sizes.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<size_t> cur;
    int64_t tokens = 0;
    for (const size_t i : order) {
      cur.push_back(i);
      tokens += sizes[i];
      if (tokens >= batch_tokens) {
        steps.push_back(std::move(cur));
        epoch_of.push_back(e);
        cur.clear();
        tokens = 0;
      }
    }
    if (!cur.empty()) {
      steps.push_back(std::move(cur));
      epoch_of.push_back(e);
    }
  }
  if (fixed_steps > 0) {
    steps.resize(static_cast<size_t>(fixed_steps));
    epoch_of.resize(static_cast<size_t>(fixed_steps));
  }
  return steps;
}

std::string data_hash(const std::vector<train::Example>& data,
                      const std::vector<train::PreferencePair>& pairs,
                      const std::vector<std::vector<size_t>>& steps) {
  uint64_t h = train::fnv1a(nullptr, 0);
  const auto add = [&h](const train::Example& ex) {
    const uint64_t n = ex.tokens.size();
    h = train::fnv1a(&n, sizeof n, h);
    h = train::fnv1a(ex.tokens.data(), ex.tokens.size() * sizeof(int32_t), h);
    h = train::fnv1a(ex.target.data(), ex.target.size(), h);
  };
  for (const train::Example& ex : data) add(ex);
  for (const train::PreferencePair& p : pairs) {
    add(p.chosen);
    add(p.rejected);
  }
  for (const std::vector<size_t>& st : steps) {
    const uint64_t n = st.size();
    h = train::fnv1a(&n, sizeof n, h);
    h = train::fnv1a(st.data(), st.size() * sizeof(size_t), h);
  }
  return train::hex64(h);
}

std::map<std::string, std::string> run_settings(const Args& args, int64_t steps, int64_t warmup,
                                                const std::string& data) {
  return {
      {"steps", std::to_string(steps)},
      {"lr", number_text(args.get_double("--lr"))},
      {"warmup", std::to_string(warmup)},
      {"batch-tokens", std::to_string(args.get_int("--batch-tokens"))},
      {"grad-clip", number_text(args.get_double("--grad-clip"))},
      {"weight-decay", number_text(args.get_double("--weight-decay"))},
      {"seed", std::to_string(args.get_int("--seed"))},
      {"data", data},
  };
}

SigintScope::SigintScope() {
  g_interrupted = 0;
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, &old_);
}

SigintScope::~SigintScope() {
  sigaction(SIGINT, &old_, nullptr);
}

bool SigintScope::fired() {
  return g_interrupted != 0;
}

RunCheckpoint::RunCheckpoint(std::string command, std::string path, std::string model_id,
                             std::map<std::string, std::string> settings,
                             std::vector<train::NamedSpan> state, train::AdamW& opt,
                             std::vector<int64_t> epoch_of)
    : command_(std::move(command)),
      path_(std::move(path)),
      model_id_(std::move(model_id)),
      settings_(std::move(settings)),
      state_(std::move(state)),
      opt_(opt),
      epoch_of_(std::move(epoch_of)) {}

int64_t RunCheckpoint::resume(const std::string& resume_path) {
  const uint64_t total = epoch_of_.size();
  const train::CheckpointInfo info =
      train::load_checkpoint(resume_path, model_id_, settings_, state_);
  if (info.step > total || info.adam_steps > info.step)
    throw Error(resume_path + ": step " + std::to_string(info.step) + " is past the run's " +
                std::to_string(total) + " steps");
  opt_.set_steps(static_cast<int64_t>(info.adam_steps));
  std::fprintf(stderr, "%s: resumed from %s at step %llu/%llu (epoch %llu)\n", command_.c_str(),
               resume_path.c_str(), static_cast<unsigned long long>(info.step),
               static_cast<unsigned long long>(total),
               static_cast<unsigned long long>(info.epoch + 1));
  return static_cast<int64_t>(info.step);
}

void RunCheckpoint::save(int64_t done) const {
  train::CheckpointInfo info;
  info.step = static_cast<uint64_t>(done);
  info.epoch = static_cast<size_t>(done) < epoch_of_.size()
                   ? static_cast<uint64_t>(epoch_of_[static_cast<size_t>(done)])
                   : 0;
  info.adam_steps = static_cast<uint64_t>(opt_.steps());
  info.model = model_id_;
  info.settings = settings_;
  train::save_checkpoint(path_, info, state_);
}

bool RunCheckpoint::interrupted(int64_t done) const {
  if (!SigintScope::fired()) return false;
  if (isatty(2)) std::fprintf(stderr, "\n");
  save(done);
  std::fprintf(stderr,
               "interrupted: wrote checkpoint %s at step %lld/%zu; continue with --resume %s\n",
               path_.c_str(), static_cast<long long>(done), epoch_of_.size(), path_.c_str());
  return true;
}

}  // namespace slm::cli
