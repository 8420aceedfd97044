// slm eval: measures a model. Perplexity on a text (llama-perplexity's rule
// by default), distribution shift against a saved top-k logits file, and
// multiple-choice accuracy (HellaSwag, JSONL). The computations live in
// src/eval; this file parses options and prints.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/args.h"
#include "cli/command.h"
#include "cli/common.h"
#include "cli/prune_args.h"
#include "eval/choices.h"
#include "eval/logits_file.h"
#include "eval/perplexity.h"
#include "eval/tasks.h"
#include "eval/text_file.h"
#include "model/lora.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {
namespace {

Options eval_options() {
  Options o(
      "eval",
      "usage: slm eval [--model] M (--file TEXT | --hellaswag FILE | --choices FILE.jsonl) "
      "[options]\n"
      "  Perplexity of a text (--file; .bz2 files are read as they are), as llama-perplexity\n"
      "  -c N: chunks of N tokens, BOS first, the second half of each scored; the drift\n"
      "  of the top-k logits against a saved run; or multiple-choice accuracy.\n");
  add_model_option(o);
  add_lora_option(o);
  o.value("--file,-f", "TEXT", "perplexity of this text");
  o.value("--ctx-size,-c", "N", "perplexity: context of each chunk")
      .integer(2, int64_t{1} << 24)
      .def("512");
  o.value("--stride", "N",
          "perplexity: sliding windows of -c tokens every N tokens (each token scored once)")
      .integer(1, int64_t{1} << 24)
      .def_note("chunks");
  o.value("--chunks", "N", "perplexity: at most N chunks or windows; 0: all")
      .integer(0, int64_t{1} << 40)
      .def("0");
  o.value("--batch-size,-b", "N", "tokens per forward step").integer(1, 4096).def("512");
  o.value("--save-logits", "F",
          "perplexity: store each scored token's top-k log-probabilities (and the rest) in F");
  o.value("--top-k", "K", "perplexity: entries per position in --save-logits")
      .integer(1, eval::kLogitsMaxK)
      .def("32");
  o.value("--compare-logits", "F",
          "perplexity: KL divergence, same-top-1 rate and perplexity ratio against F");
  o.value("--hellaswag", "FILE",
          "accuracy on llama.cpp's 6-line-per-task text (context, label, 4 endings)");
  o.value("--choices", "FILE",
          "accuracy on JSONL: {\"context\": ..., \"endings\": [...], \"label\": N} per line");
  o.value("--tasks", "N", "multiple choice: only the first N tasks; 0: all")
      .integer(0, int64_t{1} << 40)
      .def("0");
  add_prune_options(o);
  add_threads_option(o);
  o.flag("--json", "print one JSON object on stdout");
  o.flag("--allow-long-context", "permit a context beyond the model's training length");
  return o;
}

// A progress bar on stderr, drawn only when stderr is a terminal.
class Progress {
 public:
  explicit Progress(const char* what) : what_(what), on_(isatty(STDERR_FILENO) != 0) {}
  ~Progress() {
    if (on_ && drawn_) std::fprintf(stderr, "\r\033[K");
  }
  void operator()(int64_t done, int64_t total) {
    if (!on_ || total <= 0) return;
    const int width = 30, fill = static_cast<int>(width * done / total);
    std::fprintf(stderr, "\r%s [%.*s%*s] %3d%% %lld/%lld", what_, fill,
                 "##############################", width - fill, "",
                 static_cast<int>(100 * done / total), static_cast<long long>(done),
                 static_cast<long long>(total));
    std::fflush(stderr);
    drawn_ = true;
  }

