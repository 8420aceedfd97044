// slm bench: prompt-processing and generation speed like llama-bench's pp/tg
// tests, plus what the numbers mean for a machine: bytes streamed per token
// against the measured memory bandwidth, peak memory, cost and energy.
#include <sys/resource.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "base/cpu.h"
#include "base/error.h"
#include "base/format.h"
#include "base/thread_pool.h"
#include "cli/args.h"
#include "cli/bench_table.h"
#include "cli/command.h"
#include "cli/prune_args.h"
#include "kernels/kernels.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/session.h"

namespace slm::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// XOR of n words (n a multiple of 8), with eight independent accumulators so
// the loop is bound by loads, not by the adds.
uint64_t xor_words_generic(const uint64_t* p, size_t n) {
  uint64_t acc[8] = {};
  for (size_t i = 0; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] ^= p[i + k];
  uint64_t r = 0;
  for (uint64_t a : acc) r ^= a;
  return r;
}

#if defined(__x86_64__)
// The same with 256-bit loads: the baseline SSE2 loop cannot issue enough
// loads to show what the kernels (AVX2/AVX-512) actually pull from memory.
__attribute__((target("avx2"))) uint64_t xor_words_avx2(const uint64_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 16 <= n; i += 16) {
    a0 = _mm256_xor_si256(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_xor_si256(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_xor_si256(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  const __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), a);
  return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
}
uint64_t (*pick_xor_words())(const uint64_t*, size_t) {
  return cpu_features().avx2 ? xor_words_avx2 : xor_words_generic;
}
#else
uint64_t (*pick_xor_words())(const uint64_t*, size_t) {
  return xor_words_generic;
}
#endif

// Read bandwidth with n threads: each sums its share of a buffer far larger
// than the caches; best of several passes, in GB/s.
double measure_bandwidth(ThreadPool& pool) {
  const size_t n_words = (size_t{1} << 30) / sizeof(uint64_t);  // 1 GiB
  std::vector<uint64_t> buf(n_words);
  for (size_t i = 0; i < n_words; ++i) buf[i] = i * 0x9e3779b97f4a7c15ull;
  const int64_t n_tasks = pool.size();
  std::vector<uint64_t> sink(static_cast<size_t>(n_tasks) * 8);
  const auto xor_words = pick_xor_words();
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = Clock::now();
    pool.parallel_for(n_tasks, [&](int64_t task, int) {
      const size_t per = n_words / n_tasks;
      sink[task * 8] = xor_words(buf.data() + task * per, per / 16 * 16);
    });
    best =
        std::max(best, static_cast<double>(n_words * sizeof(uint64_t)) / seconds_since(t0) / 1e9);
  }
  volatile uint64_t keep = std::accumulate(sink.begin(), sink.end(), uint64_t{0});
  (void)keep;
  return best;
}

struct Stat {
  double mean = 0, stddev = 0;
};
Stat stats(const std::vector<double>& v) {
  Stat s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.stddev += (x - s.mean) * (x - s.mean);
  s.stddev = v.size() > 1 ? std::sqrt(s.stddev / static_cast<double>(v.size() - 1)) : 0;
  return s;
}

// Weight bytes one generated token reads: every matrix once, except the
// embedding table (one row) unless it doubles as the output, and for a
// mixture of experts only the chosen experts' share of the expert tensors.
double bytes_per_token(const model::Model& m) {
  const model::ModelConfig& c = m.config();
  const bool tied = m.weights().output.view.data == m.weights().token_embd.data;
  double total = 0;
  for (const gguf::TensorInfo& t : m.file().tensors()) {
    const std::string_view name = t.name;
    double b = static_cast<double>(t.n_bytes);
    if (name == "token_embd.weight" && !tied)
      b = static_cast<double>(t.n_bytes) / static_cast<double>(c.n_vocab);
    if (name.find("_exps.") != std::string_view::npos)
      b *= static_cast<double>(c.n_expert_used) / c.n_expert;
    total += b;
  }
  return total;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t n_vocab, uint64_t seed) {
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    t[i] = static_cast<int32_t>((seed >> 33) % static_cast<uint64_t>(n_vocab));
  }
  return t;
}

