// Internal: the immutable state behind a Tokenizer, shared by the GGUF and
// Hugging Face loaders and the encode/decode paths. Not part of the API.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace slm::tokenizer::detail {

constexpr int32_t kNoToken = -1;

enum class Algorithm : uint8_t {
  kScoreMerge,  // SentencePiece BPE: merge the adjacent pair whose result has the best score
  kRankMerge,   // BPE: apply the merge with the lowest rank first
};

// Token flags beyond the type: lstrip/rstrip eat whitespace next to a special
// token when it is parsed out of the text.
constexpr uint8_t kFlagLstrip = 1;
constexpr uint8_t kFlagRstrip = 2;

struct MergeResult {
  int32_t rank;
  int32_t id;  // token the pair merges into
};

// Open-addressing hash table from a token pair to its merge. The lookup is
// the hot loop of BPE; std::unordered_map's node chasing and prime modulus
// cost about twice as much.
class MergeTable {
 public:
  // Keeps the first insertion of a pair (its lowest rank).
  void insert(int32_t a, int32_t b, MergeResult r);
  const MergeResult* find(int32_t a, int32_t b) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pair_key(a, b);
    for (size_t i = index(key);; i = (i + 1) & (slots_.size() - 1)) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.result;
      if (s.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // ids are < 2^31: never a real key
  struct Slot {
    uint64_t key = kEmpty;
    MergeResult result{};
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t index(uint64_t key) const {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  std::vector<Slot> slots_;
  size_t size_ = 0;
  int shift_ = 64;
};

struct Model {
  std::string name;       // file name, for error messages
  std::string kind_name;  // "spm" / "bpe"
  std::string pre_name;   // tokenizer.ggml.pre or "hf"

  Algorithm algorithm = Algorithm::kRankMerge;
  // Where encode() puts a space before a fragment (SentencePiece); decode()
  // strips it again at the same places.
  SpacePrefix space_prefix = SpacePrefix::kNone;
  bool escape_spaces = false;             // ' ' -> "▁" before merging (SentencePiece/Metaspace)
  bool remove_extra_whitespaces = false;  // SentencePiece normalizer option
  bool byte_fallback = false;             // unknown characters become <0xNN> tokens
  bool ignore_merges = false;             // a whole pre-token that is in the vocabulary wins
  bool fuse_unk = false;
  bool byte_level_decode = false;     // pieces are GPT-2 byte-to-unicode strings
  bool lstrip_decoded_space = false;  // decoder strips one leading space (Metaspace / HF Strip)

  std::vector<NormalizeStep> normalizer;  // applied to each text fragment (HF only)
  PreTokenizer pre;                       // splits a fragment into words

  std::vector<std::string> pieces;   // [n_vocab] the vocabulary's spelling of each token
  std::vector<float> scores;         // [n_vocab] (SentencePiece) merge priority of the token
  std::vector<TokenType> types;      // [n_vocab]
  std::vector<uint8_t> flags;        // [n_vocab] kFlag*
  std::vector<std::string> decoded;  // [n_vocab] bytes each token decodes to (control: its text)
  std::unordered_map<std::string_view, int32_t> piece_to_id;  // views into pieces
  MergeTable merges;                                          // (left, right) -> result
  std::vector<int32_t>
      char_tokens;  // [0x10000] one-character tokens by code point (BMP), or kNoToken
  std::array<int32_t, 256> byte_tokens{};  // <0xNN> ids or kNoToken

  int32_t bos = kNoToken, eos = kNoToken, eot = kNoToken, eom = kNoToken;
  int32_t unk = kNoToken, pad = kNoToken, sep = kNoToken;
  bool add_bos = false, add_eos = false;

  std::vector<int32_t> specials;  // tokens parsed out of text, longest first
  std::vector<uint8_t> eog;       // [n_vocab] 1 = end of generation
  std::vector<int32_t> eog_list;

  int32_t n_vocab() const { return static_cast<int32_t>(pieces.size()); }
  int32_t find(std::string_view s) const {
    auto it = piece_to_id.find(s);
    return it == piece_to_id.end() ? kNoToken : it->second;
  }
};

// Builds piece_to_id, rejecting duplicate spellings; `source` names the field
// in errors ("tokenizer.ggml.tokens", "model.vocab").
void build_lookup(Model& m, const std::string& source);
// Shared by both loaders once pieces/types/scores and the special ids are set:
// byte_tokens, the special-token list, the EOG set and the decoded-piece
// cache (and the lookup, when build_lookup has not run yet).
void finish_model(Model& m, const std::string& source);

// A special id read from metadata: checks range, names the key on error.
int32_t checked_id(const Model& m, int64_t id, const std::string& key);

// Encoding of one text fragment with no special tokens in it (tokenizer.cpp).
void encode_fragment(const Model& m, std::string_view text, bool first_fragment,
                     std::vector<int32_t>& out);
// Merge algorithms (merge.cpp). `word` is already escaped / byte-mapped.
void spm_tokenize(const Model& m, std::string_view word, std::vector<int32_t>& out);
void bpe_tokenize(const Model& m, std::string_view word, std::vector<int32_t>& out);

}  // namespace slm::tokenizer::detail
