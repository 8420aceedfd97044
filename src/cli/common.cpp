#include "cli/common.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>

#include "base/error.h"
#include "engine/constraint.h"
#include "grammar/grammar.h"
#include "store/store.h"

namespace slm::cli {

void add_generate_options(Options& o) {
  add_model_option(o);
  o.value("--n-predict,-n", "N", "tokens to generate; -1: until end of text or a full context")
      .integer(-1, int64_t{1} << 30)
      .def("-1");
  o.value("--ctx-size,-c", "N", "context size in tokens; 0: the model's training context")
      .integer(0, int64_t{1} << 24)
      .def("0");
  add_threads_option(o);
  o.value("--batch-size,-b", "N", "prompt tokens processed per forward step")
      .integer(1, 4096)
      .def("256");
  // Ranges beyond "a number" are the sampler's own (engine::validate, shared
  // with the server), checked in generate_options.
  o.value("--seed,-s", "S", "sampling seed").integer(0, INT64_MAX).def_note("random");
  o.value("--temp", "T", "temperature; 0: greedy").number().def("0.8");
  o.value("--top-k", "K", "keep the K most likely tokens; 0: all").integer(0, INT32_MAX).def("40");
  o.value("--top-p", "P", "nucleus sampling: keep the smallest set with probability P")
      .number()
      .def("0.95");
  o.value("--min-p", "P", "drop tokens below P times the top token's probability")
      .number()
      .def("0.05");
  o.value("--repeat-penalty", "R", "penalty for tokens seen in the last --repeat-last-n")
      .number()
      .def("1.0");
  o.value("--repeat-last-n", "N", "tokens the penalties look back over; -1: the whole context")
      .integer(-1, 1 << 30)
      .def("64");
  o.value("--presence-penalty", "P", "penalty for any token already present").number().def("0.0");
  o.value("--frequency-penalty", "F", "penalty per occurrence of a token").number().def("0.0");
  o.value("--logit-bias", "ID=BIAS", "add BIAS to token ID's logit (BIAS may be -inf)")
      .repeatable();
  o.value("--stop", "S", "stop when the text contains S (never printed)").repeatable();
  o.value("--grammar", "F.gbnf", "constrain the output to a GBNF grammar");
  o.value("--json-schema", "F.json", "constrain the output to JSON valid under a JSON Schema");
  o.flag("--json-object", "constrain the output to one JSON object");
  o.flag("--context-shift", "when the context fills, drop old tokens and continue");
  o.value("--keep", "N", "tokens at the start that --context-shift keeps")
      .integer(0, int64_t{1} << 30)
      .def("0");
  o.flag("--allow-long-context", "permit a context beyond the model's training length");
  add_kv_type_option(o);
  add_lora_option(o);
  add_draft_options(o);
  add_prune_options(o);
}

namespace {

// Reads every page of the mapping once so the first token does not stall on
// disk, drawing a bar on a terminal. Small files skip this.
void warm_pages(const model::Model& m) {
  const gguf::File& f = m.file();
  constexpr uint64_t kShowFrom = 64ull << 20;
  if (f.file_size() < kShowFrom || !isatty(STDERR_FILENO) || f.tensors().empty()) return;
  const uint8_t* base = f.tensors().front().data - f.tensors().front().offset;
  const uint64_t total = f.file_size() - f.data_offset();
  volatile uint8_t sink = 0;
  int last = -1;
  for (uint64_t off = 0; off < total; off += 4096) {
    sink = sink + base[off];
    const int pct = static_cast<int>(off * 100 / total);
    if (pct != last) {
      std::fprintf(stderr, "\rloading %s  [%-40s] %3d%%", f.name().c_str(),
                   std::string(pct * 40 / 100, '#').c_str(), pct);
      last = pct;
    }
  }
  std::fprintf(stderr, "\r\033[K");
}

}  // namespace

std::unique_ptr<model::Model> load_model(const Args& args) {
  return load_model(model_argument(args, SIZE_MAX).spec, thread_count(args));
}

std::unique_ptr<model::Model> load_model(const std::optional<std::string>& spec, int threads) {
  const store::ResolvedModel r = store::resolve_model(spec);
  auto m = model::Model::load(r.path, threads);
  warm_pages(*m);
  return m;
}

std::unique_ptr<model::Model> load_draft_model(const Args& args) {
  if (!args.has("--draft-model")) return nullptr;
  return load_model(args.get("--draft-model"), thread_count(args));
}

engine::GenerateOptions generate_options(const Args& args, int64_t n_vocab) {
  engine::GenerateOptions o;
  o.n_predict = args.get_int("--n-predict");
  engine::SamplerParams& s = o.sampling;
  s.temperature = static_cast<float>(args.get_double("--temp"));
  const int64_t top_k = args.get_int("--top-k");
  if (top_k > n_vocab)
    throw UsageError("option " + args.shown("--top-k") + ": " + std::to_string(top_k) +
                     " is out of range [0, " + std::to_string(n_vocab) +
                     "] (the model's vocabulary)");
  s.top_k = static_cast<int32_t>(top_k);
  s.top_p = static_cast<float>(args.get_double("--top-p"));
  s.min_p = static_cast<float>(args.get_double("--min-p"));
  s.repeat_penalty = static_cast<float>(args.get_double("--repeat-penalty"));
  s.repeat_last_n = static_cast<int32_t>(args.get_int("--repeat-last-n"));
  s.presence_penalty = static_cast<float>(args.get_double("--presence-penalty"));
  s.frequency_penalty = static_cast<float>(args.get_double("--frequency-penalty"));
  if (args.has("--seed")) {
    s.seed = static_cast<uint64_t>(args.get_int("--seed"));
  } else {
    s.seed = std::random_device{}();
  }
  for (const std::string& b : args.get_all("--logit-bias")) {
    const size_t eq = b.find('=');
    char* end = nullptr;
    const long long id = eq == std::string::npos ? -1 : std::strtoll(b.c_str(), &end, 10);
    if (eq == std::string::npos || end != b.c_str() + eq || id < 0 || id >= n_vocab)
      throw UsageError(args.shown("--logit-bias") + ": expected ID=BIAS with ID in 0.." +
                       std::to_string(n_vocab - 1) + ", got '" + b + "'");
    const std::string bias_text = b.substr(eq + 1);
    float bias;
    if (bias_text == "-inf" || bias_text == "-INF") {
      bias = -INFINITY;
    } else {
      char* bend = nullptr;
      bias = std::strtof(bias_text.c_str(), &bend);
      if (bias_text.empty() || *bend != '\0' || !std::isfinite(bias))
        throw UsageError(args.shown("--logit-bias") + ": bad bias in '" + b + "'");
    }
    s.logit_bias[static_cast<int32_t>(id)] = bias;
  }
  // An out-of-range value on the command line is a usage error (exit 2),
  // named as the user typed the option ("sampler: top_p ..." -> "--top-p ...").
  try {
    engine::validate(s, n_vocab);
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.rfind("sampler: ", 0) == 0) msg = msg.substr(9);
    static const std::pair<const char*, const char*> kFlags[] = {
        {"temperature", "--temp"},
        {"top_p", "--top-p"},
        {"min_p", "--min-p"},
        {"repeat_penalty", "--repeat-penalty"},
        {"repeat_last_n", "--repeat-last-n"},
        {"presence_penalty", "--presence-penalty"},
        {"frequency_penalty", "--frequency-penalty"},
        {"top_k", "--top-k"}};
    for (const auto& [field, flag] : kFlags)
      if (msg.rfind(std::string(field) + " ", 0) == 0)
        msg = args.shown(flag) + msg.substr(std::strlen(field));
    throw UsageError(msg);
  }
  o.stops = args.get_all("--stop");
  o.context_shift = args.flag("--context-shift");
  o.n_keep = args.get_int("--keep");
  o.grammar = output_grammar(args);
  return o;
}

