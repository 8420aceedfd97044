// slm train: a llama-family model from scratch (scaled random init, F32
// weights) on a plain-text corpus, with the tokenizer of a given GGUF, by
// full training (train/full_params.h); writes a whole GGUF that `slm run`
// loads. Checkpoints, resume and Ctrl-C as in finetune (cli/train_common.h).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/args.h"
#include "cli/command.h"
#include "cli/train_common.h"
#include "gguf/writer.h"
#include "model/model.h"
#include "model/synth.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/full_params.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace slm::cli {
namespace {

// Named shapes: n_embd, n_layer, n_head, n_head_kv, n_ff (llama layout).
struct TrainShape {
  const char* name;
  int64_t n_embd, n_layer, n_head, n_head_kv, n_ff;
  const char* about;
};
constexpr TrainShape kShapes[] = {
    {"tiny", 64, 2, 4, 4, 192, "2 layers, n_embd 64, 4 heads, ff 192"},
    {"stories260k", 64, 5, 8, 4, 172,
     "Karpathy's stories260K: 5 layers, n_embd 64, 8 heads (4 KV), ff 172"},
    {"stories15m", 288, 6, 6, 6, 768,
     "Karpathy's stories15M: 6 layers, n_embd 288, 6 heads, ff 768"},
};

Options train_options() {
  std::string shapes = "  shapes:\n";
  for (const TrainShape& s : kShapes)
    shapes += "    " + std::string(s.name) + ": " + s.about + "\n";
  Options o(
      "train",
      "usage: slm train (--shape NAME | --arch A --n-embd N --n-layer N --n-head N [--n-head-kv N] "
      "--n-ff N)\n"
      "                 --tokenizer-from MODEL.gguf --data CORPUS.txt -o MODEL.gguf\n"
      "  Trains a model from scratch on a plain-text corpus (tokenized with MODEL.gguf's "
      "vocabulary,\n"
      "  cut into windows of -c tokens): random init (normal, std 0.02; residual projections "
      "scaled\n"
      "  by 1/sqrt(2 n_layer)), AdamW, warm-up then cosine decay. Writes F32 weights. Dimensions\n"
      "  given with --shape override it.\n" +
          shapes);
  std::vector<std::string> names;
  for (const TrainShape& s : kShapes) names.push_back(s.name);
  o.value("--shape", "NAME", "a named shape (listed above)").choices(names);
  o.value("--arch", "A", "architecture").choices({"llama", "qwen2", "qwen3"}).def("llama");
  o.value("--n-embd", "N", "embedding width").integer(8, 16384);
  o.value("--n-layer", "N", "layers").integer(1, 256);
  o.value("--n-head", "N", "attention heads").integer(1, 1024);
  o.value("--n-head-kv", "N", "key/value heads").integer(1, 1024).def_note("--n-head");
  o.value("--n-ff", "N", "feed-forward width").integer(1, 1 << 20);
  o.value("--tokenizer-from", "MODEL.gguf",
          "the GGUF whose tokenizer (and vocabulary size) to use (required)");
  o.value("--data", "CORPUS.txt", "training text (required)");
  o.value("--eval-data", "TEXT.txt", "held-out text, evaluated every --eval-every steps");
  o.value("--eval-every", "N", "evaluate every N steps")
      .integer(1, int64_t{1} << 40)
      .def_note("10 times over the run");
  o.value("--out,-o", "MODEL.gguf", "the model to write (required)");
  o.value("--epochs", "N", "passes over the corpus").integer(1, 1000000).def("1");
  o.value("--steps", "N", "optimizer steps, instead of --epochs").integer(1, int64_t{1} << 40);
  o.value("--lr", "LR", "peak learning rate").number(0, 1e9).def("1e-3");
  o.value("--warmup", "N", "linear warm-up steps, then cosine decay")
      .integer(0, int64_t{1} << 40)
      .def_note("a tenth of the steps, at most 100");
  o.value("--batch-tokens", "N", "tokens per optimizer step")
      .integer(1, int64_t{1} << 40)
      .def("1024");
  o.value("--grad-clip", "X", "global gradient-norm clip; 0: none").number(0, 1e30).def("1.0");
  o.value("--weight-decay", "X", "AdamW decoupled weight decay").number(0, 1e30).def("0");
  o.value("--seed,-s", "S", "initialisation and data order").integer(0, INT64_MAX).def("0");
  o.value("--ctx-size,-c", "N", "training window and the model's context length")
      .integer(2, 1 << 16)
      .def("128");
  o.value("--checkpoint-every", "N", "write a checkpoint every N steps (Ctrl-C writes one too)")
      .integer(1, int64_t{1} << 40);
  o.value("--checkpoint", "F", "the checkpoint file").def_note("MODEL.gguf.ckpt");
  o.value("--resume", "F",
          "continue from a checkpoint of a run with the same shape, tokenizer, data and settings");
  add_threads_option(o);
  o.flag("--json", "one JSON object per step on stdout");
  return o;
}

// A corpus as one token stream (BOS first), cut into windows of n_ctx tokens
// that overlap by one, so every token but the first is a target exactly once.
std::vector<train::Example> corpus_windows(const tokenizer::Tokenizer& tok, const std::string& path,
                                           int64_t n_ctx, int64_t& n_tokens) {
  const std::vector<int32_t> stream =
      tok.encode(read_text_file(path), /*add_special=*/true, /*parse_special=*/false);
  n_tokens = static_cast<int64_t>(stream.size());
  std::vector<train::Example> windows;
  for (size_t i = 0; i + 1 < stream.size(); i += static_cast<size_t>(n_ctx - 1)) {
    train::Example ex;
    ex.tokens.assign(stream.begin() + static_cast<std::ptrdiff_t>(i),
                     stream.begin() + static_cast<std::ptrdiff_t>(
                                          std::min(stream.size(), i + static_cast<size_t>(n_ctx))));
    ex.target.assign(ex.tokens.size(), 1);
    windows.push_back(std::move(ex));
  }
  if (windows.empty()) throw Error(path + ": the text has fewer than two tokens");
  return windows;
}

// The identity of a tokenizer for checkpoints: its kind, pre-tokenizer and
// every token's text and type, as 16 hex digits.
std::string tokenizer_hash(const tokenizer::Tokenizer& tok) {
  uint64_t h = train::fnv1a(tok.kind().data(), tok.kind().size());
  h = train::fnv1a(tok.pre().data(), tok.pre().size(), h);
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    const std::string& text = tok.token_text(id);
    const uint64_t n = text.size();
    const int32_t type = static_cast<int32_t>(tok.token_type(id));
    h = train::fnv1a(&n, sizeof n, h);
    h = train::fnv1a(text.data(), text.size(), h);
    h = train::fnv1a(&type, sizeof type, h);
  }
  return train::hex64(h);
}

