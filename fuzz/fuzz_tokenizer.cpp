// libFuzzer target for encode/decode/streaming on arbitrary bytes (invalid
// UTF-8 included). The vocabulary is loaded once from SLM_FUZZ_VOCAB (a .gguf
// or a tokenizer.json / its folder); the default is the llama-spm fixture.
//
//   SLM_FUZZ_VOCAB=../shared/fixtures/models/tiny-qwen2.gguf ./fuzz_tokenizer -max_total_time=300
//
// SLM_FUZZ_MODE=hf-json or =gguf fuzzes the loaders instead: the input is a
// tokenizer.json text or GGUF bytes, which must load or fail with slm::Error.
//
// Beyond "no crash", it checks invariants: byte-level and SentencePiece GGUF
// vocabularies round-trip any input when special tokens are not parsed; every
// stream chunk is valid UTF-8; ids out of range are rejected with slm::Error.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/utf8.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace {

using slm::tokenizer::Tokenizer;

struct Loaded {
  std::unique_ptr<Tokenizer> tok;
  bool lossless = false;  // GGUF vocabularies: no normalizer
};

Loaded load() {
  const char* env = std::getenv("SLM_FUZZ_VOCAB");
  const std::string path =
      env != nullptr ? env : "../shared/fixtures/tokenizer/gguf-vocab/ggml-vocab-llama-spm.gguf";
  Loaded l;
  try {
    if (path.size() > 5 && path.substr(path.size() - 5) == ".gguf") {
      auto f = slm::gguf::File::open(path);
      l.tok = std::make_unique<Tokenizer>(Tokenizer::from_gguf(*f));
      l.lossless = true;
    } else {
      l.tok = std::make_unique<Tokenizer>(Tokenizer::from_hf_json(path));
    }
  } catch (const slm::Error& e) {
    std::fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path.c_str(), e.what());
    std::abort();
  }
  std::fprintf(stderr, "fuzz_tokenizer: %s (%s, %d tokens)\n", path.c_str(),
               std::string(l.tok->kind()).c_str(), l.tok->n_vocab());
  return l;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_tokenizer: invariant failed: %s\n", what);
    std::abort();
  }
}

// Loader mode: any input either loads (and then encodes and decodes) or is
// rejected with slm::Error; anything else escaping is a finding.
int fuzz_loader(bool json, const uint8_t* data, size_t size) {
  try {
    std::unique_ptr<slm::gguf::File> file;
    const Tokenizer tok =
        json ? Tokenizer::from_hf_json_text(std::string_view(reinterpret_cast<const char*>(data), size), "",
                                            "fuzz.json")
             : Tokenizer::from_gguf(*(file = slm::gguf::File::parse({data, size}, "fuzz.gguf")));
    const auto ids = tok.encode("Hello <s> w\xC3\xB6rld <|im_end|> \xFF 123", true, true);
    (void)tok.decode(ids);
  } catch (const slm::Error&) {
  }
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* const mode_env = std::getenv("SLM_FUZZ_MODE");
  static const std::string loader_mode = mode_env != nullptr ? mode_env : "";
  if (loader_mode == "hf-json" || loader_mode == "gguf") return fuzz_loader(loader_mode == "hf-json", data, size);
  static const Loaded loaded = load();
  const Tokenizer& tok = *loaded.tok;
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const bool parse_special = (mode & 1) != 0;
  const bool add_special = (mode & 2) != 0;

  const std::vector<int32_t> ids = tok.encode(text, add_special, parse_special);
  for (int32_t id : ids) check(id >= 0 && id < tok.n_vocab(), "encode produced an id out of range");
  const std::string back = tok.decode(ids);
  // SentencePiece spells a space "▁", so text that contains "▁" itself cannot
  // come back byte for byte.
  const bool has_space_mark = text.find("\xE2\x96\x81") != std::string_view::npos;
  if (loaded.lossless && !parse_special && !add_special && !has_space_mark)
    check(back == text, "decode(encode(text)) != text");

  slm::tokenizer::StreamDecoder stream(tok);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string chunk = stream.push(id);
    check(slm::utf8::is_valid(chunk), "stream chunk is not valid UTF-8");
    streamed += chunk;
  }
  streamed += stream.flush();
  check(slm::utf8::is_valid(streamed), "stream output is not valid UTF-8");
  if (slm::utf8::is_valid(back))
    check(streamed == back, "stream != decode on valid UTF-8");

  // Arbitrary ids, some out of range: decode either works or throws slm::Error.
  if (mode & 4) {
    std::vector<int32_t> raw;
    for (size_t i = 1; i + 4 <= size; i += 4) {
      int32_t v = 0;
      for (int k = 0; k < 4; ++k)
        v = static_cast<int32_t>((static_cast<uint32_t>(v) << 8) | data[i + k]);
      raw.push_back(v % (tok.n_vocab() + 8));
    }
    try {
      (void)tok.decode(raw);
    } catch (const slm::Error&) {
    }
  }
  return 0;
}
