// Tokenizer throughput: encode (and decode) a ~1 MiB multilingual text, built
// by repeating tokenizer/cases/multilingual.inp, with the Qwen vocabulary from
// GGUF (tiny-qwen2.gguf) and from tokenizer.json (hf-qwen3), plus the Llama 2
// SentencePiece vocabulary. Prints one line per vocabulary:
//   bench_tokenizer [FIXTURES_DIR]   (default $SLM_FIXTURES or ../shared/fixtures)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "base/error.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace {

using slm::tokenizer::Tokenizer;
using Clock = std::chrono::steady_clock;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw slm::Error(path + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string build_text(const std::string& fixtures) {
  const std::string raw = read_all(fixtures + "/tokenizer/cases/multilingual.inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::string cases;
  for (size_t pos = 0; pos < raw.size();) {
    size_t next = raw.find(sep, pos);
    if (next == std::string::npos) next = raw.size();
    cases.append(raw, pos, next - pos);
    cases.push_back('\n');
    pos = next + sep.size();
  }
  std::string text;
  while (text.size() < (1u << 20)) text += cases;
  return text;
}

void bench(const char* name, const Tokenizer& tok, const std::string& text, double load_s) {
  std::vector<int32_t> ids;
  double best_enc = 1e30, best_dec = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    ids = tok.encode(text, false, true);
    const auto t1 = Clock::now();
    const std::string back = tok.decode(ids);
    const auto t2 = Clock::now();
    best_enc = std::min(best_enc, std::chrono::duration<double>(t1 - t0).count());
    best_dec = std::min(best_dec, std::chrono::duration<double>(t2 - t1).count());
    if (back.size() == 0) std::abort();
  }
  std::printf(
      "%-22s load %6.2f s  %8zu tokens  encode %7.3f s = %9.0f tokens/s (%5.2f MiB/s)  decode "
      "%9.0f "
      "tokens/s\n",
      name, load_s, ids.size(), best_enc, ids.size() / best_enc,
      text.size() / best_enc / (1024.0 * 1024.0), ids.size() / best_dec);
}

}  // namespace

int main(int argc, char** argv) {
  std::string fixtures = argc > 1 ? argv[1] : "";
  if (fixtures.empty()) {
    const char* env = std::getenv("SLM_FIXTURES");
    fixtures = env != nullptr ? env : "../shared/fixtures";
  }
  try {
    const std::string text = build_text(fixtures);
    std::printf("text: %zu bytes (multilingual cases repeated)\n", text.size());
    struct Source {
      const char* name;
      std::string path;
      bool json;
    };
    const Source sources[] = {
        {"qwen (tiny-qwen2.gguf)", fixtures + "/models/tiny-qwen2.gguf", false},
        {"qwen3 (tokenizer.json)", fixtures + "/tokenizer/hf-qwen3/tokenizer.json", true},
        {"llama2 spm (gguf)", fixtures + "/models/tiny-llama.gguf", false},
    };
    for (const auto& s : sources) {
      const auto t0 = Clock::now();
      std::unique_ptr<slm::gguf::File> file;
      const Tokenizer tok = s.json ? Tokenizer::from_hf_json(s.path)
                                   : Tokenizer::from_gguf(*(file = slm::gguf::File::open(s.path)));
      const double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
      bench(s.name, tok, text, load_s);
    }
  } catch (const slm::Error& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
  return 0;
}
