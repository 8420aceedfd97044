// slm finetune: LoRA supervised finetuning on JSONL data (train/), writing a
// llama.cpp-layout adapter that `slm run --lora` loads.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "base/error.h"
#include "base/thread_pool.h"
#include "chat/template.h"
#include "cli/args.h"
#include "cli/command.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/lora_params.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace slm::cli {
namespace {

Options finetune_options() {
  Options o("finetune",
            "usage: slm finetune [--model] BASE.gguf --data TRAIN.jsonl [--eval-data VAL.jsonl] "
            "[--method sft] "
            "-o ADAPTER.gguf\n"
            "  LoRA finetuning on the CPU. Each line of the data is {\"messages\": [...]} "
            "(rendered with the\n"
            "  model's chat template, loss on assistant turns), {\"prompt\", \"completion\"} (loss "
            "on the\n"
            "  completion) or {\"text\"} (loss on every token). Every line is checked before "
            "training.\n");
  add_model_option(o, "the base model, a GGUF file; also the first positional argument");
  o.value("--data", "F.jsonl", "training data (required)");
  o.value("--eval-data", "F.jsonl", "held-out data, evaluated every --eval-every steps");
  o.value("--out,-o", "ADAPTER.gguf", "the adapter to write (required)");
  o.value("--method", "M", "training method: sft (dpo is not implemented yet)").def("sft");
  o.value("--lora-rank", "R", "rank").integer(1, 1024).def("16");
  o.value("--lora-alpha", "A", "scale numerator: deltas are alpha / rank * B A")
      .number(0, 1e9)
      .def("32");
  o.value("--lora-targets", "L", "matrices to adapt, from q,k,v,o,gate,up,down")
      .def("q,k,v,o,gate,up,down");
  o.value("--epochs", "N", "passes over the data").integer(1, 1000000).def("1");
  o.value("--steps", "N", "optimizer steps, instead of --epochs").integer(1, int64_t{1} << 40);
  o.value("--lr", "LR", "peak learning rate").number(0, 1e9).def("2e-4");
  o.value("--warmup", "N", "linear warm-up steps, then cosine decay")
      .integer(0, int64_t{1} << 40)
      .def("0");
  o.value("--batch-tokens", "N", "tokens per optimizer step; gradients accumulate over examples")
      .integer(1, int64_t{1} << 40)
      .def("512");
  o.value("--grad-clip", "X", "global gradient-norm clip; 0: none").number(0, 1e30).def("1.0");
  o.value("--weight-decay", "X", "AdamW decoupled weight decay").number(0, 1e30).def("0");
  o.value("--seed,-s", "S", "LoRA initialisation and data order").integer(0, INT64_MAX).def("0");
  o.value("--eval-every", "N", "evaluate every N steps")
      .integer(1, int64_t{1} << 40)
      .def_note("10 times over the run");
  o.value("--ctx-size,-c", "N", "longest example in tokens")
      .integer(2, int64_t{1} << 20)
      .def_note("the model's context, at most 512");
  o.flag("--truncate", "cut longer examples instead of refusing them");
  o.value("--template-file", "F", "chat template instead of the model's");
  add_threads_option(o);
  o.flag("--json", "one JSON object per step on stdout");
  return o;
}

std::string read_text(const std::string& path) {
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

int run_finetune(int argc, char** argv) {
  const Args args = finetune_options().parse(argc, argv);
  const auto model_path = model_argument(args, 0).spec;
  const auto data_path = args.get("--data");
  const auto out_path = args.get("--out");
  if (!model_path || !data_path || !out_path)
    throw UsageError("--model, --data and -o are required");
  const std::string method = *args.get("--method");
  if (method == "dpo")
    throw UsageError(args.shown("--method") + " dpo is not implemented yet (only sft)");
  if (method != "sft") throw UsageError(args.shown("--method") + " must be sft");
  if (args.has("--epochs") && args.has("--steps"))
    throw UsageError("give --epochs or --steps, not both");
  const int64_t rank = args.get_int("--lora-rank");
  const double alpha = args.get_double("--lora-alpha");
  if (!(alpha > 0)) throw UsageError(args.shown("--lora-alpha") + " must be positive");
  std::vector<backend::Role> targets;
  try {
    targets = train::parse_targets(*args.get("--lora-targets"));
  } catch (const Error& e) {
    throw UsageError(args.shown("--lora-targets") + ": " + e.what());
  }
  const int64_t epochs = args.get_int("--epochs");
  const int64_t fixed_steps = args.has("--steps") ? args.get_int("--steps") : 0;
  const double lr = args.get_double("--lr");
  if (!(lr > 0)) throw UsageError(args.shown("--lr") + " must be positive");
  const int64_t warmup = args.get_int("--warmup");
  const int64_t batch_tokens = args.get_int("--batch-tokens");
  const double grad_clip = args.get_double("--grad-clip");
  const double weight_decay = args.get_double("--weight-decay");
  const uint64_t seed = static_cast<uint64_t>(args.get_int("--seed"));
  const int threads = thread_count(args);
  const bool json = args.flag("--json");

  const auto model = model::Model::load(*model_path);
  if (const std::string why = train::Trainer::unsupported_reason(*model); !why.empty())
    throw Error(*model_path + ": " + why);
  const model::ModelConfig& c = model->config();
  const int64_t n_ctx =
      args.has("--ctx-size") ? args.get_int("--ctx-size") : std::min<int64_t>(c.n_ctx_train, 512);
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(model->file());
  std::unique_ptr<chat::Template> tmpl;
  if (const auto tf = args.get("--template-file"))
    tmpl = std::make_unique<chat::Template>(read_text(*tf));
  else if (const auto t = model->file().get_string("tokenizer.chat_template"))
    tmpl = std::make_unique<chat::Template>(*t);
  const train::DataOptions dopt{n_ctx, args.flag("--truncate")};
  const std::vector<train::Example> data = train::load_jsonl(*data_path, tok, tmpl.get(), dopt);
  std::vector<train::Example> eval_data;
  if (const auto ep = args.get("--eval-data"))
    eval_data = train::load_jsonl(*ep, tok, tmpl.get(), dopt);

  // The optimizer steps: each a run of consecutive examples of a shuffled
  // epoch holding at least batch_tokens tokens (an epoch's last may hold fewer).
  std::mt19937_64 rng(seed);
  std::vector<std::vector<size_t>> steps;
  for (int64_t e = 0;
       fixed_steps > 0 ? static_cast<int64_t>(steps.size()) < fixed_steps : e < epochs; ++e) {
    std::vector<size_t> order(data.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<size_t> cur;
    int64_t tokens = 0;
    for (const size_t i : order) {
      cur.push_back(i);
      tokens += static_cast<int64_t>(data[i].tokens.size());
      if (tokens >= batch_tokens) {
        steps.push_back(std::move(cur));
        cur.clear();
        tokens = 0;
      }
    }
    if (!cur.empty()) steps.push_back(std::move(cur));
  }
  if (fixed_steps > 0) steps.resize(static_cast<size_t>(fixed_steps));
  const int64_t total = static_cast<int64_t>(steps.size());
  const int64_t eval_every =
      args.has("--eval-every") ? args.get_int("--eval-every") : std::max<int64_t>(1, total / 10);

  int64_t longest = 0;
  for (const std::vector<train::Example>* set :
       {&data, static_cast<const std::vector<train::Example>*>(&eval_data)})
    for (const train::Example& ex : *set)
      longest = std::max<int64_t>(longest, static_cast<int64_t>(ex.tokens.size()));
  ThreadPool pool(threads);
  train::LoraParams lora(*model, {rank, static_cast<float>(alpha), targets});
  lora.init(seed);
  train::Trainer trainer(*model, &lora, longest, pool);
  train::AdamW opt({0.9f, 0.999f, 1e-8f, static_cast<float>(weight_decay)});
  const auto params = lora.params();
  const auto grads = lora.grads();
  std::fprintf(
      stderr,
      "finetune: %s, %zu examples%s, LoRA r%lld alpha %g on %zu matrices (%.2f M parameters), %lld "
      "steps\n",
      model_path->c_str(), data.size(),
      eval_data.empty() ? "" : (" (+" + std::to_string(eval_data.size()) + " eval)").c_str(),
      static_cast<long long>(rank), alpha, lora.pairs().size(),
      static_cast<double>(lora.n_params()) / 1e6, static_cast<long long>(total));

  double eval_start = 0, eval_last = NAN;
  if (!eval_data.empty()) eval_last = eval_start = eval_loss(trainer, eval_data);
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  int64_t tokens_done = 0;
  double last_loss = 0;
  for (int64_t s = 0; s < total; ++s) {
    const std::vector<size_t>& batch = steps[static_cast<size_t>(s)];
    int64_t n_targets = 0, n_tokens = 0;
    for (const size_t i : batch) {
      n_targets += data[i].n_targets();
      n_tokens += static_cast<int64_t>(data[i].tokens.size());
    }
    lora.zero_grad();
    double loss = 0;
    for (const size_t i : batch)
      loss += trainer.run(data[i], true, 1.0f / static_cast<float>(n_targets)).loss;
    loss /= static_cast<double>(n_targets);
    const double gnorm = train::clip_grad_norm(grads, grad_clip);
    const double step_lr = train::lr_at(s, total, warmup, lr);
    opt.step(params, grads, static_cast<float>(step_lr));
    tokens_done += n_tokens;
    last_loss = loss;
    const bool evaluated = !eval_data.empty() && ((s + 1) % eval_every == 0 || s + 1 == total);
    if (evaluated) eval_last = eval_loss(trainer, eval_data);
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    const double tok_s = static_cast<double>(tokens_done) / std::max(elapsed, 1e-9);
    const double eta = elapsed / static_cast<double>(s + 1) * static_cast<double>(total - s - 1);
    if (json) {
      nlohmann::json j = {{"step", s + 1},        {"total", total},     {"loss", loss},
                          {"lr", step_lr},        {"grad_norm", gnorm}, {"tokens", n_tokens},
                          {"tokens_per_s", tok_s}};
      if (evaluated) j["eval_loss"] = eval_last;
      if (s == 0 && !eval_data.empty()) j["eval_loss_start"] = eval_start;
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
    std::string eval_text =
        std::isnan(eval_last) ? "" : " | eval " + std::to_string(eval_last).substr(0, 6);
    std::fprintf(stderr, "%sstep %lld/%lld | loss %.4f%s | %.0f tok/s | ETA %s%s",
                 isatty(2) ? "\r" : "", static_cast<long long>(s + 1),
                 static_cast<long long>(total), loss, eval_text.c_str(), tok_s,
                 clock_text(eta).c_str(), isatty(2) ? "" : "\n");
  }
  if (isatty(2)) std::fprintf(stderr, "\n");
  lora.save(*out_path);
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  std::fprintf(
      stderr, "wrote %s: %lld steps, %lld tokens in %.1f s (%.0f tok/s), loss %.4f%s\n",
      out_path->c_str(), static_cast<long long>(total), static_cast<long long>(tokens_done),
      elapsed, static_cast<double>(tokens_done) / std::max(elapsed, 1e-9), last_loss,
      eval_data.empty()
          ? ""
          : (", eval loss " + std::to_string(eval_start) + " -> " + std::to_string(eval_last))
                .c_str());
  return 0;
}

}  // namespace

SLM_COMMAND("finetune", "LoRA finetuning on JSONL data, writing an adapter for --lora",
            finetune_options, run_finetune);

}  // namespace slm::cli
