// slm finetune: LoRA supervised finetuning or DPO on JSONL data (train/),
// writing a llama.cpp-layout adapter that `slm run --lora` loads; with
// --full, SFT or DPO of every weight of an F32/F16/BF16 base, writing a whole
// model.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/error.h"
#include "base/thread_pool.h"
#include "chat/template.h"
#include "cli/args.h"
#include "cli/command.h"
#include "cli/train_common.h"
#include "model/model.h"
#include "model/session.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/dpo.h"
#include "train/full_params.h"
#include "train/lora_params.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace slm::cli {
namespace {

Options finetune_options() {
  Options o(
      "finetune",
      "usage: slm finetune [--model] BASE.gguf --data TRAIN.jsonl [--eval-data VAL.jsonl] "
      "[--method sft|dpo] "
      "-o ADAPTER.gguf\n"
      "  LoRA finetuning on the CPU. Each line of the data is {\"messages\": [...]} "
      "(rendered with the\n"
      "  model's chat template, loss on assistant turns), {\"prompt\", \"completion\"} (loss "
      "on the\n"
      "  completion) or {\"text\"} (loss on every token). For dpo, each line is {\"prompt\",\n"
      "  \"chosen\", \"rejected\"} (strings, or messages with a chat template). Every line is\n"
      "  checked before training. With --full, every weight is trained (F32, F16 or BF16 "
      "bases) and\n"
      "  -o is a whole model (DPO's reference is then the base before the first step).\n");
  add_model_option(o, "the base model, a GGUF file; also the first positional argument");
  o.value("--data", "F.jsonl", "training data (required)");
  o.value("--eval-data", "F.jsonl", "held-out data, evaluated every --eval-every steps");
  o.value("--out,-o", "ADAPTER.gguf", "the adapter (with --full: the model) to write (required)");
  o.flag("--full",
         "train every weight (SFT or DPO) instead of a LoRA adapter; writes a whole "
         "GGUF model");
  o.value("--out-type", "T", "--full: the type of the written weights (base: each tensor's own)")
      .choices({"base", "f32", "f16", "bf16"})
      .def("base");
  o.value("--method", "M", "training method").choices({"sft", "dpo"}).def("sft");
  o.value("--beta", "B", "DPO: strength of the pull towards the reference (the base)")
      .number(1e-6, 1e6)
      .def("0.1");
  o.value("--lora-rank", "R", "rank").integer(1, 1024).def("16");
  o.value("--lora-alpha", "A", "scale numerator: deltas are alpha / rank * B A")
      .number(0, 1e9)
      .def("32");
  o.value("--lora-targets", "L",
          "matrices to adapt, from q,k,v,o,gate,up,down (on a mixture of experts, gate/up/down "
          "adapt every expert)")
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
  o.flag("--allow-long-context", "permit --ctx-size beyond the model's training context");
  o.flag("--truncate", "cut longer examples instead of refusing them");
  o.flag("--recompute",
         "keep only each layer's input and recompute its activations in the backward "
         "(less memory, about a third more time; the same results)");
  o.value("--template-file", "F", "chat template instead of the model's");
  o.value("--checkpoint-every", "N", "write a checkpoint every N steps (Ctrl-C writes one too)")
      .integer(1, int64_t{1} << 40);
  o.value("--checkpoint", "F", "the checkpoint file").def_note("ADAPTER.gguf.ckpt");
  o.value("--resume", "F",
          "continue from a checkpoint of a run with the same model, data and settings");
  add_threads_option(o);
  o.flag("--json", "one JSON object per step on stdout");
  return o;
}

nlohmann::json dpo_json(const train::DpoStats& s, const std::string& prefix) {
  return {{prefix + "loss", s.mean_loss()},
          {prefix + "reward_margin", s.mean_margin()},
          {prefix + "accuracy", s.accuracy()},
          {prefix + "kl", s.kl_per_token()}};
}

int run_finetune(int argc, char** argv) {
  const Args args = finetune_options().parse(argc, argv);
  const auto model_path = model_argument(args, 0).spec;
  const auto data_path = args.get("--data");
  const auto out_path = args.get("--out");
  if (!model_path || !data_path || !out_path)
    throw UsageError("--model, --data and -o are required");
  const std::string method = *args.get("--method");
  const bool dpo = method == "dpo";
  const double beta = args.get_double("--beta");
  if (!dpo && args.has("--beta"))
    throw UsageError(args.shown("--beta") + " applies to --method dpo only");
  const bool full = args.flag("--full");
  for (const char* lora_opt : {"--lora-rank", "--lora-alpha", "--lora-targets"})
    if (full && args.has(lora_opt))
      throw UsageError(args.shown(lora_opt) + " does not apply to --full");
  if (!full && args.has("--out-type"))
    throw UsageError(args.shown("--out-type") + " applies to --full only");
  const std::string out_type = args.choice("--out-type");
  const std::optional<DType> save_type = out_type == "f32"    ? std::optional(DType::F32)
                                         : out_type == "f16"  ? std::optional(DType::F16)
                                         : out_type == "bf16" ? std::optional(DType::BF16)
                                                              : std::nullopt;
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
  const int64_t ckpt_every =
      args.has("--checkpoint-every") ? args.get_int("--checkpoint-every") : 0;
  const std::string ckpt_path = args.get("--checkpoint").value_or(*out_path + ".ckpt");
  const auto resume_path = args.get("--resume");

  const auto model = model::Model::load(*model_path, threads);
  if (const std::string why = train::Trainer::unsupported_reason(*model); !why.empty())
    throw Error(*model_path + ": " + why);
  const model::ModelConfig& c = model->config();
  const int64_t n_ctx =
      args.has("--ctx-size") ? args.get_int("--ctx-size") : std::min<int64_t>(c.n_ctx_train, 512);
  // Examples longer than the model was trained on teach it positions it has
  // never seen (as run and chat refuse such a context): only on request. The
  // front end's handler names --allow-long-context.
  if (c.n_ctx_train > 0 && n_ctx > c.n_ctx_train && !args.flag("--allow-long-context"))
    throw model::ContextBeyondTrainingError(args.shown("--ctx-size") + " " + std::to_string(n_ctx) +
                                            " exceeds the " + std::to_string(c.n_ctx_train) +
                                            " tokens the model was trained for");
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(model->file());
  std::unique_ptr<chat::Template> tmpl;
  if (const auto tf = args.get("--template-file"))
    tmpl = std::make_unique<chat::Template>(read_text_file(*tf));
  else if (const auto t = model->file().get_string("tokenizer.chat_template"))
    tmpl = std::make_unique<chat::Template>(*t);
  const train::DataOptions dopt{n_ctx, args.flag("--truncate")};
  // SFT trains on examples, DPO on preference pairs; sizes[i] is item i's tokens.
  std::vector<train::Example> data, eval_data;
  std::vector<train::PreferencePair> pairs, eval_pairs;
  const auto eval_path = args.get("--eval-data");
  if (dpo) {
    pairs = train::load_preference_jsonl(*data_path, tok, tmpl.get(), dopt);
    if (eval_path) eval_pairs = train::load_preference_jsonl(*eval_path, tok, tmpl.get(), dopt);
  } else {
    data = train::load_jsonl(*data_path, tok, tmpl.get(), dopt);
    if (eval_path) eval_data = train::load_jsonl(*eval_path, tok, tmpl.get(), dopt);
  }
  const auto n_tokens_of = [](const train::Example& ex) {
    return static_cast<int64_t>(ex.tokens.size());
  };
  std::vector<int64_t> sizes;
  int64_t longest = 0;
  for (const train::Example& ex : data) sizes.push_back(n_tokens_of(ex));
  for (const train::PreferencePair& p : pairs)
    sizes.push_back(n_tokens_of(p.chosen) + n_tokens_of(p.rejected));
  for (const auto* set : {&data, &eval_data})
    for (const train::Example& ex : *set) longest = std::max(longest, n_tokens_of(ex));
  for (const auto* set : {&pairs, &eval_pairs})
    for (const train::PreferencePair& p : *set)
      longest = std::max({longest, n_tokens_of(p.chosen), n_tokens_of(p.rejected)});
  const size_t n_items = sizes.size(), n_eval = dpo ? eval_pairs.size() : eval_data.size();
  const bool has_eval = n_eval > 0;

  std::vector<int64_t> epoch_of;  // epoch of each step
  const std::vector<std::vector<size_t>> steps =
      plan_steps(sizes, epochs, fixed_steps, batch_tokens, seed, epoch_of);
  const int64_t total = static_cast<int64_t>(steps.size());
  const int64_t eval_every =
      args.has("--eval-every") ? args.get_int("--eval-every") : std::max<int64_t>(1, total / 10);

  ThreadPool pool(threads);
  // The trained parameters: LoRA pairs over the frozen base, or (--full) F32
  // masters of every weight.
  const bool recompute = args.flag("--recompute");
  std::unique_ptr<train::LoraParams> lora;
  std::unique_ptr<train::FullParams> full_params;
  std::unique_ptr<train::Trainer> trainer_owner;
  std::string what;
  if (full) {
    full_params = std::make_unique<train::FullParams>(*model);
    trainer_owner =
        std::make_unique<train::Trainer>(*model, *full_params, longest, pool, recompute);
    what = "every weight (" + std::to_string(full_params->tensors().size()) + " tensors";
  } else {
    lora = std::make_unique<train::LoraParams>(
        *model, train::LoraSpec{rank, static_cast<float>(alpha), targets});
    lora->init(seed);
    trainer_owner = std::make_unique<train::Trainer>(*model, lora.get(), longest, pool, recompute);
    char buf[96];
    std::snprintf(buf, sizeof buf, "LoRA r%lld alpha %g on %zu matrices (",
                  static_cast<long long>(rank), alpha, lora->pairs().size());
    what = buf;
  }
  train::Trainer& trainer = *trainer_owner;
  train::Dpo objective(trainer, full ? full_params->grads() : lora->grads(), beta);
  train::AdamW opt({0.9f, 0.999f, 1e-8f, static_cast<float>(weight_decay)});
  const auto params = full ? full_params->params() : lora->params();
  const auto grads = full ? full_params->grads() : lora->grads();
  const int64_t n_params = full ? full_params->n_params() : lora->n_params();
  // Checkpoints: the trained tensors, AdamW's moments and counters, and every
  // setting that shapes the loss curve (a resume with another value is refused).
  const std::vector<train::NamedSpan> state = train::optimizer_spans(
      full ? full_params->names() : lora->param_names(), params, opt.moments());
  std::map<std::string, std::string> settings =
      run_settings(args, total, warmup, data_hash(data, pairs, steps));
  settings.insert({
      {"method", method},
      {"full", full ? "yes" : "no"},
      {"beta", dpo ? number_text(beta) : "-"},
      {"lora-rank", full ? "-" : std::to_string(rank)},
      {"lora-alpha", full ? "-" : number_text(alpha)},
      {"lora-targets", full ? "-" : *args.get("--lora-targets")},
  });
  // DPO's reference: the base's log-probabilities, once per pair. With
  // --full the trained weights are the base's only until a resume or a step
  // changes them, so they are computed first; a LoRA reference (the adapter
  // off) can wait until the checkpoint is known to be good.
  std::vector<train::RefLogp> ref, eval_ref;
  const auto reference = [&] {
    ref = objective.reference_logps(pairs);
    eval_ref = objective.reference_logps(eval_pairs);
  };
  if (dpo && full) reference();
  RunCheckpoint checkpoint("finetune", ckpt_path, train::model_fingerprint(model->file()), settings,
                           state, opt, epoch_of);
  const int64_t first_step = resume_path ? checkpoint.resume(*resume_path) : 0;
  std::fprintf(stderr, "finetune: %s %s, %zu %s%s, %s%.2f M parameters), %lld steps\n",
               method.c_str(), model_path->c_str(), n_items, dpo ? "pairs" : "examples",
               has_eval ? (" (+" + std::to_string(n_eval) + " eval)").c_str() : "", what.c_str(),
               static_cast<double>(n_params) / 1e6, static_cast<long long>(total));

  if (dpo && !full) reference();
  // The eval metrics as JSON fields ("eval_loss", and for DPO
  // "eval_accuracy", "eval_reward_margin", "eval_kl").
  const auto evaluate = [&]() -> nlohmann::json {
    if (dpo) return dpo_json(objective.evaluate(eval_pairs, eval_ref), "eval_");
    return {{"eval_loss", eval_loss(trainer, eval_data)}};
  };
  const auto eval_text = [&](const nlohmann::json& e) {
    char buf[96];
    if (dpo)
      std::snprintf(buf, sizeof buf, " | eval acc %.0f%% margin %.3f",
                    100.0 * e["eval_accuracy"].get<double>(),
                    e["eval_reward_margin"].get<double>());
    else
      std::snprintf(buf, sizeof buf, " | eval %.4f", e["eval_loss"].get<double>());
    return std::string(buf);
  };
  nlohmann::json eval_start, eval_last;
  if (has_eval) eval_last = eval_start = evaluate();
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  int64_t tokens_done = 0;
  double last_loss = 0;
  const SigintScope sigint;
  for (int64_t s = first_step; s < total; ++s) {
    if (checkpoint.interrupted(s)) return 130;
    const std::vector<size_t>& batch = steps[static_cast<size_t>(s)];
    int64_t n_tokens = 0;
    for (const size_t i : batch) n_tokens += sizes[i];
    for (const std::span<float> g : grads) std::fill(g.begin(), g.end(), 0.0f);
    // The step's mean loss and its metrics as JSON fields and progress text.
    nlohmann::json metrics;
    char text[128];
    if (dpo) {
      train::DpoStats st;
      for (const size_t i : batch)
        st.add(objective.pair(pairs[i], ref[i], true, 1.0f / static_cast<float>(batch.size())));
      metrics = dpo_json(st, "");
      std::snprintf(text, sizeof text, "loss %.4f | margin %.3f | acc %.0f%% | kl %.4f",
                    st.mean_loss(), st.mean_margin(), 100.0 * st.accuracy(), st.kl_per_token());
    } else {
      int64_t n_targets = 0;
      for (const size_t i : batch) n_targets += data[i].n_targets();
      double loss = 0;
      for (const size_t i : batch)
        loss += trainer.run(data[i], true, 1.0f / static_cast<float>(n_targets)).loss;
      metrics = {{"loss", loss / static_cast<double>(n_targets)}};
      std::snprintf(text, sizeof text, "loss %.4f", metrics["loss"].get<double>());
    }
    const double loss = metrics["loss"].get<double>();
    const double gnorm = train::clip_grad_norm(grads, grad_clip);
    const double step_lr = train::lr_at(s, total, warmup, lr);
    opt.step(params, grads, static_cast<float>(step_lr));
    tokens_done += n_tokens;
    last_loss = loss;
    const bool evaluated = has_eval && ((s + 1) % eval_every == 0 || s + 1 == total);
    if (evaluated) eval_last = evaluate();
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    const double tok_s = static_cast<double>(tokens_done) / std::max(elapsed, 1e-9);
    const double eta =
        elapsed / static_cast<double>(s + 1 - first_step) * static_cast<double>(total - s - 1);
    if (json) {
      nlohmann::json j = {{"step", s + 1}, {"total", total}};
      j.update(metrics);
      j.update(
          {{"lr", step_lr}, {"grad_norm", gnorm}, {"tokens", n_tokens}, {"tokens_per_s", tok_s}});
      if (evaluated) j.update(eval_last);
      if (s == 0)
        for (const auto& [k, v] : eval_start.items()) j[k + "_start"] = v;
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
    std::fprintf(stderr, "%sstep %lld/%lld | %s%s | %.0f tok/s | ETA %s%s", isatty(2) ? "\r" : "",
                 static_cast<long long>(s + 1), static_cast<long long>(total), text,
                 has_eval ? eval_text(eval_last).c_str() : "", tok_s, clock_text(eta).c_str(),
                 isatty(2) ? "" : "\n");
    if (ckpt_every > 0 && (s + 1) % ckpt_every == 0 && s + 1 < total) checkpoint.save(s + 1);
  }
  if (isatty(2)) std::fprintf(stderr, "\n");
  if (full)
    full_params->save(*out_path, save_type);
  else
    lora->save(*out_path);
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  std::string eval_summary;
  if (has_eval && dpo)
    eval_summary = ", eval accuracy " + std::to_string(eval_start["eval_accuracy"].get<double>()) +
                   " -> " + std::to_string(eval_last["eval_accuracy"].get<double>());
  else if (has_eval)
    eval_summary = ", eval loss " + std::to_string(eval_start["eval_loss"].get<double>()) + " -> " +
                   std::to_string(eval_last["eval_loss"].get<double>());
  std::fprintf(stderr, "wrote %s: %lld steps, %lld tokens in %.1f s (%.0f tok/s), loss %.4f%s\n",
               out_path->c_str(), static_cast<long long>(total - first_step),
               static_cast<long long>(tokens_done), elapsed,
               static_cast<double>(tokens_done) / std::max(elapsed, 1e-9), last_loss,
               eval_summary.c_str());
  return 0;
}

}  // namespace

SLM_COMMAND(
    "finetune",
    "LoRA finetuning (SFT or DPO) on JSONL data, writing an adapter for --lora; --full: every "
    "weight",
    finetune_options, run_finetune);

}  // namespace slm::cli
