// slm prune calibrate: thresholds for dynamic activation pruning (TEAL / CATS)
// from a calibration text, written as a small sparsity GGUF for --sparsity.
// The calibration itself lives in model/calibrate.h.
#include <cstdio>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/args.h"
#include "cli/command.h"
#include "cli/common.h"
#include "eval/text_file.h"
#include "model/calibrate.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {
namespace {

Options prune_options_decl() {
  Options o("prune",
            "usage: slm prune calibrate --model M --data TEXT --sparsity S -o M.sparsity.gguf\n"
            "  Runs M over TEXT and records, per layer, the activation magnitude below which a\n"
            "  share S of each projection input falls (attention, o-proj, FFN and down-proj\n"
            "  inputs: TEAL) and of |act(gate)| (CATS); with --head-sparsity, also of the\n"
            "  output matrix's input (opt-in; measure its cost with slm eval --compare-logits).\n"
            "  Use the file with --sparsity on run, chat, bench, eval and serve; it names M by\n"
            "  a hash of its weights and is refused with any other model.\n");
  add_model_option(o);
  o.value("--data", "TEXT", "calibration text (required; .bz2 is read as it is)");
  o.value("--sparsity", "S", "share of activations to zero, in [0, 1)").number(0, 0.99).def("0.5");
  o.value("--head-sparsity", "S",
          "share of the output matrix's inputs (the final norm's output) to zero, in [0, 1); "
          "0 leaves the head dense")
      .number(0, 0.99)
      .def("0");
  o.value("--ffn-rule", "R",
          "what prunes the FFN's down side: teal (threshold down's input) or cats "
          "(cut rows by |act(gate)|: decoding skips down's weights for them; gate and up "
          "are computed for every row)")
      .choices({"teal", "cats"})
      .def("teal");
  o.value("--ctx-size,-c", "N", "tokens per calibration chunk (at most the training context)")
      .integer(2, int64_t{1} << 20)
      .def("512");
  o.flag("--allow-long-context", "permit --ctx-size beyond the model's training context");
  o.value("--max-tokens", "N", "calibrate on at most the first N tokens; 0: all")
      .integer(0, int64_t{1} << 40)
      .def("0");
  o.value("--out,-o", "FILE", "the sparsity file to write (required)");
  add_threads_option(o);
  return o;
}

int run_prune(int argc, char** argv) {
  const Args args = prune_options_decl().parse(argc, argv);
  // slm prune calibrate [M]: the sub-command first, then the model (or --model).
  const std::vector<std::string>& pos = args.positional();
  if (pos.empty() || pos[0] != "calibrate")
    throw UsageError(pos.empty() ? "missing sub-command (calibrate)"
                                 : "unknown sub-command '" + pos[0] + "'");
  std::optional<std::string> spec = args.get("--model");
  const size_t n_model = spec ? 0 : 1;
  if (!spec && pos.size() > 1) spec = pos[1];
  if (pos.size() > 1 + n_model) throw UsageError("unexpected argument '" + pos[1 + n_model] + "'");
  const auto data = args.get("--data");
  if (!data) throw UsageError("--data TEXT is required");
  const auto out = args.get("--out");
  if (!out) throw UsageError("-o FILE is required");
  const auto model = load_model(spec, thread_count(args));
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(model->file());
  std::vector<int32_t> tokens = tok.encode(eval::read_text_file(*data), /*add_special=*/true,
                                           /*parse_special=*/false);
  const int64_t max_tokens = args.get_int("--max-tokens");
  if (max_tokens > 0 && static_cast<int64_t>(tokens.size()) > max_tokens) tokens.resize(max_tokens);
  if (tokens.empty()) throw Error(*data + ": no tokens to calibrate on");
  model::CalibrateOptions co;
  co.sparsity = static_cast<float>(args.get_double("--sparsity"));
  co.head_sparsity = static_cast<float>(args.get_double("--head-sparsity"));
  co.ffn_rule = args.choice("--ffn-rule") == "cats" ? model::FfnRule::kCats : model::FfnRule::kTeal;
  co.n_ctx = args.get_int("--ctx-size");
  co.allow_beyond_train_ctx = args.flag("--allow-long-context");
  const int64_t train_ctx = model->config().n_ctx_train;
  if (args.has("--ctx-size") && train_ctx > 0 && co.n_ctx > train_ctx && !co.allow_beyond_train_ctx)
    throw Error(args.shown("--ctx-size") + " " + std::to_string(co.n_ctx) +
                " exceeds the model's training context of " + std::to_string(train_ctx) +
                " (--allow-long-context to go beyond)");
  ThreadPool pool(thread_count(args));
  const model::Sparsity s = model::calibrate(*model, tokens, co, pool);
  s.save(*out);
  std::fprintf(
      stderr, "wrote %s: sparsity %.2f (%s), head %.2f, over %zu tokens, %zu layers, base %s\n",
      out->c_str(), static_cast<double>(s.level),
      co.ffn_rule == model::FfnRule::kCats ? "cats" : "teal", static_cast<double>(co.head_sparsity),
      tokens.size(), s.thresholds.size(), s.base_hash.c_str());
  return 0;
}

}  // namespace

SLM_COMMAND("prune", "calibrate dynamic activation pruning (TEAL/CATS) for --sparsity",
            prune_options_decl, run_prune);

}  // namespace slm::cli
