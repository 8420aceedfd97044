// Token-mask speed and correctness on MaskBench (guidance-ai/jsonschemabench,
// folder maskbench/data: one JSON file per schema, {"schema": ..., "tests":
// [{"valid": bool, "data": ...}]}), one thread, like its runner: compile the
// schema, then for each test instance serialise it as Python's
// json.dumps(indent=None, ensure_ascii=False) does, tokenize it with the
// model's vocabulary and, before each token, compute the allowed-token mask
// (timed) and check the token is in it. A schema passes when it compiles, its
// valid instances are accepted (every token allowed, the document complete)
// and its invalid ones rejected; a schema that does not compile fails.
//
//   bench_maskbench --model M.gguf [--every N] [--offset K] [--worst N]
//                   [--verify N] [--csv OUT.csv] [--errors] DIR_OR_FILE...
//
// --every/--offset take every Nth file (sorted by name) for quick runs;
// --verify N compares every Nth mask with a brute-force check of every token
// (slow); --csv writes one line per schema (name, status, masks, mean us);
// --errors prints each compile error (schema file: message) to stderr.
// Each test instance gets a fresh Matcher and MaskComputer, as a request gets
// a fresh GrammarProcessor; what MaskComputer shares per grammar is shared.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "gguf/gguf.h"
#include "grammar/json_schema.h"
#include "grammar/matcher.h"
#include "grammar/token_mask.h"
#include "tokenizer/tokenizer.h"

namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double micros(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

// This thread's CPU time: the machine is shared, so wall time includes waits.
double cpu_micros() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) * 1e-3;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw slm::Error(path + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Python's float repr: shortest round-trip digits, exponent form when the
// decimal exponent is < -4 or >= 16.
void put_float(double v, std::string& out) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string s(buf, r.ptr);
  const size_t e = s.find('e');
  std::string mant = s.substr(0, e);
  const int exp = std::atoi(s.c_str() + e + 1);
  bool neg = false;
  if (!mant.empty() && mant[0] == '-') neg = true, mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits.push_back(c);
  if (neg) out.push_back('-');
  if (exp < -4 || exp >= 16) {
    out.push_back(digits[0]);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  } else if (exp < 0) {
    out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  } else {
    const auto ip = static_cast<size_t>(exp + 1);
    if (digits.size() <= ip) {
      out += digits + std::string(ip - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, ip) + "." + digits.substr(ip);
    }
  }
}

void put_string(const std::string& s, std::string& out) {
  out += Json(s).dump();  // json.dumps' escapes, UTF-8 kept as it is (MaskBench's runner)
}

// json.dumps(v, indent=None, ensure_ascii=False)
void python_dumps(const Json& v, std::string& out) {
  switch (v.type()) {
    case Json::value_t::object: {
      out.push_back('{');
      bool first = true;
      for (const auto& [k, x] : v.items()) {
        if (!first) out += ", ";
        first = false;
        put_string(k, out);
        out += ": ";
        python_dumps(x, out);
      }
      out.push_back('}');
      break;
    }
    case Json::value_t::array: {
      out.push_back('[');
      for (size_t i = 0; i < v.size(); ++i) {
        if (i) out += ", ";
        python_dumps(v[i], out);
      }
      out.push_back(']');
      break;
    }
    case Json::value_t::string:
      put_string(v.get_ref<const std::string&>(), out);
      break;
    case Json::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      break;
    case Json::value_t::null:
      out += "null";
      break;
    case Json::value_t::number_integer:
      out += std::to_string(v.get<int64_t>());
      break;
    case Json::value_t::number_unsigned:
      out += std::to_string(v.get<uint64_t>());
      break;
    case Json::value_t::number_float:
      put_float(v.get<double>(), out);
      break;
    default:
      throw slm::Error("unexpected JSON value");
  }
}

// The engine's grammar_token_bytes (engine/grammar_processor.cpp), without
// linking the engine: control, unknown and unused tokens get no bytes.
std::vector<std::string> token_bytes(const slm::tokenizer::Tokenizer& tok) {
  using slm::tokenizer::TokenType;
  std::vector<std::string> out(static_cast<size_t>(tok.n_vocab()));
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    const auto type = tok.token_type(id);
    if (type == TokenType::kControl || type == TokenType::kUnknown || type == TokenType::kUnused)
      continue;
    out[static_cast<size_t>(id)] = tok.token_to_piece(id, /*render_special=*/false);
  }
  return out;
}

bool brute_allowed(slm::grammar::Matcher& m, const std::string& b,
                   slm::grammar::Matcher::Snapshot& s) {
  if (b.empty()) return false;
  m.save(s);
  size_t k = 0;
  try {
    while (k < b.size() && m.accept_byte(static_cast<uint8_t>(b[k]))) ++k;
  } catch (const slm::Error&) {
    k = 0;
  }
  m.restore(s);
  return k == b.size();
}

struct SchemaResult {
  std::string name;
  std::string status;  // pass, compile, valid-rejected, invalid-accepted, skip
  size_t masks = 0;
  double sum_us = 0, max_us = 0, compile_us = 0;
};

