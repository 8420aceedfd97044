// slm synth: write a random-weight GGUF with a real model's shapes and
// quantization mix (see model/synth.h).
#include <unistd.h>

#include <cstdio>

#include "base/error.h"
#include "base/format.h"
#include "base/thread_pool.h"
#include "cli/args.h"
#include "cli/command.h"
#include "model/synth.h"

namespace slm::cli {
namespace {

int run_synth(int argc, char** argv) {
  const Args args(argc, argv, {"--shape", "--type", "--out", "--seed", "--threads"}, {"--help", "--list"},
                  {{"-o", "--out"}, {"-t", "--threads"}});
  if (args.flag("--help") || args.flag("--list")) {
    std::printf("usage: slm synth --shape NAME --type TYPE -o FILE.gguf [--seed S] [-t N]\n\n"
                "shapes (file sizes as written, per type):\n");
    std::printf("  %-16s %-9s %-54s %10s %10s %10s\n", "NAME", "ARCH", "SHAPE", "F16", "Q8_0", "Q4_K_M");
    for (const model::SynthShape& s : model::synth_shapes()) {
      const std::string shape =
          std::to_string(s.n_layer) + " layers, n_embd " + std::to_string(s.n_embd) + ", vocab " +
          std::to_string(s.n_vocab) +
          (s.n_expert ? ", " + std::to_string(s.n_expert) + " experts top " + std::to_string(s.n_expert_used) : "");
      std::printf("  %-16s %-9s %-54s", s.name.c_str(), s.arch.c_str(), shape.c_str());
      for (const char* t : {"F16", "Q8_0", "Q4_K_M"})
        std::printf(" %10s", human_bytes(static_cast<double>(model::synth_file_size(s, t))).c_str());
      std::printf("\n");
    }
    std::printf("\ntypes:");
    for (const std::string& m : model::synth_mixes()) std::printf(" %s", m.c_str());
    std::printf("\n");
    return 0;
  }
  const auto shape = args.get("--shape");
  const auto type = args.get("--type");
  const auto out = args.get("--out");
  if (!shape || !type || !out) throw UsageError("--shape, --type and -o are required (slm synth --list shows the choices)");
  const model::SynthShape& s = model::find_synth_shape(*shape);
  const uint64_t seed = static_cast<uint64_t>(args.get_int("--seed", 1, 0, INT64_MAX));
  ThreadPool pool(static_cast<int>(args.get_int("--threads", 2, 1, 1024)));
  // Progress on a terminal: large shapes take minutes.
  const bool bar = isatty(STDERR_FILENO);
  const uint64_t total = model::synth_file_size(s, *type);
  const uint64_t bytes = model::write_synth(s, *type, *out, seed, pool, [&](size_t i, size_t n, uint64_t done) {
    if (bar)
      std::fprintf(stderr, "\rwriting %s: tensor %zu/%zu, %s of %s ", out->c_str(), i, n,
                   human_bytes(static_cast<double>(done)).c_str(), human_bytes(static_cast<double>(total)).c_str());
  });
  if (bar) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "wrote %s: %s %s, %s\n", out->c_str(), s.name.c_str(), type->c_str(),
               human_bytes(static_cast<double>(bytes)).c_str());
  return 0;
}

}  // namespace

SLM_COMMAND("synth", "write a random-weight model with a real model's shapes", run_synth);

}  // namespace slm::cli
