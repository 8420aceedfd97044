// slm quantize: convert a GGUF model to another type or quantization mix
// (see model/quantize.h and model/quant_mix.h).
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>

#include "base/error.h"
#include "base/format.h"
#include "base/thread_pool.h"
#include "cli/args.h"
#include "cli/command.h"
#include "model/imatrix.h"
#include "model/quant_mix.h"
#include "model/quantize.h"

namespace slm::cli {
namespace {

std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_quantize_signal(int) {
  g_interrupted.store(true);
}

Options quantize_options() {
  std::string types = "types:";
  for (const std::string& m : model::quant_mix_names()) types += " " + m;
  types += "\n       (Q3_K, Q4_K and Q5_K are aliases of the _M mixes)";
  Options o("quantize",
            "usage: slm quantize IN.gguf OUT.gguf TYPE [--pure] [-t N] [--imatrix F] "
            "[--allow-requantize]\n"
            "  Converts every tensor of IN to the type TYPE gives it, as llama-quantize does, and "
            "writes OUT\n"
            "  (only once complete: nothing is left behind on an error or Ctrl-C).\n",
            types);
  o.flag("--pure", "every matrix of TYPE itself, embeddings and output included (norms stay F32)");
  add_threads_option(o);
  o.value("--imatrix", "F",
          "llama.cpp importance matrix (.dat or GGUF) weighting every type below Q8_0");
  o.flag("--allow-requantize",
         "accept an already quantized input (dequantized, then quantized again)");
  return o;
}

int run_quantize(int argc, char** argv) {
  const Args args = quantize_options().parse(argc, argv);
  const std::vector<std::string>& pos = args.positional();
  if (pos.size() < 3) throw UsageError("IN.gguf, OUT.gguf and TYPE are required");
  if (pos.size() > 3) throw UsageError("unexpected argument '" + pos[3] + "'");
  model::QuantizeOptions opt;
  opt.type = pos[2];
  if (model::find_quant_mix(opt.type) == nullptr)
    throw UsageError("unknown TYPE '" + opt.type + "' (the help lists the types)");
  opt.pure = args.flag("--pure");
  opt.allow_requantize = args.flag("--allow-requantize");
  ThreadPool pool(thread_count(args));

  model::Imatrix imatrix;
  if (const auto f = args.get("--imatrix")) {
    imatrix = model::Imatrix::load(*f);
    opt.imatrix = &imatrix;
    std::fprintf(stderr, "imatrix %s: %zu entries\n", f->c_str(), imatrix.size());
  }

  struct sigaction sa {};
  sa.sa_handler = on_quantize_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  opt.cancel = &g_interrupted;

  const auto progress = [](int64_t i, int64_t n, const model::QuantizeStep& s) {
    const std::string from(dtype_name(s.from)), to(dtype_name(s.to));
    std::fprintf(stderr, "[%4lld/%4lld] %-36s %-6s -> %-6s %10s -> %10s%s\n",
                 static_cast<long long>(i + 1), static_cast<long long>(n), s.name.c_str(),
                 from.c_str(), to.c_str(), human_bytes(static_cast<double>(s.bytes_in)).c_str(),
                 human_bytes(static_cast<double>(s.bytes_out)).c_str(),
                 s.importance ? " (imatrix)" : "");
  };
  const model::QuantizeResult r = model::quantize_file(pos[0], pos[1], opt, pool, progress);
  std::fprintf(
      stderr, "wrote %s: %s%s, %lld tensors (%lld converted, %lld with imatrix), %s -> %s\n",
      pos[1].c_str(), opt.type.c_str(), opt.pure ? " (pure)" : "",
      static_cast<long long>(r.n_tensors), static_cast<long long>(r.n_converted),
      static_cast<long long>(r.n_weighted), human_bytes(static_cast<double>(r.bytes_in)).c_str(),
      human_bytes(static_cast<double>(r.bytes_out)).c_str());
  if (opt.imatrix != nullptr && r.n_weighted == 0)
    std::fprintf(stderr,
                 "note: no tensor used the imatrix (Q8_0 and float types take no weights, and "
                 "only tensors the file names do)\n");
  return 0;
}

}  // namespace

SLM_COMMAND("quantize", "convert a model to another type or quantization mix (Q4_K_M, Q8_0, ...)",
            quantize_options, run_quantize);

}  // namespace slm::cli