Options bench_options() {
  Options o(
      "bench",
      "usage: slm bench [--model] M [--n-prompt 512] [-n 128] [-t N] [-r 3] [--json] [options]\n"
      "       slm bench --bandwidth [-t N]      measure the machine's read bandwidth\n"
      "  pp: tokens/s processing a P-token prompt; tg: tokens/s generating N tokens one by one.\n"
      "  GB/s while generating is weight bytes read per token x tok/s, and its share of the\n"
      "  measured bandwidth; cost per million tokens from --cost-per-hour, energy per token from "
      "--watts.\n");
  add_model_option(o, "a GGUF file; also the first positional argument");
  // Not -p as in llama-bench: -p is the prompt text in every slm command.
  o.value("--n-prompt", "P", "prompt tokens of the pp test; 0: skip it")
      .integer(0, 1 << 16)
      .def("512");
  o.value("--n-predict,-n", "N",
          "tokens generated by the tg test (llama-bench's --n-gen); 0: skip it")
      .integer(0, 1 << 16)
      .def("128")
      .alias("--n-gen");
  o.value(
       "--depth,-d", "D",
       "tokens already in the KV cache before each test (llama-bench's -d), filled once, untimed")
      .integer(0, 1 << 20)
      .def("0");
  add_threads_option(o);
  o.value("--repetitions,-r", "R", "timed runs of each test").integer(1, 1000).def("3");
  o.value("--cost-per-hour", "USD", "machine cost per hour, for cost per million tokens")
      .number(0, 1e6)
      .def("0");
  o.value("--watts", "W", "power draw, for energy per token").number(0, 1e7).def("0");
  o.value("--bandwidth-gbs", "G", "the machine's read bandwidth in GB/s")
      .number(0, 1e6)
      .def_note("measured");
  add_kv_type_option(o);
  add_lora_option(o);
  add_prune_options(o);
  o.flag("--bandwidth", "only measure the machine's read bandwidth");
  o.flag("--json", "print one JSON object");
  return o;
}

