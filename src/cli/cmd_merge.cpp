// slm merge: a base model with LoRA adapters folded into its weights
// (model/lora_merge.h), so it runs without --lora.
#include <cstdio>
#include <filesystem>

#include "base/error.h"
#include "base/format.h"
#include "base/thread_pool.h"
#include "cli/args.h"
#include "cli/command.h"
#include "model/lora.h"
#include "model/lora_merge.h"
#include "model/model.h"

namespace slm::cli {
namespace {

Options merge_options() {
  Options o("merge",
            "usage: slm merge [--model] BASE.gguf --lora ADAPTER.gguf[:SCALE] -o OUT.gguf [options]\n"
            "  Writes BASE with W + SCALE * alpha / r * B A merged into every matrix the adapters\n"
            "  change (dequantized to float, then quantized again); every other tensor and the\n"
            "  metadata are copied as they are. OUT appears only once complete.\n");
  add_model_option(o, "the base model, a GGUF file; also the first positional argument");
  add_lora_option(o);
  o.value("--out,-o", "OUT.gguf", "the merged model to write (required)");
  o.value("--type", "T", "type of the merged matrices, e.g. F32, F16, Q8_0")
      .def_note("each keeps its own");
  add_threads_option(o);
  return o;
}

int run_merge(int argc, char** argv) {
  const Args args = merge_options().parse(argc, argv);
  const auto model_path = model_argument(args, 0).spec;
  const auto out_path = args.get("--out");
  std::vector<model::LoraFile> files;
  for (const std::string& a : args.get_all("--lora"))
    files.push_back(model::parse_lora_argument(a));
  if (!model_path || !out_path || files.empty())
    throw UsageError("--model, --lora and -o are required");
  model::MergeOptions opt;
  if (const auto t = args.get("--type")) {
    opt.type = dtype_from_name(*t);
    if (!opt.type) throw UsageError(args.shown("--type") + ": unknown type '" + *t + "'");
  }
  ThreadPool pool(thread_count(args));

  const auto model = model::Model::load(*model_path, pool.size());
  const auto adapter = model::LoraAdapter::load(*model, files, lora_type_option(args));
  const model::MergeResult r = model::merge_lora(*model, *adapter, *out_path, opt, pool);
  std::fprintf(stderr, "wrote %s: %lld of %lld tensors merged (%zu adapted matrices), %s\n",
               out_path->c_str(), static_cast<long long>(r.n_merged),
               static_cast<long long>(r.n_tensors), adapter->n_matrices(),
               human_bytes(static_cast<double>(std::filesystem::file_size(*out_path))).c_str());
  return 0;
}

}  // namespace

SLM_COMMAND("merge", "merge LoRA adapters into a base model's weights", merge_options, run_merge);

}  // namespace slm::cli
