// libFuzzer target for the finetuning JSONL loader (train/data.h): any bytes
// must parse into examples or fail with slm::Error naming the file; parsed
// examples must fit the context, carry a mask of their length and at least
// one target. The same bytes go through the preference (DPO) parser, whose
// pairs must meet the same checks on both sides. The tokenizer and chat template come from
// SLM_FUZZ_MODEL (default: the tiny-qwen3 fixture, which has a template so "messages" lines are
// rendered too).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "base/error.h"
#include "chat/template.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

namespace {

struct Loaded {
  std::unique_ptr<slm::tokenizer::Tokenizer> tok;
  std::unique_ptr<slm::chat::Template> tmpl;
};

Loaded load() {
  const char* env = std::getenv("SLM_FUZZ_MODEL");
  const std::string path = env != nullptr ? env : "../shared/fixtures/models/tiny-qwen3.gguf";
  Loaded l;
  try {
    const auto f = slm::gguf::File::open(path);
    l.tok = std::make_unique<slm::tokenizer::Tokenizer>(slm::tokenizer::Tokenizer::from_gguf(*f));
    if (const auto t = f->get_string("tokenizer.chat_template"))
      l.tmpl = std::make_unique<slm::chat::Template>(*t);
  } catch (const slm::Error& e) {
    std::fprintf(stderr, "fuzz_train_data: cannot load %s: %s\n", path.c_str(), e.what());
    std::abort();
  }
  return l;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Loaded l = load();
  if (size > 1 << 14) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const slm::train::DataOptions opt{64, (size & 1) != 0};
  const auto check = [](const slm::train::Example& ex) {
    if (ex.tokens.size() > 64 || ex.target.size() != ex.tokens.size() || ex.n_targets() < 1)
      std::abort();
  };
  try {
    for (const slm::train::Example& ex :
         slm::train::parse_jsonl(text, "fuzz.jsonl", *l.tok, l.tmpl.get(), opt))
      check(ex);
  } catch (const slm::Error& e) {
    if (std::string_view(e.what()).substr(0, 10) != "fuzz.jsonl") std::abort();
  }
  try {
    for (const slm::train::PreferencePair& p :
         slm::train::parse_preference_jsonl(text, "fuzz.jsonl", *l.tok, l.tmpl.get(), opt)) {
      check(p.chosen);
      check(p.rejected);
    }
  } catch (const slm::Error& e) {
    if (std::string_view(e.what()).substr(0, 10) != "fuzz.jsonl") std::abort();
  }
  return 0;
}
