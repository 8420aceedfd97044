// Tokenizer::from_gguf: the tokenizer.ggml.* metadata llama.cpp's converters
// write. The file is untrusted (style.md §7): array lengths must agree, ids
// must be in range, merges must name tokens, and errors name the key.
#include <algorithm>
#include <cctype>

#include "base/error.h"
#include "gguf/gguf.h"
#include "tokenizer/model.h"

namespace slm::tokenizer {

using detail::kNoToken;
using detail::Model;

namespace {

constexpr const char* kKeyModel = "tokenizer.ggml.model";
constexpr const char* kKeyPre = "tokenizer.ggml.pre";
constexpr const char* kKeyTokens = "tokenizer.ggml.tokens";
constexpr const char* kKeyScores = "tokenizer.ggml.scores";
constexpr const char* kKeyTypes = "tokenizer.ggml.token_type";
constexpr const char* kKeyMerges = "tokenizer.ggml.merges";

[[noreturn]] void fail(const Model& m, const std::string& key, const std::string& what) {
  throw Error(m.name + ": " + key + ": " + what);
}

void load_merges(const gguf::File& f, Model& m) {
  auto merges = f.get_strings(kKeyMerges);
  if (!merges) fail(m, kKeyMerges, "missing (a 'gpt2' tokenizer needs its BPE merges)");
  for (size_t i = 0; i < merges->size(); ++i) {
    const std::string_view s = (*merges)[i];
    // Split at the first space after the first byte, as llama.cpp does, so a
    // merge whose left side is itself a space still parses.
    const size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string_view::npos;
    if (sp == std::string_view::npos)
      fail(m, kKeyMerges, "entry " + std::to_string(i) + " has no space separator");
    const std::string_view a = s.substr(0, sp), b = s.substr(sp + 1);
    const int32_t ia = m.find(a), ib = m.find(b);
    if (ia == kNoToken || ib == kNoToken) {
      fail(m, kKeyMerges,
           "entry " + std::to_string(i) + " refers to a token that is not in the vocabulary");
    }
    std::string joined;
    joined.reserve(a.size() + b.size());
    joined.append(a).append(b);
    const int32_t ir = m.find(joined);
    if (ir == kNoToken) {
      fail(m, kKeyMerges,
           "entry " + std::to_string(i) + " merges into a token that is not in the vocabulary");
    }
    // The first (lowest-rank) occurrence of a pair wins.
    m.merges.insert(ia, ib, detail::MergeResult{static_cast<int32_t>(i), ir});
  }
}

std::optional<int32_t> read_id(const gguf::File& f, const Model& m, const std::string& key) {
  auto v = f.get_int(key);
  if (!v) return std::nullopt;
  return detail::checked_id(m, *v, key);
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const gguf::File& f) {
  auto model = std::make_shared<Model>();
  Model& m = *model;
  m.name = f.name();

  const auto kind = f.get_string(kKeyModel);
  if (!kind) fail(m, kKeyModel, "missing (the file has no tokenizer)");
  const bool spm = *kind == "llama";
  if (!spm && *kind != "gpt2") {
    fail(m, kKeyModel,
         "unsupported tokenizer '" + std::string(*kind) + "' (slm supports 'llama' and 'gpt2')");
  }
  m.kind_name = spm ? "spm" : "bpe";

  auto tokens = f.get_strings(kKeyTokens);
  if (!tokens) fail(m, kKeyTokens, "missing");
  if (tokens->empty()) fail(m, kKeyTokens, "empty vocabulary");
  const size_t n = tokens->size();
  if (n > static_cast<size_t>(INT32_MAX)) fail(m, kKeyTokens, "too many tokens");
  m.pieces.reserve(n);
  for (auto t : *tokens) m.pieces.emplace_back(t);

  if (auto scores = f.get_floats(kKeyScores)) {
    if (scores->size() != n) {
      fail(m, kKeyScores,
           "has " + std::to_string(scores->size()) + " entries for " + std::to_string(n) +
               " tokens");
    }
    m.scores = std::move(*scores);
  }
  if (auto types = f.get_ints(kKeyTypes)) {
    if (types->size() != n) {
      fail(
          m, kKeyTypes,
          "has " + std::to_string(types->size()) + " entries for " + std::to_string(n) + " tokens");
    }
    m.types.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = (*types)[i];
      if (t < 0 || t > static_cast<int64_t>(TokenType::kByte)) {
        fail(m, kKeyTypes, "token " + std::to_string(i) + " has unknown type " + std::to_string(t));
      }
      m.types[i] = static_cast<TokenType>(t);
    }
  }

