#include "convert/hf_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <unordered_map>

#include "base/error.h"
#include "tokenizer/tokenizer.h"

namespace slm::convert {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;


Json read_json(const fs::path& p) {
  const std::string text = read_text(p);
  try {
    Json j = Json::parse(text);
    if (!j.is_object()) throw Error(p.string() + ": expected a JSON object");
    return j;
  } catch (const Json::exception& e) {
    throw Error(p.string() + ": invalid JSON: " + e.what());
  }
}

// Byte-level pre-tokenizers by the Split regex Hugging Face spells them
// with, named as llama.cpp's tokenizer.ggml.pre knows them.
struct PreName {
  std::string_view regex;  // the Split pattern; "" = ByteLevel's own (GPT-2) regex
  std::string_view digits; // "individual": a Digits step with individual_digits first
  std::string_view name;
};
constexpr PreName kPreNames[] = {
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "", "qwen2"},
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "", "llama-bpe"},
    {"", "", "gpt-2"},
    {"", "individual", "smollm"},
};

struct PreScan {
  bool byte_level = false;
  bool metaspace_prefix = false;  // Metaspace with a prefix space
  std::string split_regex;
  std::string digits;
  int other = 0;  // steps the table does not describe
};

void scan_pre(const Json& j, PreScan& s, int depth) {
  if (!j.is_object() || depth > 8) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    if (auto it = j.find("pretokenizers"); it != j.end() && it->is_array())
      for (const Json& e : *it) scan_pre(e, s, depth + 1);
  } else if (type == "ByteLevel") {
    s.byte_level = true;
  } else if (type == "Split" && j.contains("pattern") && j["pattern"].is_object() && j["pattern"].contains("Regex") &&
             j["pattern"]["Regex"].is_string()) {
    if (!s.split_regex.empty()) ++s.other;
    s.split_regex = j["pattern"]["Regex"].get<std::string>();
  } else if (type == "Digits") {
    s.digits = j.value("individual_digits", false) ? "individual" : "grouped";
  } else if (type == "Metaspace") {
    const std::string scheme = j.value("prepend_scheme", "");
    s.metaspace_prefix = scheme.empty() ? j.value("add_prefix_space", true) : scheme != "never";
  } else {
    ++s.other;
  }
}

bool has_prepend_space(const Json& j, int depth) {
  if (!j.is_object() || depth > 8) return false;
  if (j.value("type", "") == "Prepend" && j.value("prepend", "") == "\xe2\x96\x81") return true;
  if (auto it = j.find("normalizers"); it != j.end() && it->is_array())
    for (const Json& e : *it)
      if (has_prepend_space(e, depth + 1)) return true;
  return false;
}

// "a b" from "a b" or ["a", "b"].
std::string merge_text(const Json& e, size_t i) {
  if (e.is_string()) return e.get<std::string>();
  if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string())
    return e[0].get<std::string>() + " " + e[1].get<std::string>();
  throw Error("tokenizer.json: model.merges[" + std::to_string(i) + "]: expected \"left right\" or [left, right]");
}

int64_t config_id(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return -1;
  const Json* v = &*it;
  if (v->is_array() && !v->empty()) v = &(*v)[0];
  return v->is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v->get<uint64_t>(), INT32_MAX)) : -1;
}