 private:
  const char* what_;
  bool on_, drawn_ = false;
};

nlohmann::json accuracy_json(const eval::Accuracy& a) {
  return {{"value", a.value}, {"stderr", a.stderr_}};
}

int run_choices(const Args& args, const model::Model& model, const model::LoraAdapter* adapter,
                int threads) {
  const bool hs = args.has("--hellaswag");
  const std::string path = *args.get(hs ? "--hellaswag" : "--choices");
  const int64_t max_tasks = args.get_int("--tasks");
  const std::string text = eval::read_text_file(path);
  const std::vector<eval::ChoiceTask> tasks = hs ? eval::parse_hellaswag(text, path, max_tasks)
                                                 : eval::parse_choices_jsonl(text, path, max_tasks);
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(model.file());
  eval::ChoiceOptions o;
  o.max_rows = args.get_int("--batch-size");
  o.adapter = adapter;
  o.allow_beyond_train_ctx = args.flag("--allow-long-context");
  ThreadPool pool(threads);
  eval::ChoiceResult r;
  {
    Progress bar("tasks");
    r = eval::score_choices(model, tok, tasks, o, pool, std::ref(bar));
  }
  const double tps = r.seconds > 0 ? static_cast<double>(r.n_fed) / r.seconds : 0.0;
  if (args.flag("--json")) {
    const nlohmann::json j = {{"mode", hs ? "hellaswag" : "choices"},
                              {"file", path},
                              {"tasks", tasks.size()},
                              {"acc", accuracy_json(r.acc)},
                              {"acc_norm_tokens", accuracy_json(r.acc_norm_tokens)},
                              {"acc_norm_chars", accuracy_json(r.acc_norm_chars)},
                              {"tokens", r.n_fed},
                              {"seconds", r.seconds},
                              {"tokens_per_second", tps},
                              {"threads", threads}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%s: %zu tasks\n", path.c_str(), tasks.size());
  const auto line = [](const char* name, const eval::Accuracy& a) {
    std::printf("%-32s %6.2f%% +/- %.2f\n", name, 100 * a.value, 100 * a.stderr_);
  };
  line("acc (sum of log-probs)", r.acc);
  line("acc_norm (per token, llama.cpp)", r.acc_norm_tokens);
  line("acc_norm (per char, lm-eval)", r.acc_norm_chars);
  std::printf("speed: %.1f tokens/s (%lld tokens in %.2f s, %d threads)\n", tps,
              static_cast<long long>(r.n_fed), r.seconds, threads);
  return 0;
}

int run_perplexity(const Args& args, const model::Model& model, const model::LoraAdapter* adapter,
                   int threads) {
  const std::string path = *args.get("--file");
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(model.file());
  const std::vector<int32_t> tokens = tok.encode(eval::read_text_file(path), true, false);
  eval::PerplexityOptions o;
  o.n_ctx = args.get_int("--ctx-size");
  o.stride = args.has("--stride") ? args.get_int("--stride") : 0;
  if (o.stride > o.n_ctx)
    throw UsageError("option " + args.shown("--stride") + ": " + std::to_string(o.stride) +
                     " is out of range [1, " + std::to_string(o.n_ctx) + "] (the context size)");
  o.n_batch = args.get_int("--batch-size");
  o.adapter = adapter;
  o.max_chunks = args.get_int("--chunks");
  o.allow_beyond_train_ctx = args.flag("--allow-long-context");
  if (o.n_ctx > model.config().n_ctx_train && !o.allow_beyond_train_ctx)
    throw Error(args.shown("--ctx-size") + " " + std::to_string(o.n_ctx) +
                " exceeds the model's training context of " +
                std::to_string(model.config().n_ctx_train) +
                " (--allow-long-context to go beyond)");
  const std::optional<int32_t> bos = tok.add_bos() ? tok.bos() : std::nullopt;

  eval::LogitsHeader run;
  run.n_vocab = static_cast<uint32_t>(model.config().n_vocab);
  run.k = static_cast<uint32_t>(args.get_int("--top-k"));
  run.n_ctx = static_cast<uint32_t>(o.n_ctx);
  run.stride = static_cast<uint32_t>(o.stride);
  run.tokens_hash = eval::hash_tokens(tokens);
  std::optional<eval::LogitsFile> base;
  std::optional<eval::LogitsComparer> cmp;
  if (const auto f = args.get("--compare-logits")) {
    base.emplace(eval::LogitsFile::read(*f));
    cmp.emplace(*base, run);
  }
  std::unique_ptr<eval::LogitsWriter> writer;
  if (const auto f = args.get("--save-logits"))
    writer = std::make_unique<eval::LogitsWriter>(*f, run);

  ThreadPool pool(threads);
  const auto on_row = [&](int64_t i, std::span<const float> row, int32_t target, double log_z) {
    if (writer) writer->add(row, target, log_z);
    if (cmp) cmp->add(i, row, target, log_z);
  };
  eval::PerplexityResult r;
  {
    Progress bar("perplexity");
    r = eval::perplexity(model, tokens, bos, o, pool, on_row, std::ref(bar));
  }
  if (writer) writer->commit();
  std::optional<eval::CompareResult> c;
  if (cmp) c = cmp->finish();
  const double tps = r.seconds > 0 ? static_cast<double>(r.n_fed) / r.seconds : 0.0;

  if (args.flag("--json")) {
    nlohmann::json j = {{"mode", "perplexity"},      {"file", path},
                        {"n_ctx", o.n_ctx},          {"stride", o.stride},
                        {"tokens", r.n_tokens},      {"windows", r.n_windows},
                        {"scored", r.nll.n},         {"nll_mean", r.nll.mean()},
                        {"perplexity", r.nll.ppl()}, {"perplexity_stderr", r.nll.ppl_stderr()},
                        {"tokens_fed", r.n_fed},     {"seconds", r.seconds},
                        {"tokens_per_second", tps},  {"threads", threads}};
    if (writer) j["saved_logits"] = {{"file", *args.get("--save-logits")}, {"top_k", run.k}};
    if (c)
      j["compare"] = {{"file", *args.get("--compare-logits")},
                      {"kl_mean", c->kl_mean},
                      {"kl_median", c->kl_median},
                      {"kl_p99", c->kl_p99},
                      {"kl_max", c->kl_max},
                      {"same_top1", c->same_top1},
                      {"perplexity_base", c->ppl_base},
                      {"perplexity_ratio", c->ppl_ratio}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf(
      "%s: %lld tokens; %lld %s of %lld tokens (%s): %lld tokens scored\n", path.c_str(),
      static_cast<long long>(r.n_tokens), static_cast<long long>(r.n_windows),
      o.stride ? "windows" : "chunks", static_cast<long long>(o.n_ctx),
      o.stride ? ("stride " + std::to_string(o.stride)).c_str() : "BOS first, second half scored",
      static_cast<long long>(r.nll.n));
  std::printf("perplexity: %.4f +/- %.5f\n", r.nll.ppl(), r.nll.ppl_stderr());
  std::printf("speed: %.1f tokens/s (%lld tokens in %.2f s, %d threads)\n", tps,
              static_cast<long long>(r.n_fed), r.seconds, threads);
  if (writer)
    std::printf("saved top-%u log-probabilities of %llu positions to %s\n", run.k,
                static_cast<unsigned long long>(writer->n_positions()),
                args.get("--save-logits")->c_str());
  if (c) {
    std::printf("KL(base || this) over top-%u + rest: mean %.6f, median %.6f, p99 %.6f, max %.6f\n",
                base->header().k, c->kl_mean, c->kl_median, c->kl_p99, c->kl_max);
    std::printf("same top-1: %.2f%%\n", 100 * c->same_top1);
    std::printf("perplexity ratio: %.6f (base %.4f, this %.4f)\n", c->ppl_ratio, c->ppl_base,
                c->ppl);
  }
  return 0;
}

int run_eval(int argc, char** argv) {
  const Args args = eval_options().parse(argc, argv);
  model_argument(args, 0);  // the model is the only positional argument
  const int modes = args.has("--file") + args.has("--hellaswag") + args.has("--choices");
  if (modes != 1) throw UsageError("give exactly one of --file, --hellaswag, --choices");
  if (!args.has("--file"))
    for (const char* o : {"--save-logits", "--compare-logits", "--stride", "--chunks", "--top-k"})
      if (args.has(o)) throw UsageError(args.shown(o) + " applies to perplexity (--file) only");
  if (!args.has("--hellaswag") && !args.has("--choices") && args.has("--tasks"))
    throw UsageError(args.shown("--tasks") + " applies to --hellaswag and --choices only");
  const int threads = thread_count(args);
  const auto model = load_model(args);
  apply_prune_options(args, *model);
  const auto adapter = lora_option(args, *model);  // null without --lora
  return args.has("--file") ? run_perplexity(args, *model, adapter.get(), threads)
                            : run_choices(args, *model, adapter.get(), threads);
}

}  // namespace

SLM_COMMAND("eval", "perplexity, logit drift (KL) and multiple-choice accuracy of a model",
            eval_options, run_eval);

}  // namespace slm::cli
