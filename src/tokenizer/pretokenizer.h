// Internal: normalizers and pre-tokenizers (text -> words) for the BPE paths.
// Regexes run on PCRE2 in UTF + UCP mode, so \p{L}, \p{N}, \s and case-
// insensitive groups follow the Unicode tables rather than ASCII.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/unicode.h"

namespace slm::tokenizer::detail {

// A compiled PCRE2 pattern. Immutable and shareable between threads (match
// data is allocated per call). Invalid UTF-8 in the subject never matches.
class Regex {
 public:
  // Throws slm::Error "<context>: bad regex ..." when the pattern does not compile.
  Regex(const std::string& pattern, bool literal, const std::string& context);
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex();

  // Appends the [begin, end) byte ranges of successive non-overlapping,
  // non-empty matches in subject (offsets relative to subject).
  void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const;
  const std::string& pattern() const { return pattern_; }

 private:
  void* code_ = nullptr;  // pcre2_code_8*
  std::string pattern_;
};

// Where a space goes in front of a text fragment (the text between special
// tokens) before SentencePiece / Metaspace escaping.
enum class SpacePrefix : uint8_t { kNone, kFirst, kAlways };

// What a split does with the text a pattern matches (HF SplitDelimiterBehavior).
enum class SplitBehavior : uint8_t {
  kIsolated,
  kRemoved,
  kMergedWithPrevious,
  kMergedWithNext,
  kContiguous
};

struct PreStep {
  enum class Kind : uint8_t { kSplit, kByteLevel, kMetaspace } kind = Kind::kSplit;
  std::shared_ptr<const Regex> regex;  // kSplit; kByteLevel with use_regex (may be null)
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;            // kSplit: the pattern matches the words, not the delimiters
  bool add_prefix_space = false;  // kByteLevel: a space before a fragment that lacks one
  bool metaspace_split = false;   // kMetaspace: cut before every "▁"
  SpacePrefix scheme = SpacePrefix::kAlways;          // kMetaspace
  std::string replacement = std::string(kSpaceMark);  // kMetaspace
};

struct PreTokenizer {
  std::vector<PreStep> steps;
  // Splits one fragment into words (each already byte-mapped / escaped as the
  // steps say). first_fragment: the fragment starts the encoded text.
  void run(std::string_view fragment, bool first_fragment, std::vector<std::string>& words) const;
};

struct NormalizeStep {
  enum class Kind : uint8_t { kForm, kPrepend, kReplace, kStrip } kind = Kind::kForm;
  NormForm form = NormForm::kNfc;
  std::string text;                    // kPrepend: prefix; kReplace: content
  std::shared_ptr<const Regex> regex;  // kReplace pattern
  bool strip_left = false, strip_right = false;
};
std::string apply_normalizer(const std::vector<NormalizeStep>& steps, std::string_view text);

// The split regexes llama.cpp uses for a tokenizer.ggml.pre value (applied in
// order, each splitting the pieces of the one before). Throws slm::Error
// naming the key for an unknown name. *add_bos / *ignore_merges receive the
// defaults that pre-tokenizer implies.
std::vector<std::string> gguf_pre_regexes(const std::string& pre, bool* add_bos,
                                          bool* ignore_merges);

// GPT-2's pattern, used by the HF ByteLevel pre-tokenizer with use_regex.
extern const char* const kGpt2Pattern;

}  // namespace slm::tokenizer::detail
