// Batched decoding with and without LoRA adapters, side by side in one
// process: N sequences decode together, all on the base model or spread over
// A random adapters of rank R on all seven projections (q, k, v, o, gate, up,
// down), stream i on adapter i mod A. The two cases alternate step by step
// (each with its own sessions, at the same positions), so a shared machine's
// noise falls on both alike; the median step time of each gives tokens/s and
// their ratio, by wall time and by the process's CPU time (a busy shared machine
// stretches the first; the second counts only this process's work).
//
// Usage: bench_lora MODEL.gguf [--streams 8] [--adapters 4] [--rank 16]
//                   [--prompt 128] [--steps 64] [-t threads] [--q8]
// (--q8: the adapters' factors in 8 bits, backend::LoraType::kQ8.)
// (bench/bench_serve.mjs --adapters measures the same through the server.)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "model/forward.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/session.h"
#include "stats.h"

using namespace slm;
using slm::bench::median;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// CPU time of the whole process (every thread of the pool, spinning included).
double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Random rank-r pairs on every projection of every layer, PEFT-like scale
// (A ~ 1/sqrt(n_in), B small).
std::shared_ptr<const model::LoraAdapter> random_adapter(const model::Model& m, int64_t r,
                                                         uint32_t seed, backend::LoraType type) {
  std::mt19937 rng(seed);
  std::vector<model::LoraAdapter::Tensors> ts;
  const char* names[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                         "ffn_gate", "ffn_up", "ffn_down"};
  for (int64_t l = 0; l < m.config().n_layer; ++l) {
    const model::LayerWeights& lw = m.weights().layers[static_cast<size_t>(l)];
    const backend::Linear* ws[] = {&lw.wq,       &lw.wk,     &lw.wv,      &lw.wo,
                                   &lw.ffn_gate, &lw.ffn_up, &lw.ffn_down};
    for (int i = 0; i < 7; ++i) {
      model::LoraAdapter::Tensors t;
      t.name = "blk." + std::to_string(l) + "." + names[i] + ".weight";
      t.rank = r;
      const int64_t n_in = ws[i]->cols(), n_out = ws[i]->rows();
      std::normal_distribution<float> da(0.0f, 1.0f / std::sqrt(static_cast<float>(n_in))),
          db(0.0f, 0.01f);
      t.a.resize(static_cast<size_t>(r * n_in));
      t.b.resize(static_cast<size_t>(r * n_out));
      for (float& x : t.a) x = da(rng);
      for (float& x : t.b) x = db(rng);
      ts.push_back(std::move(t));
    }
  }
  return model::LoraAdapter::from_tensors(m, std::move(ts), "random" + std::to_string(seed), type);
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  int64_t streams = 8, n_adapters = 4, rank = 16, prompt = 128, steps = 64;
  int threads = static_cast<int>(std::min(8u, std::max(1u, std::thread::hardware_concurrency())));
  backend::LoraType type = backend::LoraType::kF16;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--q8") {
      type = backend::LoraType::kQ8;
      continue;
    }
    auto next = [&]() -> int64_t {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::atoll(argv[++i]);
    };
    if (a == "--streams")
      streams = next();
    else if (a == "--adapters")
      n_adapters = next();
    else if (a == "--rank")
      rank = next();
    else if (a == "--prompt")
      prompt = next();
    else if (a == "--steps")
      steps = next();
    else if (a == "-t")
      threads = static_cast<int>(next());
    else
      path = a;
  }
  if (path.empty() || streams < 1 || n_adapters < 1 || rank < 1 || prompt < 1 || steps < 1 ||
      threads < 1) {
    std::fprintf(
        stderr,
        "usage: bench_lora MODEL.gguf [--streams 8] [--adapters 4] [--rank 16] [--prompt 128] "
        "[--steps 64] [-t threads] [--q8]\n");
    return 2;
  }
  try {
    const auto m = model::Model::load(path);
    ThreadPool pool(threads);
    std::vector<std::shared_ptr<const model::LoraAdapter>> adapters;
    for (int64_t a = 0; a < n_adapters; ++a)
      adapters.push_back(random_adapter(*m, rank, static_cast<uint32_t>(a + 1), type));
    model::SessionOptions so;
    so.n_ctx = prompt + steps + 8;
    so.kv_type = DType::F16;
    // Case 0: every stream on the base; case 1: stream i on adapter i mod A.
    std::vector<std::unique_ptr<model::Session>> sessions[2];
    model::Scratch scratch(m->config(), std::max<int64_t>(streams, prompt));
    const int64_t n_vocab = m->config().n_vocab;
    std::vector<int32_t> ids(static_cast<size_t>(prompt));
    for (int c = 0; c < 2; ++c)
      for (int64_t s = 0; s < streams; ++s) {
        sessions[c].push_back(std::make_unique<model::Session>(*m, so));
        for (int64_t i = 0; i < prompt; ++i)
          ids[static_cast<size_t>(i)] = static_cast<int32_t>(3 + (s * 7919 + i * 104729) % 497);
        const model::SeqChunk ch{
            sessions[c].back().get(),
            ids,
            nullptr,
            false,
            nullptr,
            c == 1 ? adapters[static_cast<size_t>(s % n_adapters)].get() : nullptr};
        model::forward(*m, std::span<const model::SeqChunk>(&ch, 1), scratch, pool);
      }
    std::vector<float> logits(static_cast<size_t>(streams * n_vocab));
    std::vector<int32_t> tok(static_cast<size_t>(streams));
    std::vector<double> times[2], cpu[2];
    for (int64_t step = 0; step < steps; ++step)
      for (int c0 = 0; c0 < 2; ++c0) {
        const int c = static_cast<int>((step + c0) % 2);  // alternate which case goes first
        std::vector<model::SeqChunk> chunks;
        for (int64_t s = 0; s < streams; ++s) {
          tok[static_cast<size_t>(s)] = static_cast<int32_t>(3 + (s * 31 + step * 17) % 497);
          chunks.push_back(
              {sessions[c][static_cast<size_t>(s)].get(),
               std::span<const int32_t>(&tok[static_cast<size_t>(s)], 1),
               logits.data() + s * n_vocab, false, nullptr,
               c == 1 ? adapters[static_cast<size_t>(s % n_adapters)].get() : nullptr});
        }
        const double t0 = now(), c0_ = cpu_now();
        model::forward(*m, chunks, scratch, pool);
        times[c].push_back(now() - t0);
        cpu[c].push_back(cpu_now() - c0_);
      }
    const double base = median(times[0]), lora = median(times[1]);
    std::printf(
        "model %s, %s, %d threads, %lld streams, %lld adapters of rank %lld (%s factors), prompt "
        "%lld, %lld steps\n",
        path.c_str(), std::string(kernels::isa_detail(kernels::active_isa())).c_str(), threads,
        static_cast<long long>(streams), static_cast<long long>(n_adapters),
        static_cast<long long>(rank), type == backend::LoraType::kQ8 ? "8-bit" : "F16",
        static_cast<long long>(prompt), static_cast<long long>(steps));
    const double base_cpu = median(cpu[0]), lora_cpu = median(cpu[1]);
    std::printf("median step  wall ms   tok/s   cpu ms (all threads)\n");
    std::printf("base      %8.2f %7.1f %8.2f\n", base * 1e3, static_cast<double>(streams) / base,
                base_cpu * 1e3);
    std::printf("adapters  %8.2f %7.1f %8.2f\n", lora * 1e3, static_cast<double>(streams) / lora,
                lora_cpu * 1e3);
    std::printf("ratio     %.3f wall, %.3f cpu (adapters / base tokens/s)\n", base / lora,
                base_cpu / lora_cpu);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_lora: %s\n", e.what());
    return 1;
  }
  return 0;
}
