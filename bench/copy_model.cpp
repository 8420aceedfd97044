// Writes a model that copies its input (copy_model.h): TinyLlama-1.1B's
// shapes, Q4_0 filler with a Q6_K head, an induction head in layers 0-1 and
// the tokenizer of another GGUF, so speculative decoding by prompt lookup
// can be timed on a memory-bound model that really quotes its prompt:
//   build/bench/copy_model OUT.gguf --tokenizer-from ../shared/fixtures/models/tiny-llama.gguf
//   bench/spec_bench.sh OUT.gguf bench/prompts/summary.txt
// Options: --layers N (22), --ctx N (2048), --filler TYPE (Q4_0), --head TYPE
// (Q6_K), --built TYPE (Q8_0: layers 0-1's attention), --embd-type TYPE (Q8_0),
// --seed N (1), --threads N (2), --permute 1 (emit a fixed permutation of
// the copied token: text that never quotes the prompt, for the free-writing case); smaller models
// for experiments: --embd N (2048), --heads N (32), --kv-heads N (4), --ff N (5632). The file is
// ~0.6 GB; nothing of the tokenizer's source is stored in the repository (it is read at run time).
#include "copy_model.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>

#include "base/dtype.h"
#include "base/thread_pool.h"
#include "gguf/gguf.h"

using namespace slm;

namespace {

DType type_arg(const std::string& v) {
  const auto t = dtype_from_name(v);
  if (!t) throw std::runtime_error("unknown type '" + v + "'");
  return *t;
}

}  // namespace

int main(int argc, char** argv) {
  const char* usage =
      "usage: copy_model OUT.gguf --tokenizer-from MODEL.gguf [--layers N] [--ctx N] [--filler "
      "TYPE] "
      "[--head TYPE] [--built TYPE] [--embd-type TYPE] [--embd N] [--heads N] [--kv-heads N] [--ff "
      "N] "
      "[--seed N] [--threads N] [--permute 1]\n";
  if (argc < 2) {
    std::fputs(usage, stderr);
    return 2;
  }
  try {
    const std::string out = argv[1];
    std::string tok_path;
    bench::CopyModelShape shape;
    int threads = 2;
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (i + 1 >= argc) throw std::runtime_error("missing value after " + a);
      const std::string v = argv[++i];
      if (a == "--tokenizer-from")
        tok_path = v;
      else if (a == "--layers")
        shape.n_layer = std::stoll(v);
      else if (a == "--ctx")
        shape.n_ctx = std::stoll(v);
      else if (a == "--embd")
        shape.n_embd = std::stoll(v);
      else if (a == "--heads")
        shape.n_head = std::stoll(v);
      else if (a == "--kv-heads")
        shape.n_head_kv = std::stoll(v);
      else if (a == "--ff")
        shape.n_ff = std::stoll(v);
      else if (a == "--built")
        shape.built = type_arg(v);
      else if (a == "--embd-type")
        shape.embd = type_arg(v);
      else if (a == "--filler")
        shape.filler = type_arg(v);
      else if (a == "--head")
        shape.head = type_arg(v);
      else if (a == "--seed")
        shape.seed = std::stoull(v);
      else if (a == "--permute")
        shape.permute = v == "1";
      else if (a == "--threads")
        threads = std::stoi(v);
      else
        throw std::runtime_error("unknown option " + a);
    }
    if (tok_path.empty()) throw std::runtime_error("--tokenizer-from is required");
    const auto tok = gguf::File::open(tok_path);
    ThreadPool pool(threads);
    const gguf::Writer w = bench::copy_model_writer(shape, *tok, pool);
    w.write(out, [](size_t done, size_t total, uint64_t bytes) {
      std::fprintf(stderr, "\r%zu/%zu tensors, %.0f MB", done, total,
                   static_cast<double>(bytes) / 1e6);
    });
    std::fprintf(stderr, "\nwrote %s\n", out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "copy_model: %s\n%s", e.what(), usage);
    return 1;
  }
}
