#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <map>
#include <string_view>

#include "base/error.h"
#include "base/utf8.h"

namespace slm::tokenizer::detail {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

Regex::Regex(const std::string& pattern, bool literal, const std::string& context)
    : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  // MATCH_INVALID_UTF: hostile or truncated input must not make matching
  // fail; invalid bytes simply never match and end up in the gaps.
  uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
  options |= literal ? PCRE2_LITERAL : PCRE2_UCP;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &err, &err_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    throw Error(context + ": bad regex '" + pattern + "': " + reinterpret_cast<const char*>(msg) +
                " at offset " + std::to_string(err_offset));
  }
  // JIT is an optimisation only; the interpreter runs when it is unavailable.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::Regex(Regex&& o) noexcept : code_(o.code_), pattern_(std::move(o.pattern_)) {
  o.code_ = nullptr;
}

Regex& Regex::operator=(Regex&& o) noexcept {
  if (this != &o) {
    if (code_ != nullptr) pcre2_code_free(static_cast<pcre2_code*>(code_));
    code_ = o.code_;
    pattern_ = std::move(o.pattern_);
    o.code_ = nullptr;
  }
  return *this;
}

Regex::~Regex() {
  if (code_ != nullptr) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

void Regex::find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  if (md == nullptr) throw Error("tokenizer: out of memory for regex match data");
  const auto* subj = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const size_t len = subject.size();
  size_t start = 0;
  while (start < len) {
    int rc = pcre2_match(code, subj, len, start, 0, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
      rc = pcre2_match(code, subj, len, start, PCRE2_NO_JIT, md, nullptr);
    // No match, or a resource limit on a pathological pattern: the rest of
    // the subject stays one unmatched gap rather than failing the encode.
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      start = e;
    } else {  // empty match: step over one character
      if (b >= len) break;
      const size_t n = utf8::valid_len(subject, b);
      start = b + (n == 0 ? 1 : n);
    }
  }
  pcre2_match_data_free(md);
}

namespace {

struct Segment {
  size_t begin, end;
  bool delim;
};

// Splits `piece` by `re` the way HF's Split pre-tokenizer does.
void split_piece(const std::string& piece, const Regex& re, SplitBehavior behavior, bool invert,
                 std::vector<std::string>& out) {
  std::vector<std::pair<size_t, size_t>> matches;
  re.find_all(piece, matches);
  if (matches.empty() && !invert) {
    out.push_back(piece);
    return;
  }
  std::vector<Segment> segs;
  size_t pos = 0;
  for (auto [b, e] : matches) {
    if (b > pos) segs.push_back({pos, b, invert});
    segs.push_back({b, e, !invert});
    pos = e;
  }
  if (pos < piece.size()) segs.push_back({pos, piece.size(), invert});

  std::vector<std::pair<size_t, size_t>> parts;
  bool prev_delim = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const auto& s : segs) parts.emplace_back(s.begin, s.end);
      break;
    case SplitBehavior::kRemoved:
      for (const auto& s : segs)
        if (!s.delim) parts.emplace_back(s.begin, s.end);
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& s : segs) {
        if (s.delim && !prev_delim && !parts.empty()) {
          parts.back().second = s.end;
        } else {
          parts.emplace_back(s.begin, s.end);
        }
        prev_delim = s.delim;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t k = segs.size(); k-- > 0;) {
        const auto& s = segs[k];
        if (s.delim && !prev_delim && !parts.empty()) {
          parts.back().first = s.begin;
        } else {
          parts.emplace_back(s.begin, s.end);
        }
        prev_delim = s.delim;
      }
      std::reverse(parts.begin(), parts.end());
      break;
    case SplitBehavior::kContiguous:
      for (size_t k = 0; k < segs.size(); ++k) {
        const auto& s = segs[k];
        if (k > 0 && s.delim == prev_delim) {
          parts.back().second = s.end;
        } else {
          parts.emplace_back(s.begin, s.end);
        }
        prev_delim = s.delim;
      }
      break;
  }
  for (auto [b, e] : parts)
    if (e > b) out.emplace_back(piece, b, e - b);
}

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

}  // namespace

