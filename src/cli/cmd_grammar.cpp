// slm grammar: check a document against a GBNF grammar or a JSON Schema, or
// print the GBNF a schema compiles to. Exit codes (check): 0 the document is
// in the language, 1 it is not (the offending byte offset is printed), 2 usage
// errors, unreadable files and grammars or schemas that do not compile.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/args.h"
#include "cli/command.h"
#include "engine/grammar_processor.h"
#include "gguf/gguf.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "grammar/matcher.h"
#include "grammar/token_mask.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {
namespace {

Options grammar_options() {
  Options o(
      "grammar",
      "usage: slm grammar check (--grammar F.gbnf | --json-schema F.json) --input DOC\n"
      "       slm grammar gbnf --json-schema F.json\n"
      "       slm grammar bench --model M (--grammar F.gbnf | --json-schema F.json) --input DOC\n"
      "  check  exits 0 when DOC is in the language, 1 with the offending byte offset\n"
      "         when it is not, 2 on usage errors or a grammar that does not compile\n"
      "  gbnf   prints the GBNF grammar a JSON Schema compiles to\n"
      "  bench  tokenizes DOC with the model's vocabulary and times the allowed-token\n"
      "         mask before each token (one thread); prints JSON (times in us)\n");
  o.value("--grammar", "F.gbnf", "a GBNF grammar");
  o.value("--json-schema", "F.json", "a JSON Schema");
  o.value("--input", "DOC", "the document to check or time");
  add_model_option(o, "bench: the model whose vocabulary tokenizes DOC");
  o.flag(
      "--strict",
      "refuse a oneOf whose branches may overlap (otherwise: compiled as anyOf, with a warning)");
  return o;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

using Clock = std::chrono::steady_clock;
double micros(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

std::shared_ptr<const grammar::Grammar> load_grammar(const Args& args) {
  const auto gbnf = args.get("--grammar");
  const auto schema = args.get("--json-schema");
  if (gbnf.has_value() == schema.has_value())
    throw Error("give exactly one of --grammar or --json-schema");
  if (gbnf) {
    try {
      return std::make_shared<const grammar::Grammar>(grammar::parse_gbnf(read_file(*gbnf)));
    } catch (const Error& e) {
      throw Error(*gbnf + ":" + e.what());
    }
  }
  grammar::SchemaOptions options;
  options.strict_one_of = args.flag("--strict");
  std::vector<std::string> warnings;
  try {
    auto g = std::make_shared<const grammar::Grammar>(
        grammar::compile_json_schema(read_file(*schema), options, &warnings));
    for (const std::string& w : warnings)
      std::fprintf(stderr, "warning: %s: %s\n", schema->c_str(), w.c_str());
    return g;
  } catch (const Error& e) {
    throw Error(*schema + ": " + e.what());
  }
}

std::string show_byte(unsigned char b) {
  char buf[16];
  if (b >= 0x20 && b < 0x7F)
    std::snprintf(buf, sizeof buf, "'%c'", b);
  else
    std::snprintf(buf, sizeof buf, "0x%02X", b);
  return buf;
}

int check(const Args& args) {
  const auto input = args.get("--input");
  if (!input) throw Error("--input is required");
  const auto g = load_grammar(args);
  const std::string doc = read_file(*input);
  grammar::Matcher m(g);
  size_t n = 0;
  try {
    n = m.accept(doc);
  } catch (const Error& e) {
    std::printf("rejected: %s (near byte %zu)\n", e.what(), n);
    return 1;
  }
  if (n < doc.size()) {
    std::printf("rejected at byte %zu: %s cannot continue the document\n", n,
                show_byte(static_cast<unsigned char>(doc[n])).c_str());
    return 1;
  }
  if (!m.is_complete()) {
    std::printf("rejected at byte %zu: the document ends before the grammar is complete\n", n);
    return 1;
  }
  std::printf("accepted (%zu bytes)\n", doc.size());
  return 0;
}

int bench(const Args& args) {
  const auto model = args.get("--model");
  const auto input = args.get("--input");
  if (!model || !input) throw Error("--model and --input are required");
  const std::string doc = read_file(*input);
  const auto t0 = Clock::now();
  const auto g = load_grammar(args);
  const auto t1 = Clock::now();
  const auto tok = tokenizer::Tokenizer::from_gguf(*gguf::File::open(*model));
  const auto t2 = Clock::now();
  const auto vocab =
      std::make_shared<const engine::GrammarVocab>(engine::grammar_token_bytes(tok), tok.eog_ids());
  const auto t3 = Clock::now();
  const auto ids = tok.encode(doc, /*add_special=*/false, /*parse_special=*/false);
  grammar::Matcher m(g);
  grammar::MaskComputer mc(vocab->trie);
  std::vector<uint64_t> mask;
  std::vector<double> times;
  double visited = 0, allowed = 0, states = 0;
  for (size_t i = 0; i <= ids.size(); ++i) {
    const auto a = Clock::now();
    mc.compute(m, mask);
    times.push_back(micros(a, Clock::now()));
    visited += static_cast<double>(mc.last_visited());
    states += static_cast<double>(mc.last_states());
    for (uint64_t w : mask) allowed += static_cast<double>(__builtin_popcountll(w));
    if (i == ids.size()) break;
    const auto id = static_cast<size_t>(ids[i]);
    const std::string& b = vocab->bytes[id];
    if (!((mask[id >> 6] >> (id & 63)) & 1) || m.accept(b) != b.size()) {
      std::printf("rejected: token %zu (id %zu) of the document is not allowed by the grammar\n", i,
                  id);
      return 1;
    }
  }
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  auto pct = [&](double p) {
    return sorted[std::min(sorted.size() - 1,
                           static_cast<size_t>(p * static_cast<double>(sorted.size())))];
  };
  double sum = 0;
  for (double t : times) sum += t;
  const double n = static_cast<double>(times.size());
  std::printf(
      "{\"tokens\": %zu, \"masks\": %zu, \"complete\": %s, \"compile_us\": %.1f, "
      "\"vocab_setup_us\": %.1f, "
      "\"tokenizer_load_us\": %.1f, \"trie_nodes\": %zu, \"mask_us\": {\"mean\": %.2f, \"p50\": "
      "%.2f, "
      "\"p99\": %.2f, \"max\": %.2f}, \"mean_nodes_visited\": %.1f, \"mean_tokens_allowed\": %.1f, "
      "\"mean_walk_states\": %.1f, \"cache_hits\": %zu, \"local_cache_hits\": %zu}\n",
      ids.size(), times.size(), m.is_complete() ? "true" : "false", micros(t0, t1), micros(t2, t3),
      micros(t1, t2), vocab->trie.n_nodes(), sum / n, pct(0.5), pct(0.99), sorted.back(),
      visited / n, allowed / n, states / n, mc.cache_hits(), mc.local_hits());
  return 0;
}

int run_grammar(int argc, char** argv) {
  const Args args = grammar_options().parse(argc, argv);
  const std::vector<std::string>& pos = args.positional();
  if (pos.empty()) throw UsageError("missing sub-command (check, gbnf or bench)");
  if (pos.size() > 1) throw UsageError("unexpected argument '" + pos[1] + "'");
  const std::string& sub = pos[0];
  try {
    if (sub == "check") return check(args);
    if (sub == "bench") return bench(args);
    if (sub == "gbnf") {
      const auto schema = args.get("--json-schema");
      if (!schema) throw Error("--json-schema is required");
      grammar::SchemaOptions options;
      options.strict_one_of = args.flag("--strict");
      std::vector<std::string> warnings;
      const std::string text = grammar::json_schema_to_gbnf(read_file(*schema), options, &warnings);
      for (const std::string& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
      std::fwrite(text.data(), 1, text.size(), stdout);
      return 0;
    }
    throw UsageError(std::string("unknown sub-command '") + sub + "'");
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    // Unreadable files and grammars that do not compile are exit code 2 too
    // (1 means "not in the language"); main words it.
    throw UsageError(e.what());
  }
}

}  // namespace

SLM_COMMAND("grammar", "check a document against a GBNF grammar or JSON Schema", grammar_options,
            run_grammar);

}  // namespace slm::cli