// v sorted
double pct(const std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

int run(int argc, char** argv) {
  std::string model, csv;
  size_t every = 1, offset = 0, worst = 10, verify = 0;
  bool trace = false, show_errors = false;
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw slm::Error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model")
      model = next();
    else if (a == "--every")
      every = std::stoul(next());
    else if (a == "--offset")
      offset = std::stoul(next());
    else if (a == "--worst")
      worst = std::stoul(next());
    else if (a == "--verify")
      verify = std::stoul(next());
    else if (a == "--csv")
      csv = next();
    else if (a == "--trace")
      trace = true;
    else if (a == "--errors")
      show_errors = true;
    else
      inputs.push_back(a);
  }
  if (model.empty() || inputs.empty() || every == 0) {
    std::fprintf(stderr,
                 "usage: bench_maskbench --model M.gguf [--every N] [--offset K] [--worst N] "
                 "[--verify N] [--csv OUT] DIR_OR_FILE...\n");
    return 2;
  }
  std::vector<std::string> files;
  for (const auto& in : inputs) {
    if (fs::is_directory(in)) {
      for (const auto& e : fs::directory_iterator(in))
        if (e.path().extension() == ".json") files.push_back(e.path().string());
    } else {
      files.push_back(in);
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> picked;
  for (size_t i = offset; i < files.size(); i += every) picked.push_back(files[i]);

  const auto tok = slm::tokenizer::Tokenizer::from_gguf(*slm::gguf::File::open(model));
  const std::vector<std::string> vocab = token_bytes(tok);
  const auto t_trie = Clock::now();
  const slm::grammar::TokenTrie trie(vocab);
  std::fprintf(stderr, "vocab %zu tokens, trie %zu nodes (%.1f ms)\n", vocab.size(), trie.n_nodes(),
               micros(t_trie, Clock::now()) / 1000);

  std::vector<double> valid_us, invalid_us, compile_us, valid_cpu_us;
  std::vector<SchemaResult> results;
  size_t n_pass = 0, n_compile_fail = 0, n_valid = 0, n_valid_ok = 0, n_invalid = 0,
         n_invalid_ok = 0;
  size_t mask_accept_mismatch = 0, verified = 0, verify_fail = 0, mask_index = 0;
  std::vector<uint64_t> mask;
  slm::grammar::Matcher::Snapshot snap;
  size_t kind_n[3] = {0, 0, 0};  // valid masks from the cache, a local-cache walk, a full walk
  double kind_us[3] = {0, 0, 0};
  for (const auto& path : picked) {
    SchemaResult r;
    r.name = fs::path(path).filename().string();
    if (trace) std::fprintf(stderr, "schema %s\n", r.name.c_str());
    Json doc;
    try {
      doc = Json::parse(read_all(path));
    } catch (const std::exception& e) {
      r.status = "skip";
      results.push_back(r);
      continue;
    }
    const std::string schema_text = doc["schema"].dump();
    std::shared_ptr<const slm::grammar::Grammar> g;
    const auto c0 = Clock::now();
    try {
      g = std::make_shared<const slm::grammar::Grammar>(
          slm::grammar::compile_json_schema(schema_text));
    } catch (const slm::Error& e) {
      if (show_errors) std::fprintf(stderr, "%s: %s\n", r.name.c_str(), e.what());
      r.status = "compile";
      ++n_compile_fail;
      results.push_back(r);
      continue;
    }
    r.compile_us = micros(c0, Clock::now());
    compile_us.push_back(r.compile_us);
    bool ok = true;
    for (const auto& test : doc["tests"]) {
      const bool valid = test["valid"].get<bool>();
      std::string text;
      python_dumps(test["data"], text);
      const auto ids = tok.encode(text, false, false);
      slm::grammar::Matcher m(g);
      slm::grammar::MaskComputer mc(trie);
      bool accepted = true;
      try {
        for (int32_t id : ids) {
          const double c0 = cpu_micros();
          const auto a = Clock::now();
          const size_t lh = mc.local_hits();
          const size_t stacks = m.stack_count();
          mc.compute(m, mask);
          const double us = micros(a, Clock::now());
          if (trace)
            std::fprintf(stderr,
                         "  mask %.1f us, visited %zu, states %zu, stacks %zu, next token '%s'\n",
                         us, mc.last_visited(), mc.last_states(), stacks,
                         vocab[static_cast<size_t>(id)].c_str());
          if (valid) {
            const int kind = mc.last_visited() == 0 ? 0 : mc.local_hits() != lh ? 1 : 2;
            kind_n[kind]++, kind_us[kind] += us;
          }
          if (valid) valid_cpu_us.push_back(cpu_micros() - c0);
          (valid ? valid_us : invalid_us).push_back(us);
          if (valid) r.masks++, r.sum_us += us, r.max_us = std::max(r.max_us, us);
          if (verify && mask_index++ % verify == 0) {
            ++verified;
            for (size_t t = 0; t < vocab.size(); ++t) {
              const bool want = brute_allowed(m, vocab[t], snap);
              if (want != (((mask[t >> 6] >> (t & 63)) & 1) != 0)) {
                ++verify_fail;
                std::fprintf(stderr, "%s: mask differs from brute force at token %zu\n",
                             r.name.c_str(), t);
                break;
              }
            }
          }
          const auto u = static_cast<size_t>(id);
          const std::string& b = vocab[u];
          const bool in_mask = (mask[u >> 6] >> (u & 63)) & 1;
          const bool fits = !b.empty() && m.accept(b) == b.size();
          if (in_mask != fits) {
            ++mask_accept_mismatch;
            std::fprintf(stderr, "%s: mask says %d, matcher says %d for token %d\n", r.name.c_str(),
                         in_mask, fits, id);
          }
          if (!fits) {
            accepted = false;
            break;
          }
        }
        if (accepted && !m.is_complete()) accepted = false;
      } catch (const slm::Error&) {
        accepted = false;
      }
      if (valid) {
        ++n_valid;
        if (accepted)
          ++n_valid_ok;
        else if (ok)
          r.status = "valid-rejected", ok = false;
      } else {
        ++n_invalid;
        if (!accepted)
          ++n_invalid_ok;
        else if (ok)
          r.status = "invalid-accepted", ok = false;
      }
    }
    if (ok) r.status = "pass", ++n_pass;
    results.push_back(r);
  }

  for (auto* v : {&valid_us, &invalid_us, &compile_us, &valid_cpu_us})
    std::sort(v->begin(), v->end());
  double sum = 0, cpu_sum = 0;
  for (double t : valid_us) sum += t;
  for (double t : valid_cpu_us) cpu_sum += t;
  double isum = 0;
  for (double t : invalid_us) isum += t;
  const size_t nv = valid_us.size();
  std::printf(
      "schemas %zu: pass %zu, compile errors %zu; valid instances %zu (accepted %zu), invalid %zu "
      "(rejected %zu); mask/matcher mismatches %zu",
      picked.size(), n_pass, n_compile_fail, n_valid, n_valid_ok, n_invalid, n_invalid_ok,
      mask_accept_mismatch);
  if (verify) std::printf("; brute-force checks %zu, differing %zu", verified, verify_fail);
  std::printf("\n");
  const double mean = nv ? sum / static_cast<double>(nv) : 0;
  const double imean = invalid_us.empty() ? 0 : isum / static_cast<double>(invalid_us.size());
  std::printf("valid masks %zu: mean %.1f us, p50 %.1f, p90 %.1f, p99 %.1f, max %.1f\n", nv, mean,
              pct(valid_us, 0.5), pct(valid_us, 0.9), pct(valid_us, 0.99),
              valid_us.empty() ? 0 : valid_us.back());
  std::printf(
      "valid masks, thread CPU time: mean %.1f us, p50 %.1f, p90 %.1f, p99 %.1f, max %.1f\n",
      nv ? cpu_sum / static_cast<double>(nv) : 0, pct(valid_cpu_us, 0.5), pct(valid_cpu_us, 0.9),
      pct(valid_cpu_us, 0.99), valid_cpu_us.empty() ? 0 : valid_cpu_us.back());
  std::printf(
      "valid masks by kind: cached %zu (%.0f us total), local re-walk %zu (%.0f us), full walk %zu "
      "(%.0f us)\n",
      kind_n[0], kind_us[0], kind_n[1], kind_us[1], kind_n[2], kind_us[2]);
  std::printf("invalid masks %zu: mean %.1f us, p99 %.1f\n", invalid_us.size(), imean,
              pct(invalid_us, 0.99));
  std::printf("compile %zu: p50 %.1f us, p99 %.1f, max %.1f\n", compile_us.size(),
              pct(compile_us, 0.5), pct(compile_us, 0.99),
              compile_us.empty() ? 0 : compile_us.back());
  std::vector<const SchemaResult*> by_time;
  for (const auto& r : results)
    if (r.masks) by_time.push_back(&r);
  std::sort(by_time.begin(), by_time.end(), [](auto* a, auto* b) { return a->sum_us > b->sum_us; });
  std::printf("worst schemas by total valid mask time:\n");
  for (size_t i = 0; i < std::min(worst, by_time.size()); ++i)
    std::printf("  %-60s masks %6zu  total %9.0f us  mean %8.1f  max %8.1f\n",
                by_time[i]->name.c_str(), by_time[i]->masks, by_time[i]->sum_us,
                by_time[i]->sum_us / static_cast<double>(by_time[i]->masks), by_time[i]->max_us);
  if (!csv.empty()) {
    std::ofstream out(csv);
    out << "schema,status,masks,sum_us,max_us,compile_us\n";
    for (const auto& r : results)
      out << r.name << ',' << r.status << ',' << r.masks << ',' << r.sum_us << ',' << r.max_us
          << ',' << r.compile_us << '\n';
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_maskbench: %s\n", e.what());
    return 1;
  }
}
