// Tokenizer::from_hf_json: Hugging Face tokenizer.json (model type BPE) with
// the normalizers, pre-tokenizers and decoders byte-level and Metaspace BPE
// models use, plus tokenizer_config.json for BOS/EOS. The JSON is untrusted:
// every field is type-checked and errors name it.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "base/error.h"
#include "tokenizer/model.h"

namespace slm::tokenizer {

using detail::kNoToken;
using detail::Model;
using Json = nlohmann::json;

namespace {

struct Ctx {
  const Model& m;
  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw Error(m.name + ": " + field + ": " + what);
  }
  const Json& obj(const Json& j, const std::string& field) const {
    if (!j.is_object()) fail(field, "expected an object");
    return j;
  }
  std::string str(const Json& j, const char* key, const std::string& field,
                  const std::string& fallback = "") const {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_string()) fail(field + "." + key, "expected a string");
    return it->get<std::string>();
  }
  bool boolean(const Json& j, const char* key, const std::string& field, bool fallback) const {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) fail(field + "." + key, "expected true or false");
    return it->get<bool>();
  }
  // A Split / Replace pattern: {"String": "..."} or {"Regex": "..."}.
  std::shared_ptr<const detail::Regex> pattern(const Json& j, const std::string& field) const {
    auto it = j.find("pattern");
    if (it == j.end() || !it->is_object())
      fail(field + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
    if (auto s = it->find("String"); s != it->end() && s->is_string())
      return std::make_shared<detail::Regex>(s->get<std::string>(), true, m.name + ": " + field);
    if (auto r = it->find("Regex"); r != it->end() && r->is_string())
      return std::make_shared<detail::Regex>(r->get<std::string>(), false, m.name + ": " + field);
    fail(field + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
  }
  // Opens a node of a normalizer or pre-tokenizer tree at the given nesting
  // depth: its "type", or nullopt when there is nothing more to parse here
  // (null, or a "Sequence", whose elements in the array `list` are handed to
  // each(element, field) here).
  template <class Each>
  std::optional<std::string> node(const Json& j, const std::string& field, const char* list,
                                  int depth, Each each) const {
    if (j.is_null()) return std::nullopt;
    obj(j, field);
    if (depth > 8) fail(field, "nested too deeply");
    std::string type = str(j, "type", field);
    if (type != "Sequence") return type;
    const std::string list_field = field + "." + list;
    auto it = j.find(list);
    if (it == j.end() || !it->is_array()) fail(list_field, "expected an array");
    for (size_t i = 0; i < it->size(); ++i)
      each((*it)[i], list_field + "[" + std::to_string(i) + "]");
    return std::nullopt;
  }
};

void parse_normalizer(const Ctx& c, const Json& j, const std::string& field,
                      std::vector<detail::NormalizeStep>& out, int depth) {
  const auto node = c.node(
      j, field, "normalizers", depth,
      [&](const Json& e, const std::string& f) { parse_normalizer(c, e, f, out, depth + 1); });
  if (!node) return;
  const std::string& type = *node;
  using K = detail::NormalizeStep::Kind;
  detail::NormalizeStep step;
  if (type == "NFC" || type == "NFKC" || type == "NFD" || type == "NFKD" || type == "Lowercase") {
    step.kind = K::kForm;
    step.form = type == "NFC"    ? detail::NormForm::kNfc
                : type == "NFKC" ? detail::NormForm::kNfkc
                : type == "NFD"  ? detail::NormForm::kNfd
                : type == "NFKD" ? detail::NormForm::kNfkd
                                 : detail::NormForm::kLowercase;
  } else if (type == "Prepend") {
    step.kind = K::kPrepend;
    step.text = c.str(j, "prepend", field);
  } else if (type == "Replace") {
    step.kind = K::kReplace;
    step.regex = c.pattern(j, field);
    step.text = c.str(j, "content", field);
  } else if (type == "Strip") {
    step.kind = K::kStrip;
    step.strip_left = c.boolean(j, "strip_left", field, true);
    step.strip_right = c.boolean(j, "strip_right", field, true);
  } else {
    c.fail(field + ".type", "unsupported normalizer '" + type + "'");
  }
  out.push_back(std::move(step));
}

struct PreInfo {
  bool byte_level = false;
  detail::SpacePrefix metaspace = detail::SpacePrefix::kNone;
};

void parse_pre(const Ctx& c, const Json& j, const std::string& field, detail::PreTokenizer& pre,
               PreInfo& info, int depth) {
  const auto node = c.node(
      j, field, "pretokenizers", depth,
      [&](const Json& e, const std::string& f) { parse_pre(c, e, f, pre, info, depth + 1); });
  if (!node) return;
  const std::string& type = *node;
  using K = detail::PreStep::Kind;
  detail::PreStep step;
  auto split = [&](const std::string& re, detail::SplitBehavior b, bool invert) {
    step.kind = K::kSplit;
    step.regex = std::make_shared<detail::Regex>(re, false, c.m.name + ": " + field);
    step.behavior = b;
    step.invert = invert;
  };
  if (type == "Split") {
    step.kind = K::kSplit;
    step.regex = c.pattern(j, field);
    const std::string b = c.str(j, "behavior", field, "Isolated");
    using B = detail::SplitBehavior;
    if (b == "Isolated") {
      step.behavior = B::kIsolated;
    } else if (b == "Removed") {
      step.behavior = B::kRemoved;
    } else if (b == "MergedWithPrevious") {
      step.behavior = B::kMergedWithPrevious;
    } else if (b == "MergedWithNext") {
      step.behavior = B::kMergedWithNext;
    } else if (b == "Contiguous") {
      step.behavior = B::kContiguous;
    } else {
      c.fail(field + ".behavior", "unknown split behavior '" + b + "'");
    }
    step.invert = c.boolean(j, "invert", field, false);
  } else if (type == "ByteLevel") {
    step.kind = K::kByteLevel;
    step.add_prefix_space = c.boolean(j, "add_prefix_space", field, true);
    if (c.boolean(j, "use_regex", field, true))
      step.regex =
          std::make_shared<detail::Regex>(detail::kGpt2Pattern, false, c.m.name + ": " + field);
    info.byte_level = true;
  } else if (type == "Metaspace") {
    step.kind = K::kMetaspace;
    step.replacement = c.str(j, "replacement", field, std::string(detail::kSpaceMark));
    std::string scheme = c.str(j, "prepend_scheme", field, "");
    if (scheme.empty()) scheme = c.boolean(j, "add_prefix_space", field, true) ? "always" : "never";
    if (scheme == "always") {
      step.scheme = detail::SpacePrefix::kAlways;
    } else if (scheme == "first") {
      step.scheme = detail::SpacePrefix::kFirst;
    } else if (scheme == "never") {
      step.scheme = detail::SpacePrefix::kNone;
    } else {
      c.fail(field + ".prepend_scheme", "unknown scheme '" + scheme + "'");
    }
    step.metaspace_split = c.boolean(j, "split", field, true);
    info.metaspace = step.scheme;
  } else if (type == "Digits") {
    split(c.boolean(j, "individual_digits", field, false) ? R"(\p{N})" : R"(\p{N}+)",
          detail::SplitBehavior::kIsolated, false);
  } else if (type == "Punctuation") {
    split(R"([\p{P}!-/:-@\[-`{-~])", detail::SplitBehavior::kIsolated, false);
  } else if (type == "WhitespaceSplit") {
    split(R"(\s+)", detail::SplitBehavior::kRemoved, false);
  } else if (type == "Whitespace") {
    split(R"(\w+|[^\w\s]+)", detail::SplitBehavior::kRemoved, true);
  } else {
    c.fail(field + ".type", "unsupported pre-tokenizer '" + type + "'");
  }
  pre.steps.push_back(std::move(step));
}

// Decoders only tell us how pieces map back to bytes.
void scan_decoder(const Ctx& c, const Json& j, bool& byte_level, int depth) {
  if (!j.is_object() || depth > 8) return;
  const std::string type = c.str(j, "type", "decoder");
  if (type == "ByteLevel") byte_level = true;
  if (auto it = j.find("decoders"); it != j.end() && it->is_array())
    for (const auto& d : *it) scan_decoder(c, d, byte_level, depth + 1);
}

// "<s>" or {"content": "<s>", ...} in tokenizer_config.json.
std::optional<int32_t> config_token(const Ctx& c, const Json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  std::string text;
  if (it->is_string()) {
    text = it->get<std::string>();
  } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    text = (*it)["content"].get<std::string>();
  } else {
    c.fail(std::string("tokenizer_config.json: ") + key, "expected a string or {\"content\": ...}");
  }
  const int32_t id = c.m.find(text);
  if (id == kNoToken)
    c.fail(std::string("tokenizer_config.json: ") + key,
           "token '" + text + "' is not in the vocabulary");
  return id;
}

