// Tokenizers for slm: SentencePiece-style score merging (GGUF "llama") and
// byte-level / Metaspace BPE with rank merging (GGUF "gpt2", Hugging Face
// tokenizer.json model "BPE"), driven entirely by the vocabulary's metadata.
//
// Ownership and thread-safety: a Tokenizer owns a copy of everything it needs
// (it does not keep the gguf::File or the JSON alive) and is immutable after
// construction; copies share the same read-only state, and encode/decode may
// be called from any number of threads at once. A StreamDecoder is per-stream
// state and must not be shared between threads.
//
// Errors: loading a hostile or unsupported vocabulary throws slm::Error naming
// the key (or the JSON field); decode() throws slm::Error naming an id that is
// out of range. encode() accepts any bytes, including invalid UTF-8.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace slm::gguf {
class File;
}

namespace slm::tokenizer {

namespace detail {
struct Model;
}

// GGUF token types (tokenizer.ggml.token_type); Hugging Face added tokens map
// to kControl (special) or kUserDefined (not special).
enum class TokenType : uint8_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct DecodeOptions {
  // Control and unknown tokens (BOS, <|im_end|>, <unk>...) render as their
  // text; false skips them. User-defined tokens (<think>...) always render.
  bool render_special = true;
  // SentencePiece-style vocabularies: drop the one space that encode() puts in
  // front of the text (and after each special token), so that
  // decode(encode(x)) == x. Turn off when decoding a continuation, where a
  // leading "▁" is a real space.
  bool strip_space_prefix = true;
};

class Tokenizer {
 public:
  // From GGUF metadata (tokenizer.ggml.*). Throws slm::Error naming the key.
  static Tokenizer from_gguf(const gguf::File& file);
  // From a Hugging Face tokenizer.json; a tokenizer_config.json in the same
  // folder, when present, supplies add_bos_token/add_eos_token and the
  // bos/eos/unk/pad token strings. path may also name the folder.
  static Tokenizer from_hf_json(const std::string& path);
  // The same from JSON text in memory (tests, fuzzing); config_json may be empty.
  static Tokenizer from_hf_json_text(std::string_view tokenizer_json, std::string_view config_json,
                                     const std::string& name);

  // add_special: add BOS/EOS where the vocabulary asks for them.
  // parse_special: text that spells a control token becomes that token
  // (user-defined tokens are always recognised, as llama.cpp and HF do).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // Concatenated bytes of the tokens. Exactly the encoded bytes for lossless
  // vocabularies; may be invalid UTF-8 when ids split a character (use
  // StreamDecoder for display). Throws slm::Error naming a bad id.
  std::string decode(std::span<const int32_t> ids, const DecodeOptions& options = {}) const;

  // Bytes that one token stands for (no space stripping); control tokens give
  // their text when render_special, else "". Throws for a bad id.
  std::string token_to_piece(int32_t id, bool render_special = true) const;
  // The vocabulary's own spelling of the token ("Ġthe", "▁the", "<0x0A>").
  const std::string& token_text(int32_t id) const;
  TokenType token_type(int32_t id) const;
  std::optional<int32_t> find_token(std::string_view text) const;

  int32_t n_vocab() const;
  std::optional<int32_t> bos() const;
  std::optional<int32_t> eos() const;
  std::optional<int32_t> eot() const;
  std::optional<int32_t> unk() const;
  std::optional<int32_t> pad() const;
  bool add_bos() const;
  bool add_eos() const;
  // End of generation: eos, eot, eom and the well-known end-of-turn spellings
  // (<|im_end|>, <|eot_id|>, <end_of_turn>, <|endoftext|>, <|end|>...).
  bool is_eog(int32_t id) const;
  const std::vector<int32_t>& eog_ids() const;
  // "spm" or "bpe", and the pre-tokenizer name (for `slm info`).
  std::string_view kind() const;
  std::string_view pre() const;

  const detail::Model& model() const { return *model_; }

 private:
  explicit Tokenizer(std::shared_ptr<const detail::Model> model) : model_(std::move(model)) {}
  std::shared_ptr<const detail::Model> model_;
};

// Incremental detokenizer for streaming generation: push() returns only whole,
// valid UTF-8 characters and holds back the bytes of a character that is not
// complete yet; bytes that can never form a character become U+FFFD. flush()
// releases what is held (as U+FFFD) at the end of the stream. For a token
// sequence whose decode() is valid UTF-8, the concatenation of every push()
// and the final flush() equals decode(). It keeps a pointer to the Tokenizer,
// which must outlive it.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options = {});
  std::string push(int32_t id);
  std::string flush();
  void reset();
  // Bytes currently held back (0..3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  DecodeOptions options_;
  bool strip_next_ = true;
  std::string pending_;
};

}  // namespace slm::tokenizer