void PreTokenizer::run(std::string_view fragment, bool first_fragment,
                       std::vector<std::string>& words) const {
  std::vector<std::string> cur, next;
  cur.emplace_back(fragment);
  for (const PreStep& step : steps) {
    next.clear();
    for (size_t i = 0; i < cur.size(); ++i) {
      std::string& piece = cur[i];
      switch (step.kind) {
        case PreStep::Kind::kSplit:
          split_piece(piece, *step.regex, step.behavior, step.invert, next);
          break;
        case PreStep::Kind::kByteLevel: {
          if (step.add_prefix_space && !starts_with(piece, " ")) piece.insert(piece.begin(), ' ');
          std::vector<std::string> parts;
          if (step.regex) {
            split_piece(piece, *step.regex, SplitBehavior::kIsolated, false, parts);
          } else {
            parts.push_back(std::move(piece));
          }
          for (const auto& p : parts) {
            std::string mapped;
            mapped.reserve(p.size() * 2);
            bytes_to_unicode(p, mapped);
            next.push_back(std::move(mapped));
          }
          break;
        }
        case PreStep::Kind::kMetaspace: {
          std::string s;
          s.reserve(piece.size() + 8);
          const bool prepend = step.scheme == SpacePrefix::kAlways ||
                               (step.scheme == SpacePrefix::kFirst && first_fragment && i == 0);
          if (prepend && !starts_with(piece, step.replacement) && !starts_with(piece, " "))
            s += step.replacement;
          for (char c : piece) {
            if (c == ' ') {
              s += step.replacement;
            } else {
              s += c;
            }
          }
          if (!step.metaspace_split || step.replacement.empty()) {
            next.push_back(std::move(s));
            break;
          }
          // Each word starts at a replacement mark (HF MergedWithNext).
          size_t begin = 0;
          for (size_t p = s.find(step.replacement, 1); p != std::string::npos;
               p = s.find(step.replacement, p + step.replacement.size())) {
            if (p > begin) next.emplace_back(s, begin, p - begin);
            begin = p;
          }
          if (begin < s.size()) next.emplace_back(s, begin, std::string::npos);
          break;
        }
      }
    }
    std::swap(cur, next);
  }
  for (auto& w : cur)
    if (!w.empty()) words.push_back(std::move(w));
}

std::string apply_normalizer(const std::vector<NormalizeStep>& steps, std::string_view text) {
  std::string s(text);
  for (const NormalizeStep& step : steps) {
    switch (step.kind) {
      case NormalizeStep::Kind::kForm:
        s = normalize(s, step.form);
        break;
      case NormalizeStep::Kind::kPrepend:
        if (!s.empty()) s.insert(0, step.text);
        break;
      case NormalizeStep::Kind::kReplace: {
        std::vector<std::pair<size_t, size_t>> m;
        step.regex->find_all(s, m);
        if (m.empty()) break;
        std::string r;
        size_t pos = 0;
        for (auto [b, e] : m) {
          r.append(s, pos, b - pos);
          r += step.text;
          pos = e;
        }
        r.append(s, pos, std::string::npos);
        s = std::move(r);
        break;
      }
      case NormalizeStep::Kind::kStrip: {
        auto ws = [](char c) {
          return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
        };
        size_t b = 0, e = s.size();
        if (step.strip_left)
          while (b < e && ws(s[b])) ++b;
        if (step.strip_right)
          while (e > b && ws(s[e - 1])) --e;
        s = s.substr(b, e - b);
        break;
      }
    }
  }
  return s;
}

namespace {

// Pieces of llama.cpp's splitters (by tokenizer.ggml.pre). The contraction
// group is spelled '[sS] rather than (?i:'s) because that is what llama.cpp
// matches (Unicode case folding would also take "'ſ" and the Kelvin sign).
constexpr std::string_view kContractions =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]))";
// A word after at most one symbol; words split at case changes (capitals
// then lower case, or capitals alone); a run of punctuation and newlines.
constexpr std::string_view kWord = R"([^\r\n\p{L}\p{N}]?\p{L}+)";
constexpr std::string_view kCasedWord =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+)";
constexpr std::string_view kCapsWord =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*)";
constexpr std::string_view kPunct = R"( ?[^\s\p{L}\p{N}]+[\r\n]*)";
constexpr std::string_view kPunctSlash = R"( ?[^\s\p{L}\p{N}]+[\r\n/]*)";
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
constexpr const char* kBloom = R"( ?[^(\s|.,!?…。，、।۔،)]+)";

// The branches, then the whitespace runs that end every llama3-style
// splitter, as one alternation.
std::string splitter(std::initializer_list<std::string_view> branches) {
  std::string re;
  for (std::string_view b : branches) (re += b) += '|';
  return re + R"(\s*[\r\n]+|\s+(?!\S)|\s+)";
}