// Returns the model's unk_token spelling ("" when none).
std::string load_vocab(const Ctx& c, const Json& root, Model& m) {
  auto mit = root.find("model");
  if (mit == root.end()) c.fail("model", "missing");
  const Json& model = c.obj(*mit, "model");
  const std::string type = c.str(model, "type", "model", "BPE");
  if (type != "BPE") c.fail("model.type", "unsupported model '" + type + "' (slm supports BPE)");
  if (!c.str(model, "continuing_subword_prefix", "model").empty() ||
      !c.str(model, "end_of_word_suffix", "model").empty())
    c.fail("model", "continuing_subword_prefix / end_of_word_suffix are not supported");
  m.byte_fallback = c.boolean(model, "byte_fallback", "model", false);
  m.ignore_merges = c.boolean(model, "ignore_merges", "model", false);
  m.fuse_unk = c.boolean(model, "fuse_unk", "model", false);

  auto vit = model.find("vocab");
  if (vit == model.end() || !vit->is_object())
    c.fail("model.vocab", "expected an object of token -> id");
  const Json& vocab = *vit;
  const Json empty_array = Json::array();
  const Json& added = root.contains("added_tokens") ? root["added_tokens"] : empty_array;
  if (!added.is_array()) c.fail("added_tokens", "expected an array");

  // Ids must be dense enough to index a table: a hostile file cannot make us
  // allocate billions of rows.
  const uint64_t limit = 2 * (vocab.size() + added.size()) + 1024;
  auto check = [&](const Json& id, const std::string& field) -> int32_t {
    if (!id.is_number_integer()) c.fail(field, "expected an integer id");
    const int64_t v = id.get<int64_t>();
    if (v < 0 || static_cast<uint64_t>(v) >= limit)
      c.fail(field, "id " + std::to_string(v) + " is out of range");
    return static_cast<int32_t>(v);
  };
  auto place = [&](int32_t id, const std::string& text, const std::string& field) {
    if (static_cast<size_t>(id) >= m.pieces.size()) {
      m.pieces.resize(id + 1);
      m.types.resize(id + 1, TokenType::kUnused);
    }
    if (m.types[id] != TokenType::kUnused && m.pieces[id] != text) {
      c.fail(field, "id " + std::to_string(id) + " is given to two different tokens");
    }
    m.pieces[id] = text;
  };
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int32_t id = check(it.value(), "model.vocab");
    place(id, it.key(), "model.vocab");
    m.types[id] = TokenType::kNormal;
  }
  for (size_t i = 0; i < added.size(); ++i) {
    const std::string field = "added_tokens[" + std::to_string(i) + "]";
    const Json& t = c.obj(added[i], field);
    if (!t.contains("id")) c.fail(field + ".id", "missing");
    const int32_t id = check(t["id"], field + ".id");
    const std::string content = c.str(t, "content", field);
    if (content.empty()) c.fail(field + ".content", "empty token");
    place(id, content, field);
    m.types[id] =
        c.boolean(t, "special", field, false) ? TokenType::kControl : TokenType::kUserDefined;
    m.flags.resize(m.pieces.size(), 0);
    if (c.boolean(t, "lstrip", field, false)) m.flags[id] |= detail::kFlagLstrip;
    if (c.boolean(t, "rstrip", field, false)) m.flags[id] |= detail::kFlagRstrip;
  }
  m.flags.resize(m.pieces.size(), 0);
  return c.str(model, "unk_token", "model");
}