int run_bench(int argc, char** argv) {
  const Args args = bench_options().parse(argc, argv);
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const int threads = thread_count(args);
  ThreadPool pool(threads);
  const bool json = args.flag("--json");
  if (args.flag("--bandwidth")) {
    const double bw = measure_bandwidth(pool);
    if (json)
      std::printf("{\"threads\": %d, \"bandwidth_gbs\": %.2f}\n", threads, bw);
    else
      std::printf("read bandwidth with %d thread%s: %.1f GB/s\n", threads, threads > 1 ? "s" : "",
                  bw);
    return 0;
  }
  const auto path = model_argument(args, 0).spec;
  if (!path) throw UsageError("no model given: slm bench M, or --model M (or --bandwidth)");
  const int64_t n_prompt = args.get_int("--n-prompt");
  const int64_t n_gen = args.get_int("--n-predict");
  const int64_t depth = args.get_int("--depth");
  const int reps = static_cast<int>(args.get_int("--repetitions"));
  const double cost_per_hour = args.get_double("--cost-per-hour");
  const double watts = args.get_double("--watts");

  const auto model = model::Model::load(*path, threads);
  apply_prune_options(args, *model);
  const model::ModelConfig& c = model->config();
  // Numbers that would mislead without a word: threads that share cores, and
  // prompts past what the model was trained on (attention there is untested).
  if (threads > static_cast<int>(hw))
    std::fprintf(stderr,
                 "warning: %d threads on %d cores: threads share cores and the numbers drop\n",
                 threads, hw);
  const int64_t n_ctx = depth + std::max(n_prompt, n_gen);
  if (c.n_ctx_train > 0 && n_ctx > c.n_ctx_train)
    std::fprintf(stderr, "warning: %lld tokens exceed the model's training context of %lld\n",
                 (long long)n_ctx, (long long)c.n_ctx_train);
  model::SessionOptions so;
  so.n_ctx = std::max<int64_t>(n_ctx + 1, 16);
  so.n_batch = std::max<int64_t>(1, std::min<int64_t>(n_prompt, 512));
  so.allow_beyond_train_ctx = true;
  so.kv_type = kv_type_option(args);

  std::vector<model::LoraFile> loras;
  for (const std::string& a : args.get_all("--lora"))
    loras.push_back(model::parse_lora_argument(a));
  const auto adapter =
      loras.empty() ? nullptr : model::LoraAdapter::load(*model, loras, lora_type_option(args));
  std::vector<double> pp, tg;
  // One session for every test: the first depth positions are filled once
  // (untimed) and each test starts from them (truncate), as llama-bench's -d.
  model::Session s(*model, so);
  s.set_adapter(adapter.get());
  if (depth > 0) s.feed(random_tokens(depth, c.n_vocab, 99), pool);
  // One untimed warm-up of each test pages the weights in, as llama-bench does.
  const bool show = isatty(STDERR_FILENO) && !json;  // progress: a large model's run takes minutes
  for (int rep = -1; rep < reps; ++rep) {
    if (show)
      std::fprintf(
          stderr, "\r%s",
          rep < 0 ? "warming up..."
                  : ("repetition " + std::to_string(rep + 1) + "/" + std::to_string(reps) + "...")
                        .c_str());
    if (n_prompt > 0) {
      s.truncate(depth);
      const auto toks = random_tokens(n_prompt, c.n_vocab, 42 + rep);
      const auto t0 = Clock::now();
      s.feed(toks, pool);
      if (rep >= 0) pp.push_back(static_cast<double>(n_prompt) / seconds_since(t0));
    }
    if (n_gen > 0) {
      s.truncate(depth);
      const auto toks = random_tokens(n_gen, c.n_vocab, 7 + rep);
      const auto t0 = Clock::now();
      for (const int32_t t : toks) s.decode(t, pool);
      if (rep >= 0) tg.push_back(static_cast<double>(n_gen) / seconds_since(t0));
    }
  }
  if (show) std::fprintf(stderr, "\r\033[K");
  // (cli/common.h's peak_rss_bytes needs the engine; bench is a core command.)
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double peak_rss = static_cast<double>(ru.ru_maxrss) * 1024.0;
  const double bw =
      args.has("--bandwidth-gbs") ? args.get_double("--bandwidth-gbs") : measure_bandwidth(pool);
  const Stat sp = pp.empty() ? Stat{} : stats(pp), sg = tg.empty() ? Stat{} : stats(tg);
  const double bpt = bytes_per_token(*model);
  const double gbs = bpt * sg.mean / 1e9;
  const double file_gbs = static_cast<double>(model->file().file_size()) * sg.mean / 1e9;
  const double usd_gen =
      cost_per_hour > 0 && sg.mean > 0 ? cost_per_hour / (sg.mean * 3600.0) * 1e6 : 0;
  const double usd_pp =
      cost_per_hour > 0 && sp.mean > 0 ? cost_per_hour / (sp.mean * 3600.0) * 1e6 : 0;
  const double j_per_tok = watts > 0 && sg.mean > 0 ? watts / sg.mean : 0;
  std::string types;
  {
    std::vector<std::string> seen;
    for (const gguf::TensorInfo& t : model->file().tensors()) {
      const std::string n(dtype_name(t.type));
      if (t.n_dims >= 2 && std::find(seen.begin(), seen.end(), n) == seen.end()) seen.push_back(n);
    }
    for (const std::string& n : seen) types += (types.empty() ? "" : "+") + n;
  }
  if (json) {
    std::printf(
        "{\"model\": \"%s\", \"arch\": \"%s\", \"types\": \"%s\", \"file_bytes\": %llu, "
        "\"params\": %lld, "
        "\"threads\": %d, \"isa\": \"%s\", \"repetitions\": %d, "
        "\"pp\": {\"n\": %lld, \"tps_mean\": %.3f, \"tps_std\": %.3f}, "
        "\"tg\": {\"n\": %lld, \"tps_mean\": %.3f, \"tps_std\": %.3f}, "
        "\"peak_rss_bytes\": %.0f, \"bytes_per_token\": %.0f, \"tg_gbs\": %.3f, \"bandwidth_gbs\": "
        "%.3f, "
        "\"tg_fraction_of_bandwidth\": %.4f, \"file_fraction_of_bandwidth\": %.4f, "
        "\"usd_per_mtok_generated\": %.6f, \"usd_per_mtok_prompt\": %.6f, \"joules_per_token\": "
        "%.6f, \"depth\": %lld, \"kv_type\": \"%s\", \"kv_bytes\": %llu}\n",
        path->c_str(), c.arch_name.c_str(), types.c_str(),
        (unsigned long long)model->file().file_size(), (long long)model->n_params(), threads,
        std::string(kernels::isa_name(kernels::active_isa())).c_str(), reps, (long long)n_prompt,
        sp.mean, sp.stddev, (long long)n_gen, sg.mean, sg.stddev, peak_rss, bpt, gbs, bw,
        bw > 0 ? gbs / bw : 0, bw > 0 ? file_gbs / bw : 0, usd_gen, usd_pp, j_per_tok,
        (long long)depth, std::string(dtype_name(s.kv_type())).c_str(),
        (unsigned long long)s.cache_bytes());
    return 0;
  }
  std::printf("model: %s (%s, %s, %s, %s params), %d threads, %s kernels\n", path->c_str(),
              c.arch_name.c_str(), types.c_str(),
              human_bytes(static_cast<double>(model->file().file_size())).c_str(),
              human_count(static_cast<double>(model->n_params())).c_str(), threads,
              std::string(kernels::isa_name(kernels::active_isa())).c_str());
  std::vector<BenchRow> rows;
  const std::string at = depth > 0 ? " @ d" + std::to_string(depth) : "";
  if (n_prompt > 0) rows.push_back({"pp" + std::to_string(n_prompt) + at, sp.mean, sp.stddev});
  if (n_gen > 0) rows.push_back({"tg" + std::to_string(n_gen) + at, sg.mean, sg.stddev});
  std::fputs(bench_table(rows).c_str(), stdout);
  std::printf("peak memory: %s; KV cache (%s) %s for %lld positions\n",
              human_bytes(peak_rss).c_str(), std::string(dtype_name(s.kv_type())).c_str(),
              human_bytes(static_cast<double>(s.cache_bytes())).c_str(), (long long)s.n_ctx());
  if (n_gen > 0)
    std::printf(
        "generation streams %s/token = %.1f GB/s, %.0f%% of the measured %.1f GB/s (ceiling %.1f "
        "tok/s)\n",
        human_bytes(bpt).c_str(), gbs, bw > 0 ? 100 * gbs / bw : 0, bw,
        bw > 0 ? bw * 1e9 / bpt : 0);
  if (cost_per_hour > 0)
    std::printf(
        "cost at $%.3f/hour: $%.4f per million generated tokens, $%.4f per million prompt tokens\n",
        cost_per_hour, usd_gen, usd_pp);
  if (watts > 0) std::printf("energy at %.0f W: %.3f J per generated token\n", watts, j_per_tok);
  return 0;
}

}  // namespace

SLM_COMMAND("bench", "measure speed, memory, bandwidth use and cost", bench_options, run_bench);

}  // namespace slm::cli