struct PreInfo {
  std::vector<std::string> regexes;
  bool add_bos = false;
  bool ignore_merges = false;
};

const std::map<std::string, PreInfo>& pre_table() {
  static const std::map<std::string, PreInfo> table = [] {
    std::map<std::string, PreInfo> t;
    const PreInfo deflt{{R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}};
    const std::string llama3_re = splitter({kContractions, kWord, R"(\p{N}{1,3})", kPunct});
    const std::string contraction_opt = std::string(kContractions) + "?";
    const PreInfo llama3{{llama3_re}, true, true};
    const PreInfo gpt2{{kGpt2}};
    const PreInfo qwen2{{splitter({kContractions, kWord, R"(\p{N})", kPunct})}};
    const PreInfo starcoder{{R"(\p{N})", kGpt2}};
    const PreInfo bloom{{kBloom}};
    t["default"] = deflt;
    for (const char* n :
         {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"})
      t[n] = llama3;
    for (const char* n : {"dbrx", "smaug-bpe", "glm4", "chatglm-bpe"}) t[n] = PreInfo{{llama3_re}};
    // Cased letters, as DeepSeek's tokenizer.json lists them. Code points that
    // NFC would replace by a canonical twin (U+1F7D, U+1FBE, U+1FD3, U+1FDB,
    // U+2126, U+212A) are written as \x{...}: a copy through a normalising
    // editor otherwise turns "U+1FD0-U+1FD3" into an out-of-order range.
    t["deepseek-llm"] = PreInfo{
        {"[\r\n]",
         "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-"
         "Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\\x{1F7D}ᾀ-ᾴᾶ-ᾼ\\x{1FBE}ῂ-ῄῆ-ῌῐ-\\x{1FD3}ῖ-\\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\\x{2126}ℨ\\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-"
         "ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-"
         "𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
         "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"}};
    t["deepseek-coder"] =
        PreInfo{{"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"}};
    t["deepseek-v3"] = PreInfo{
        {R"(\p{N}{1,3})", "[一-龥぀-ゟ゠-ヿ]+",
         splitter({R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+)",
                   R"([^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+)", R"( ?[\p{P}\p{S}]+[\r\n]*)"})}};
    t["falcon"] = PreInfo{{R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"}};
    for (const char* n :
         {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"})
      t[n] = starcoder;
    for (const char* n : {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en",
                          "jina-v2-es", "jina-v2-de", "jina-v2-code", "roberta-bpe", "mpt", "olmo",
                          "jais", "trillion", "exaone4", "a.x-4.0", "mellum", "granite-docling"})
      t[n] = gpt2;
    for (const char* n : {"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan", "grok-2"})
      t[n] = qwen2;
    t["qwen35"] = PreInfo{{splitter({kContractions, R"([^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+)",
                                     R"(\p{N})", R"( ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*)"})}};
    for (const char* n : {"poro-chat", "bloom", "gpt3-finnish"}) t[n] = bloom;
    t["viking"] = PreInfo{{kBloom, R"(\p{N})"}};
    t["tekken"] = PreInfo{{splitter({kCasedWord, kCapsWord, R"(\p{N})", kPunctSlash})}, true, true};
    t["chameleon"] = PreInfo{{"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                              "([\\t\\n]|    |  )", R"(\p{N})", R"([\p{P}!-/:-@\[-`{-~])", kGpt2},
                             true};
    for (const char* n : {"gpt-4o", "llama4"})
      t[n] = PreInfo{
          {splitter({std::string(kCasedWord) + contraction_opt,
                     std::string(kCapsWord) + contraction_opt, R"(\p{N}{1,3})", kPunctSlash})}};
    t["seed-coder"] =
        PreInfo{{splitter({kContractions, kWord, R"(\p{N}{1})", R"( ?[^\s\p{L}\p{N}\r\n]+)"})}};
    for (const char* n : {"bailingmoe", "bailingmoe2", "llada-moe"})
      t[n] = PreInfo{
          {R"('(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)"}};
    return t;
  }();
  return table;
}

}  // namespace

std::vector<std::string> gguf_pre_regexes(const std::string& pre, bool* add_bos,
                                          bool* ignore_merges) {
  const auto& table = pre_table();
  auto it = table.find(pre);
  if (it == table.end()) {
    throw Error("tokenizer.ggml.pre: unknown pre-tokenizer '" + pre + "'");
  }
  *add_bos = it->second.add_bos;
  *ignore_merges = it->second.ignore_merges;
  return it->second.regexes;
}

}  // namespace slm::tokenizer::detail
