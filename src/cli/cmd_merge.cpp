// slm merge: a base model with LoRA adapters folded into its weights
// (model/lora_merge.h), so it runs without --lora.
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/args.h"
#include "cli/command.h"
#include "model/lora.h"
#include "model/lora_merge.h"
#include "model/model.h"

namespace slm::cli {
namespace {

constexpr const char* kUsage =
    "usage: slm merge --model BASE.gguf --lora ADAPTER.gguf[:SCALE] -o OUT.gguf [--type T] [-t N]\n"
    "\n"
    "Writes BASE with W + SCALE * alpha / r * B A merged into every matrix the adapters change\n"
    "(dequantized to float, then quantized again); every other tensor and the metadata are copied\n"
    "as they are. OUT appears only once complete.\n"
    "\n"
    "  --lora F[:SCALE]     an adapter and its multiplier (1); repeat to merge several\n"
    "  --type T             type of the merged matrices, e.g. F32, F16, Q8_0 (default: each keeps "
    "its own)\n"
    "  -t, --threads N      threads (all cores)\n";

int run_merge(int argc, char** argv) {
  const Args args(argc, argv, {"--model", "--lora", "--out", "--type", "--threads"}, {"--help"},
                  {{"-m", "--model"}, {"-o", "--out"}, {"-t", "--threads"}});
  if (args.flag("--help")) {
    std::printf("%s", kUsage);
    return 0;
  }
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional().front() + "'");
  const auto model_path = args.get("--model");
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
  const long hw = sysconf(_SC_NPROCESSORS_ONLN);
  ThreadPool pool(static_cast<int>(args.get_int("--threads", hw > 0 ? hw : 1, 1, 1024)));

  const auto model = model::Model::load(*model_path);
  const auto adapter = model::LoraAdapter::load(*model, files);
  const model::MergeResult r = model::merge_lora(*model, *adapter, *out_path, opt, pool);
  std::fprintf(stderr, "wrote %s: %lld of %lld tensors merged (%zu adapted matrices), %.2f MiB\n",
               out_path->c_str(), static_cast<long long>(r.n_merged),
               static_cast<long long>(r.n_tensors), adapter->n_matrices(),
               static_cast<double>(std::filesystem::file_size(*out_path)) / (1024.0 * 1024.0));
  return 0;
}

}  // namespace

SLM_COMMAND("merge", "merge LoRA adapters into a base model's weights", run_merge);

}  // namespace slm::cli
