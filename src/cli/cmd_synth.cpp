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

// The shapes and types to choose from, with the file size of each shape per type.
std::string shapes_text() {
  std::string out = "shapes (file sizes as written, per type):\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-16s %-9s %-54s %10s %10s %10s\n", "NAME", "ARCH", "SHAPE",
                "F16", "Q8_0", "Q4_K_M");
  out += line;
  for (const model::SynthShape& s : model::synth_shapes()) {
    const std::string shape = std::to_string(s.n_layer) + " layers, n_embd " +
                              std::to_string(s.n_embd) + ", vocab " + std::to_string(s.n_vocab) +
                              (s.n_expert ? ", " + std::to_string(s.n_expert) + " experts top " +
                                                std::to_string(s.n_expert_used)
                                          : "");
    std::snprintf(line, sizeof line, "  %-16s %-9s %-54s", s.name.c_str(), s.arch.c_str(),
                  shape.c_str());
    out += line;
    for (const char* t : {"F16", "Q8_0", "Q4_K_M"}) {
      std::snprintf(line, sizeof line, " %10s",
                    human_bytes(static_cast<double>(model::synth_file_size(s, t))).c_str());
      out += line;
    }
    out += "\n";
  }
  out += "types:";
  for (const std::string& m : model::synth_mixes()) out += " " + m;
  return out + "\n";
}

Options synth_options() {
  Options o("synth",
            "usage: slm synth --shape NAME --type TYPE -o FILE.gguf [--seed S] [-t N]\n"
            "  Writes a model with random weights and the shapes of a real one (for benchmarks).\n",
            shapes_text());
  o.value("--shape", "NAME", "the model shape (listed below; required)");
  o.value("--type", "TYPE", "the type or quantization mix (listed below; required)");
  o.value("--out,-o", "FILE.gguf", "the file to write (required)");
  o.value("--seed,-s", "S", "random seed of the weights").integer(0, INT64_MAX).def("1");
  o.value("--threads,-t", "N", "threads").integer(1, 1024).def("2");
  o.flag("--list", "list the shapes and types");
  return o;
}

int run_synth(int argc, char** argv) {
  const Args args = synth_options().parse(argc, argv);
  if (args.flag("--list")) {
    std::fputs(shapes_text().c_str(), stdout);
    return 0;
  }
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  const auto shape = args.get("--shape");
  const auto type = args.get("--type");
  const auto out = args.get("--out");
  if (!shape || !type || !out)
    throw UsageError("--shape, --type and -o are required (slm synth --list shows the choices)");
  const model::SynthShape& s = model::find_synth_shape(*shape);
  const uint64_t seed = static_cast<uint64_t>(args.get_int("--seed"));
  ThreadPool pool(static_cast<int>(args.get_int("--threads")));
  // Progress on a terminal: large shapes take minutes.
  const bool bar = isatty(STDERR_FILENO);
  const uint64_t total = model::synth_file_size(s, *type);
  const uint64_t bytes =
      model::write_synth(s, *type, *out, seed, pool, [&](size_t i, size_t n, uint64_t done) {
        if (bar)
          std::fprintf(stderr, "\rwriting %s: tensor %zu/%zu, %s of %s ", out->c_str(), i, n,
                       human_bytes(static_cast<double>(done)).c_str(),
                       human_bytes(static_cast<double>(total)).c_str());
      });
  if (bar) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "wrote %s: %s %s, %s\n", out->c_str(), s.name.c_str(), type->c_str(),
               human_bytes(static_cast<double>(bytes)).c_str());
  return 0;
}

}  // namespace

SLM_COMMAND("synth", "write a random-weight model with a real model's shapes", synth_options,
            run_synth);

}  // namespace slm::cli