// The model file in memory: synth's metadata and F32 tensors for the shape,
// with tok_file's tokenizer in place of synth's made-up vocabulary.
std::vector<uint8_t> model_bytes(const model::SynthShape& s, const gguf::File& tok_file,
                                 ThreadPool& pool) {
  const std::vector<uint8_t> synth = model::synth_bytes(s, "F32", 0, pool);
  const auto sf = gguf::File::parse(synth, "synth");
  gguf::Writer w;
  const auto is_tokenizer = [](std::string_view key) { return key.rfind("tokenizer.", 0) == 0; };
  for (const gguf::KeyValue& kv : sf->metadata()) {
    if (is_tokenizer(kv.key) || kv.key == "general.description") continue;
    if (kv.key == "general.alignment")
      w.set_alignment(kv.value.u);
    else if (kv.key == "general.name")
      w.add_string("general.name", "slm train " + s.name);
    else
      w.add_value(std::string(kv.key), kv.value);
  }
  for (const gguf::KeyValue& kv : tok_file.metadata())
    if (is_tokenizer(kv.key)) w.add_value(std::string(kv.key), kv.value);
  for (const gguf::TensorInfo& t : sf->tensors())
    w.add_tensor(std::string(t.name), t.type,
                 std::vector<int64_t>(t.ne, t.ne + std::max(t.n_dims, 1)),
                 {t.data, static_cast<size_t>(t.n_bytes)});
  return w.to_bytes();
}

