// slm synth: write a random-weight GGUF with a real model's shapes and
// quantization mix (see model/synth.h).
#include <cstdio>

#include "base/error.h"
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
    std::printf("usage: slm synth --shape NAME --type TYPE -o FILE.gguf [--seed S] [-t N]\n\nshapes:\n");
    for (const model::SynthShape& s : model::synth_shapes())
      std::printf("  %-16s %-9s %2lld layers, n_embd %lld, vocab %lld%s\n", s.name.c_str(), s.arch.c_str(),
                  (long long)s.n_layer, (long long)s.n_embd, (long long)s.n_vocab,
                  s.n_expert ? (", " + std::to_string(s.n_expert) + " experts top " + std::to_string(s.n_expert_used)).c_str() : "");
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
  const uint64_t bytes = model::write_synth(s, *type, *out, seed, pool);
  std::fprintf(stderr, "wrote %s: %s %s, %.1f MB\n", out->c_str(), s.name.c_str(), type->c_str(), bytes / 1e6);
  return 0;
}

}  // namespace

SLM_COMMAND("synth", "write a random-weight model with a real model's shapes", run_synth);

}  // namespace slm::cli