  if (spm) {
    m.algorithm = detail::Algorithm::kScoreMerge;
    m.escape_spaces = true;
    m.space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(true)
                         ? detail::SpacePrefix::kAlways
                         : detail::SpacePrefix::kNone;
    m.remove_extra_whitespaces =
        f.get_bool("tokenizer.ggml.remove_extra_whitespaces").value_or(false);
    m.add_bos = true;
    m.pre_name = "default";
    // llama.cpp's defaults for SentencePiece files that omit the ids.
    if (n > 2) {
      m.bos = 1;
      m.eos = 2;
    }
    m.unk = 0;
  } else {
    m.algorithm = detail::Algorithm::kRankMerge;
    m.byte_level_decode = true;
    m.pre_name = std::string(f.get_string(kKeyPre).value_or("default"));
    bool add_bos = false, ignore_merges = false;
    const auto regexes = detail::gguf_pre_regexes(m.pre_name, &add_bos, &ignore_merges);
    m.add_bos = add_bos;
    m.ignore_merges = ignore_merges;
    for (const auto& r : regexes) {
      detail::PreStep step;
      step.kind = detail::PreStep::Kind::kSplit;
      step.regex = std::make_shared<detail::Regex>(r, false, m.name + ": " + kKeyPre);
      m.pre.steps.push_back(std::move(step));
    }
    detail::PreStep bytes;
    bytes.kind = detail::PreStep::Kind::kByteLevel;
    m.pre.steps.push_back(std::move(bytes));
  }

  // Token ids are checked against the vocabulary before the model is finished.
  if (auto v = read_id(f, m, "tokenizer.ggml.bos_token_id")) m.bos = *v;
  if (auto v = read_id(f, m, "tokenizer.ggml.eos_token_id")) m.eos = *v;
  if (auto v = read_id(f, m, "tokenizer.ggml.eot_token_id")) m.eot = *v;
  if (auto v = read_id(f, m, "tokenizer.ggml.eom_token_id")) m.eom = *v;
  if (auto v = read_id(f, m, "tokenizer.ggml.unknown_token_id")) m.unk = *v;
  if (auto v = read_id(f, m, "tokenizer.ggml.padding_token_id")) m.pad = *v;
  if (auto v = read_id(f, m, "tokenizer.ggml.seperator_token_id")) m.sep = *v;  // sic, the GGUF key
  m.add_bos = f.get_bool("tokenizer.ggml.add_bos_token").value_or(m.add_bos);
  m.add_eos = f.get_bool("tokenizer.ggml.add_eos_token").value_or(m.add_eos);
  if (m.add_bos && m.bos == kNoToken)
    fail(m, "tokenizer.ggml.add_bos_token", "is true but there is no BOS token");
  if (m.add_eos && m.eos == kNoToken)
    fail(m, "tokenizer.ggml.add_eos_token", "is true but there is no EOS token");

  detail::finish_model(m, kKeyTokens);
  if (!spm) load_merges(f, m);

  // Phi-3's special tokens swallow the whitespace after them (its HF config
  // marks them rstrip); GGUF has no per-token attributes, so llama.cpp keys
  // this on the model name and so do we.
  std::string name(f.get_string("general.name").value_or(""));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (int32_t id : m.specials) m.flags[id] |= detail::kFlagRstrip;
    for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) {
      const int32_t id = m.find(t);
      if (id != kNoToken) m.flags[id] &= static_cast<uint8_t>(~detail::kFlagRstrip);
    }
  }
  return Tokenizer(std::move(model));
}

}  // namespace slm::tokenizer