int run_train(int argc, char** argv) {
  const Args args = train_options().parse(argc, argv);
  const auto tok_path = args.get("--tokenizer-from");
  const auto data_path = args.get("--data");
  const auto out_path = args.get("--out");
  if (!tok_path || !data_path || !out_path)
    throw UsageError("--tokenizer-from, --data and -o are required");
  if (args.has("--epochs") && args.has("--steps"))
    throw UsageError("give --epochs or --steps, not both");

  model::SynthShape s{};
  s.arch = args.choice("--arch");
  if (const auto name = args.get("--shape")) {
    for (const TrainShape& t : kShapes)
      if (t.name == args.choice("--shape")) {
        s.name = t.name;
        s.n_embd = t.n_embd;
        s.n_layer = t.n_layer;
        s.n_head = t.n_head;
        s.n_head_kv = t.n_head_kv;
        s.n_ff = t.n_ff;
      }
  } else {
    for (const char* o : {"--n-embd", "--n-layer", "--n-head", "--n-ff"})
      if (!args.has(o))
        throw UsageError("give --shape, or " + std::string(o) + " and the other dimensions");
    s.name = "custom";
  }
  if (args.has("--n-embd")) s.n_embd = args.get_int("--n-embd");
  if (args.has("--n-layer")) s.n_layer = args.get_int("--n-layer");
  if (args.has("--n-head")) s.n_head = args.get_int("--n-head");
  if (args.has("--n-ff")) s.n_ff = args.get_int("--n-ff");
  s.n_head_kv = args.has("--n-head-kv") ? args.get_int("--n-head-kv")
                : args.has("--n-head")  ? s.n_head
                                        : s.n_head_kv;
  if (s.n_embd % s.n_head != 0 || (s.n_embd / s.n_head) % 2 != 0)
    throw UsageError("--n-embd must be a multiple of --n-head with an even head width (" +
                     std::to_string(s.n_embd) + " / " + std::to_string(s.n_head) + ")");
  if (s.n_head % s.n_head_kv != 0)
    throw UsageError("--n-head (" + std::to_string(s.n_head) +
                     ") must be a multiple of --n-head-kv (" + std::to_string(s.n_head_kv) + ")");
  const int64_t n_ctx = args.get_int("--ctx-size");
  s.n_ctx = n_ctx;
  s.rope_base = s.arch == "llama" ? 1e4f : 1e6f;
  s.norm_eps = 1e-5f;
  s.tied = false;
  const double lr = args.get_double("--lr");
  if (!(lr > 0)) throw UsageError(args.shown("--lr") + " must be positive");
  const int64_t batch_tokens = args.get_int("--batch-tokens");
  const uint64_t seed = static_cast<uint64_t>(args.get_int("--seed"));
  const bool json = args.flag("--json");

  const auto tok_file = gguf::File::open(*tok_path);
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(*tok_file);
  s.n_vocab = tok.n_vocab();
  // An upper bound on the parameters (q, k, v, o at most n_embd^2 each): each
  // costs about 24 bytes here (file copies, master, gradient, two moments).
  const double approx_params =
      static_cast<double>(s.n_layer) *
          (4.0 * static_cast<double>(s.n_embd) * static_cast<double>(s.n_embd) +
           3.0 * static_cast<double>(s.n_embd) * static_cast<double>(s.n_ff)) +
      2.0 * static_cast<double>(s.n_vocab) * static_cast<double>(s.n_embd);
  if (approx_params > 2e9)
    throw UsageError("a model of about " +
                     std::to_string(static_cast<long long>(approx_params / 1e6)) +
                     " M parameters is too large to train from scratch here (at most 2000 M)");
  int64_t n_corpus = 0;
  const std::vector<train::Example> windows = corpus_windows(tok, *data_path, n_ctx, n_corpus);
  int64_t n_eval_tokens = 0;
  const auto eval_path = args.get("--eval-data");
  const std::vector<train::Example> eval =
      eval_path ? corpus_windows(tok, *eval_path, n_ctx, n_eval_tokens)
                : std::vector<train::Example>{};
  const int64_t per_step = std::clamp<int64_t>((batch_tokens + n_ctx - 1) / n_ctx, 1,
                                               static_cast<int64_t>(windows.size()));
  // Steps of per_step windows (an epoch's last may hold fewer), every
  // shuffle drawn up front from --seed.
  std::vector<int64_t> epoch_of;
  const std::vector<std::vector<size_t>> steps =
      plan_steps(std::vector<int64_t>(windows.size(), 1), args.get_int("--epochs"),
                 args.has("--steps") ? args.get_int("--steps") : 0, per_step, seed, epoch_of);
  const int64_t total = static_cast<int64_t>(steps.size());
  const int64_t warmup =
      args.has("--warmup") ? args.get_int("--warmup") : std::min<int64_t>(100, total / 10);
  const double grad_clip = args.get_double("--grad-clip");
  const double weight_decay = args.get_double("--weight-decay");

  ThreadPool pool(thread_count(args));
  const std::vector<uint8_t> bytes = model_bytes(s, *tok_file, pool);
  const auto model = model::Model::from_file(gguf::File::parse(bytes, *out_path));
  train::FullParams full(*model);
  full.init_scratch(seed);
  train::Trainer trainer(*model, full, n_ctx, pool);
  train::AdamW opt({0.9f, 0.999f, 1e-8f, static_cast<float>(weight_decay)});
  const auto params = full.params();
  const auto grads = full.grads();
  // Checkpoints: the F32 masters, AdamW's moments and counters. A model from
  // scratch has no base file: its identity is the settings (shape, seed,
  // tokenizer), each named when a resume differs.
  std::map<std::string, std::string> settings =
      run_settings(args, total, warmup, data_hash(windows, {}, steps));
  settings.insert({
      {"arch", s.arch},
      {"n-embd", std::to_string(s.n_embd)},
      {"n-layer", std::to_string(s.n_layer)},
      {"n-head", std::to_string(s.n_head)},
      {"n-head-kv", std::to_string(s.n_head_kv)},
      {"n-ff", std::to_string(s.n_ff)},
      {"ctx-size", std::to_string(n_ctx)},
      {"tokenizer", tokenizer_hash(tok)},
  });
  RunCheckpoint checkpoint(
      "train", args.get("--checkpoint").value_or(*out_path + ".ckpt"), "from scratch", settings,
      train::optimizer_spans(full.names(), params, opt.moments()), opt, epoch_of);
  const auto resume_path = args.get("--resume");
  const int64_t first_step = resume_path ? checkpoint.resume(*resume_path) : 0;
  const int64_t ckpt_every =
      args.has("--checkpoint-every") ? args.get_int("--checkpoint-every") : 0;
  std::fprintf(stderr,
               "train: %s %s (%.2f M parameters), %zu tokens in %zu windows of %lld, %lld steps\n",
               s.arch.c_str(), s.name.c_str(), static_cast<double>(full.n_params()) / 1e6,
               static_cast<size_t>(n_corpus), windows.size(), static_cast<long long>(n_ctx),
               static_cast<long long>(total));

  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  int64_t tokens_done = 0;
  double loss = 0, last_eval = -1;
  const int64_t eval_every =
      args.has("--eval-every") ? args.get_int("--eval-every") : std::max<int64_t>(1, total / 10);
  const SigintScope sigint;
  for (int64_t step = first_step; step < total; ++step) {
    if (checkpoint.interrupted(step)) return 130;
    full.zero_grad();
    const std::vector<size_t>& batch = steps[static_cast<size_t>(step)];
    int64_t n_targets = 0, n_tokens = 0;
    for (const size_t i : batch) {
      n_targets += windows[i].n_targets();
      n_tokens += static_cast<int64_t>(windows[i].tokens.size());
    }
    double sum = 0;
    for (const size_t i : batch)
      sum += trainer.run(windows[i], true, 1.0f / static_cast<float>(n_targets)).loss;
    loss = sum / static_cast<double>(n_targets);
    const double gnorm = train::clip_grad_norm(grads, grad_clip);
    const double step_lr = train::lr_at(step, total, warmup, lr, 0.1);
    opt.step(params, grads, static_cast<float>(step_lr));
    tokens_done += n_tokens;
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    const double tok_s = static_cast<double>(tokens_done) / std::max(elapsed, 1e-9);
    const double eta = elapsed / static_cast<double>(step + 1 - first_step) *
                       static_cast<double>(total - step - 1);
    const bool evaluated = !eval.empty() && ((step + 1) % eval_every == 0 || step + 1 == total);
    if (evaluated) last_eval = eval_loss(trainer, eval);
    if (json) {
      nlohmann::json j = {{"step", step + 1},     {"total", total},     {"loss", loss},
                          {"lr", step_lr},        {"grad_norm", gnorm}, {"tokens", n_tokens},
                          {"tokens_per_s", tok_s}};
      if (evaluated) j["eval_loss"] = last_eval;
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
    char eval_text[48] = "";
    if (!eval.empty() && last_eval >= 0)
      std::snprintf(eval_text, sizeof eval_text, " | eval %.4f", last_eval);
    std::fprintf(stderr, "%sstep %lld/%lld | loss %.4f%s | %.0f tok/s | ETA %s%s",
                 isatty(2) ? "\r" : "", static_cast<long long>(step + 1),
                 static_cast<long long>(total), loss, eval_text, tok_s, clock_text(eta).c_str(),
                 isatty(2) ? "" : "\n");
    if (ckpt_every > 0 && (step + 1) % ckpt_every == 0 && step + 1 < total)
      checkpoint.save(step + 1);
  }
  if (isatty(2)) std::fprintf(stderr, "\n");
  full.save(*out_path, DType::F32);
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  std::fprintf(stderr, "wrote %s: %lld steps, %lld tokens in %.1f s (%.0f tok/s), loss %.4f\n",
               out_path->c_str(), static_cast<long long>(total - first_step),
               static_cast<long long>(tokens_done), elapsed,
               static_cast<double>(tokens_done) / std::max(elapsed, 1e-9), loss);
  return 0;
}

}  // namespace

SLM_COMMAND(
    "train",
    "train a model from scratch on a text corpus (--shape or dimensions, a given tokenizer)",
    train_options, run_train);

}  // namespace slm::cli