void load_merges(const Ctx& c, const Json& model, Model& m) {
  auto it = model.find("merges");
  if (it == model.end() || it->is_null()) return;
  if (!it->is_array()) c.fail("model.merges", "expected an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& e = (*it)[i];
    const std::string field = "model.merges[" + std::to_string(i) + "]";
    std::string a, b;
    if (e.is_string()) {
      const std::string s = e.get<std::string>();
      const size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
      if (sp == std::string::npos) c.fail(field, "expected \"left right\"");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      c.fail(field, "expected \"left right\" or [left, right]");
    }
    const int32_t ia = m.find(a), ib = m.find(b), ir = m.find(a + b);
    if (ia == kNoToken || ib == kNoToken)
      c.fail(field, "refers to a token that is not in the vocabulary");
    if (ir == kNoToken) c.fail(field, "merges into a token that is not in the vocabulary");
    m.merges.insert(ia, ib, detail::MergeResult{static_cast<int32_t>(i), ir});
  }
}

// TemplateProcessing "single": [SpecialToken <s>, Sequence A, SpecialToken </s>].
void scan_post_processor(const Ctx& c, const Json& j, Model& m) {
  if (!j.is_object()) return;
  if (c.str(j, "type", "post_processor") != "TemplateProcessing") return;
  auto it = j.find("single");
  if (it == j.end() || !it->is_array() || it->empty()) return;
  auto special_of = [&](const Json& item) -> int32_t {
    if (!item.is_object() || !item.contains("SpecialToken")) return kNoToken;
    const Json& st = item["SpecialToken"];
    if (!st.is_object() || !st.contains("id") || !st["id"].is_string()) return kNoToken;
    return m.find(st["id"].get<std::string>());
  };
  if (const int32_t b = special_of(it->front()); b != kNoToken) {
    m.bos = b;
    m.add_bos = true;
  }
  if (it->size() > 1) {
    if (const int32_t e = special_of(it->back()); e != kNoToken) {
      m.eos = e;
      m.add_eos = true;
    }
  }
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(p.string() + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Tokenizer Tokenizer::from_hf_json(const std::string& path) {
  std::filesystem::path p(path);
  if (std::filesystem::is_directory(p)) p /= "tokenizer.json";
  const std::string json = read_text(p);
  std::string config;
  const auto cfg_path = p.parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::exists(cfg_path, ec)) config = read_text(cfg_path);
  return from_hf_json_text(json, config, p.string());
}

Tokenizer Tokenizer::from_hf_json_text(std::string_view tokenizer_json,
                                       std::string_view config_json, const std::string& name) {
  auto model = std::make_shared<Model>();
  Model& m = *model;
  m.name = name;
  m.kind_name = "bpe";
  Ctx c{m};
  try {
    const Json root = Json::parse(tokenizer_json.begin(), tokenizer_json.end());
    c.obj(root, "tokenizer.json");
    const std::string unk_text = load_vocab(c, root, m);
    m.pre_name = "hf";
    m.algorithm = detail::Algorithm::kRankMerge;

    if (root.contains("normalizer"))
      parse_normalizer(c, root["normalizer"], "normalizer", m.normalizer, 0);
    PreInfo info;
    if (root.contains("pre_tokenizer"))
      parse_pre(c, root["pre_tokenizer"], "pre_tokenizer", m.pre, info, 0);
    bool byte_level = info.byte_level;
    if (root.contains("decoder")) scan_decoder(c, root["decoder"], byte_level, 0);
    m.byte_level_decode = byte_level;
    // Llama-2 style files prepend "▁" in the normalizer instead of a Metaspace step.
    m.space_prefix = info.metaspace;
    for (const auto& s : m.normalizer)
      if (s.kind == detail::NormalizeStep::Kind::kPrepend && s.text == detail::kSpaceMark)
        m.space_prefix = detail::SpacePrefix::kAlways;

    detail::build_lookup(m, "model.vocab");
    load_merges(c, root["model"], m);
    if (!unk_text.empty()) {
      m.unk = m.find(unk_text);
      if (m.unk == kNoToken)
        c.fail("model.unk_token", "'" + unk_text + "' is not in the vocabulary");
    }
    if (root.contains("post_processor")) scan_post_processor(c, root["post_processor"], m);

    if (!config_json.empty()) {
      const Json cfg = Json::parse(config_json.begin(), config_json.end());
      c.obj(cfg, "tokenizer_config.json");
      if (auto v = config_token(c, cfg, "bos_token")) m.bos = *v;
      if (auto v = config_token(c, cfg, "eos_token")) m.eos = *v;
      if (auto v = config_token(c, cfg, "unk_token")) m.unk = *v;
      if (auto v = config_token(c, cfg, "pad_token")) m.pad = *v;
      m.add_bos = c.boolean(cfg, "add_bos_token", "tokenizer_config.json", m.add_bos);
      m.add_eos = c.boolean(cfg, "add_eos_token", "tokenizer_config.json", m.add_eos);
    }
    // transformers registers the configured special tokens as special even
    // when tokenizer.json lists them only in the vocabulary.
    for (int32_t id : {m.bos, m.eos, m.unk, m.pad})
      if (id != kNoToken && m.types[id] == TokenType::kNormal) m.types[id] = TokenType::kControl;
    // Last: the EOG set depends on eos.
    detail::finish_model(m, "model.vocab");
  } catch (const Json::exception& e) {
    throw Error(name + ": invalid JSON: " + e.what());
  }
  return Tokenizer(std::move(model));
}

}  // namespace slm::tokenizer