std::shared_ptr<const grammar::Grammar> output_grammar(const Args& args) {
  std::vector<std::string> given;
  for (const char* name : {"--grammar", "--json-schema", "--json-object"})
    if (args.has(name)) given.push_back(args.shown(name));
  if (given.empty()) return nullptr;
  if (given.size() > 1)
    throw UsageError("give one output constraint: " + given[0] + " and " + given[1] +
                     " cannot be used together");
  if (args.flag("--json-object")) return engine::json_object_grammar();
  const bool gbnf = args.has("--grammar");
  const std::string path = *args.get(gbnf ? "--grammar" : "--json-schema");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open " + (gbnf ? "grammar" : "JSON Schema") + " file");
  const std::string text(std::istreambuf_iterator<char>(in), {});
  try {
    if (gbnf) return std::make_shared<const grammar::Grammar>(grammar::parse_gbnf(text));
    std::vector<std::string> warnings;
    auto g = engine::schema_grammar(text, {}, &warnings);
    for (const std::string& w : warnings)
      std::fprintf(stderr, "warning: %s: %s\n", path.c_str(), w.c_str());
    return g;
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    // "F.gbnf:3:7: ..." or "F.json: json schema: /properties/x: ..."
    throw UsageError(path + (gbnf ? ":" : ": ") + e.what());
  }
}