void add_tokenizer(gguf::Writer& w, const std::string& dir, const HfConfig& config, int64_t n_vocab) {
  const fs::path root(dir);
  const fs::path tok_path = root / "tokenizer.json";
  if (!fs::exists(tok_path)) throw Error(tok_path.string() + ": missing (slm convert needs the tokenizer)");
  // The tokenizer itself validates the vocabulary, merges and special tokens.
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_hf_json(tok_path.string());
  const Json tj = read_json(tok_path);
  const std::string tname = tok_path.string();
  if (tok.n_vocab() > n_vocab)
    throw Error(tname + ": " + std::to_string(tok.n_vocab()) + " tokens, but the embedding has only " +
                std::to_string(n_vocab) + " rows");

  PreScan pre;
  if (tj.contains("pre_tokenizer")) scan_pre(tj["pre_tokenizer"], pre, 0);
  const Json& model = tj.at("model");
  const Json empty = Json::array();
  const Json& merges = model.contains("merges") && model["merges"].is_array() ? model["merges"] : empty;
  const bool gpt2 = pre.byte_level;

  std::vector<std::string> tokens(static_cast<size_t>(n_vocab));
  std::vector<int32_t> types(static_cast<size_t>(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) {
    const int32_t id = static_cast<int32_t>(i);
    const bool hole = id >= tok.n_vocab() || tok.token_type(id) == tokenizer::TokenType::kUnused;
    tokens[i] = hole ? "[PAD" + std::to_string(i) + "]" : tok.token_text(id);
    auto type = hole ? tokenizer::TokenType::kUnused : tok.token_type(id);
    const std::string& t = tokens[i];
    if (!gpt2 && type == tokenizer::TokenType::kNormal && t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>')
      type = tokenizer::TokenType::kByte;
    types[i] = static_cast<int32_t>(type);
  }

  w.add_string("tokenizer.ggml.model", gpt2 ? "gpt2" : "llama");
  if (gpt2) {
    std::string pre_name;
    for (const PreName& p : kPreNames)
      if (pre.other == 0 && p.regex == pre.split_regex && p.digits == pre.digits) pre_name = p.name;
    if (pre_name.empty())
      throw Error(tname + ": pre_tokenizer: this byte-level pre-tokenizer is not one slm can name "
                          "(known: qwen2, llama-bpe, gpt-2, smollm)");
    w.add_string("tokenizer.ggml.pre", pre_name);
  }
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_i32s("tokenizer.ggml.token_type", types);
  if (gpt2) {
    std::vector<std::string> m;
    m.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) m.push_back(merge_text(merges[i], i));
    w.add_strings("tokenizer.ggml.merges", m);
  } else {
    // SentencePiece merges the pair whose result scores best; a merge's rank
    // is that priority (the earliest merge first).
    std::vector<float> scores(static_cast<size_t>(n_vocab), 0.0f);
    std::vector<bool> ranked(static_cast<size_t>(n_vocab), false);
    for (size_t i = 0; i < merges.size(); ++i) {
      std::string s = merge_text(merges[i], i);
      const size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
      if (sp == std::string::npos) continue;
      s.erase(sp, 1);
      if (const auto id = tok.find_token(s); id && !ranked[*id]) {
        scores[*id] = -static_cast<float>(i);
        ranked[*id] = true;
      }
    }
    // Longer tokens no merge produces come last.
    for (int64_t i = 0; i < n_vocab; ++i)
      if (!ranked[i] && types[i] == static_cast<int32_t>(tokenizer::TokenType::kNormal) && tokens[i].size() > 1)
        scores[i] = -static_cast<float>(merges.size() + static_cast<size_t>(i));
    w.add_f32s("tokenizer.ggml.scores", scores);
    bool prefix = pre.metaspace_prefix;
    if (tj.contains("normalizer")) prefix = prefix || has_prepend_space(tj["normalizer"], 0);
    w.add_bool("tokenizer.ggml.add_space_prefix", prefix);
  }

  // Special ids: tokenizer_config.json's tokens first, then generation_config.json's
  // and config.json's ids.
  Json gen = Json::object();
  if (fs::exists(root / "generation_config.json")) gen = read_json(root / "generation_config.json");
  auto put_id = [&](const char* key, std::optional<int32_t> id, int64_t fallback) {
    const int64_t v = id ? *id : fallback;
    if (v < 0) return;
    if (v >= n_vocab) throw Error(dir + ": " + key + " " + std::to_string(v) + " is outside the vocabulary");
    w.add_u32(key, static_cast<uint32_t>(v));
  };
  const int64_t gen_bos = config_id(gen, "bos_token_id"), gen_eos = config_id(gen, "eos_token_id");
  put_id("tokenizer.ggml.bos_token_id", tok.bos(), gen_bos >= 0 ? gen_bos : config.bos_id);
  put_id("tokenizer.ggml.eos_token_id", tok.eos(), gen_eos >= 0 ? gen_eos : config.eos_id);
  put_id("tokenizer.ggml.unknown_token_id", tok.unk(), -1);
  put_id("tokenizer.ggml.padding_token_id", tok.pad(), config_id(gen, "pad_token_id"));
  w.add_bool("tokenizer.ggml.add_bos_token", tok.add_bos());
  w.add_bool("tokenizer.ggml.add_eos_token", tok.add_eos());

  // Chat template: tokenizer_config.json (a string, or a list of named
  // templates whose "default" is used), else chat_template.jinja.
  std::string tmpl;
  if (fs::exists(root / "tokenizer_config.json")) {
    const Json tc = read_json(root / "tokenizer_config.json");
    if (auto it = tc.find("chat_template"); it != tc.end() && !it->is_null()) {
      if (it->is_string()) {
        tmpl = it->get<std::string>();
      } else if (it->is_array()) {
        for (const Json& e : *it)
          if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
            tmpl = e["template"].get<std::string>();
      } else {
        throw Error((root / "tokenizer_config.json").string() + ": chat_template: expected a string or a list");
      }
    }
  }
  if (tmpl.empty() && fs::exists(root / "chat_template.jinja")) tmpl = read_text(root / "chat_template.jinja");
  if (!tmpl.empty()) w.add_string("tokenizer.chat_template", tmpl);
}

}  // namespace

void add_hf_tokenizer(gguf::Writer& w, const std::string& dir, const HfConfig& config, int64_t n_vocab) {
  try {
    add_tokenizer(w, dir, config, n_vocab);
  } catch (const nlohmann::json::exception& e) {
    throw Error(dir + ": tokenizer files: " + e.what());
  }
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace slm::convert