std::shared_ptr<const model::LoraAdapter> lora_option(const Args& args, const model::Model& model) {
  std::vector<model::LoraFile> files;
  for (const std::string& a : args.get_all("--lora"))
    files.push_back(model::parse_lora_argument(a));
  if (files.empty()) return nullptr;
  return model::LoraAdapter::load(model, files, lora_type_option(args));
}

model::SessionOptions session_options(const Args& args) {
  model::SessionOptions so;
  so.n_ctx = args.get_int("--ctx-size");
  so.n_batch = args.get_int("--batch-size");
  so.allow_beyond_train_ctx = args.flag("--allow-long-context");
  so.kv_type = kv_type_option(args);
  return so;
}

engine::GenerateResult generate(engine::Generator& gen, std::span<const int32_t> prompt,
                                const engine::GenerateOptions& options,
                                const std::function<void(std::string_view)>& on_text,
                                const std::atomic<bool>* cancel) {
  try {
    return gen.generate(prompt, options, on_text, cancel);
  } catch (const engine::RequestError& e) {
    if (e.problem() != engine::RequestError::Problem::kPromptTooLong) throw;
    throw Error(std::string(e.what()) + " (raise it with --ctx-size)");
  }
}

int64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;  // ru_maxrss is in KiB on Linux
}

std::string timing_line(const engine::GenerateResult& r) {
  const int64_t fed = r.n_prompt - r.n_prompt_reused;
  const double pp = r.prompt_ms > 0 ? fed * 1000.0 / r.prompt_ms : 0;
  const int64_t n_gen = static_cast<int64_t>(r.tokens.size());
  // The first token comes from the prompt pass; the rate covers the rest.
  const double tg = r.gen_ms > 0 && n_gen > 1 ? (n_gen - 1) * 1000.0 / r.gen_ms : 0;
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "prompt %lld tok (%lld reused), %.1f tok/s | generation %lld tok, %.1f tok/s | "
                "first token %.1f ms | peak memory %.1f MiB",
                (long long)r.n_prompt, (long long)r.n_prompt_reused, pp, (long long)n_gen, tg,
                r.ttft_ms, static_cast<double>(peak_rss_bytes()) / (1024.0 * 1024.0));
  std::string line = buf;
  if (r.n_drafted > 0)
    line += " | drafts " + std::to_string(r.n_accepted) + "/" + std::to_string(r.n_drafted) +
            " accepted";
  return line;
}

}  // namespace slm::cli
