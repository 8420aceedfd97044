#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "base/error.h"
#include "base/utf8.h"
#include "tokenizer/model.h"

namespace slm::tokenizer {

using detail::kNoToken;
using detail::Model;

namespace detail {
namespace {

// Shows a vocabulary string in an error message without dumping megabytes.
std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) {
    const auto b = static_cast<uint8_t>(c);
    if (b < 0x20 || b == 0x7F) {
      static const char* kHex = "0123456789abcdef";
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 15];
    } else {
      out += c;
    }
  }
  if (s.size() > 64) out += "...";
  return out;
}

bool is_special_type(TokenType t) {
  return t == TokenType::kControl || t == TokenType::kUnknown;
}
bool is_parsed_type(TokenType t) {
  return is_special_type(t) || t == TokenType::kUserDefined;
}

// "<0xNN>" with upper-case hex digits, as SentencePiece spells byte pieces.
int parse_byte_piece(std::string_view s) {
  if (s.size() != 6 || s.substr(0, 3) != "<0x" || s[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(s[3]), lo = hex(s[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Token spellings that end a turn in the chat formats we know of (the same
// list llama.cpp keys on, since GGUF files rarely mark eot explicitly).
constexpr const char* kEogTexts[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<｜end▁of▁sentence｜>",
};

}  // namespace

void MergeTable::insert(int32_t a, int32_t b, MergeResult r) {
  if ((size_ + 1) * 2 > slots_.size()) {
    std::vector<Slot> old = std::move(slots_);
    const size_t cap = old.empty() ? 1024 : old.size() * 2;
    slots_.assign(cap, Slot{});
    shift_ = 64 - std::countr_zero(cap);
    size_ = 0;
    for (const Slot& s : old)
      if (s.key != kEmpty)
        insert(static_cast<int32_t>(s.key >> 32), static_cast<int32_t>(s.key & 0xFFFFFFFFu),
               s.result);
  }
  const uint64_t key = pair_key(a, b);
  for (size_t i = index(key);; i = (i + 1) & (slots_.size() - 1)) {
    Slot& s = slots_[i];
    if (s.key == key) return;  // an earlier (lower-rank) merge of the same pair wins
    if (s.key == kEmpty) {
      s.key = key;
      s.result = r;
      ++size_;
      return;
    }
  }
}

int32_t checked_id(const Model& m, int64_t id, const std::string& key) {
  // Converters write -1 (or its u32 spelling) for "no such token".
  if (id < 0 || id == 0xFFFFFFFFLL) return kNoToken;
  if (id >= m.n_vocab()) {
    throw Error(m.name + ": " + key + ": token id " + std::to_string(id) +
                " is out of range (vocabulary has " + std::to_string(m.n_vocab()) + " tokens)");
  }
  return static_cast<int32_t>(id);
}

void build_lookup(Model& m, const std::string& source) {
  const size_t n = m.pieces.size();
  if (n == 0) throw Error(m.name + ": " + source + ": empty vocabulary");
  if (n > static_cast<size_t>(INT32_MAX)) throw Error(m.name + ": " + source + ": too many tokens");
  m.piece_to_id.clear();
  m.piece_to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& p = m.pieces[i];
    if (p.empty()) continue;  // an empty token can never be matched or merged into
    auto [it, inserted] = m.piece_to_id.emplace(std::string_view(p), static_cast<int32_t>(i));
    if (!inserted) {
      throw Error(m.name + ": " + source + ": duplicate token '" + shown(p) + "' (ids " +
                  std::to_string(it->second) + " and " + std::to_string(i) + ")");
    }
  }
}

void finish_model(Model& m, const std::string& source) {
  if (m.piece_to_id.empty()) build_lookup(m, source);
  const size_t n = m.pieces.size();
  m.scores.resize(n, 0.0f);
  m.types.resize(n, TokenType::kNormal);
  m.flags.resize(n, 0);

  m.char_tokens.assign(0x10000, kNoToken);
  for (size_t i = 0; i < n; ++i) {
    const std::string& p = m.pieces[i];
    if (p.empty() || p.size() > 3 || utf8::valid_len(p, 0) != p.size()) continue;
    size_t len = 0;
    m.char_tokens[utf8::decode(p, 0, &len)] = static_cast<int32_t>(i);
  }

  m.byte_tokens.fill(kNoToken);
  static const char* kHex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    const char buf[6] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
    m.byte_tokens[b] = m.find(std::string_view(buf, 6));
  }

  // End of generation; a text-detected one is made a control token so that
  // it is parsed and rendered as the special token it is.
  m.eog.assign(n, 0);
  for (int32_t id : {m.eos, m.eot, m.eom})
    if (id != kNoToken) m.eog[id] = 1;
  for (const char* t : kEogTexts) {
    const int32_t id = m.find(t);
    if (id == kNoToken) continue;
    m.eog[id] = 1;
    if (m.types[id] != TokenType::kControl) m.types[id] = TokenType::kControl;
  }
  m.eog_list.clear();
  for (size_t i = 0; i < n; ++i)
    if (m.eog[i]) m.eog_list.push_back(static_cast<int32_t>(i));

  m.specials.clear();
  for (size_t i = 0; i < n; ++i)
    if (is_parsed_type(m.types[i]) && !m.pieces[i].empty())
      m.specials.push_back(static_cast<int32_t>(i));
  std::stable_sort(m.specials.begin(), m.specials.end(),
                   [&](int32_t a, int32_t b) { return m.pieces[a].size() > m.pieces[b].size(); });

  m.decoded.assign(n, std::string());
  for (size_t i = 0; i < n; ++i) {
    const std::string& p = m.pieces[i];
    std::string& d = m.decoded[i];
    const TokenType t = m.types[i];
    if (is_parsed_type(t)) {
      d = p;
    } else if (t == TokenType::kUnused) {
      // Padding rows ([PAD151935]...): nothing to show, as llama.cpp does.
    } else if (const int b = parse_byte_piece(p);
               b >= 0 && (t == TokenType::kByte ||
                          (!m.byte_level_decode && m.byte_tokens[b] == static_cast<int32_t>(i)))) {
      // <0xNN>: a byte token (HF files have no token types, so the spelling decides).
      d = std::string(1, static_cast<char>(b));
    } else if (t == TokenType::kByte) {
      d = p;  // a byte token whose spelling is not <0xNN>: show it as is
    } else if (m.byte_level_decode) {
      detail::unicode_to_bytes(p, d);
    } else {
      // "▁" stands for a space in SentencePiece / Metaspace pieces.
      for (size_t k = 0; k < p.size();) {
        if (p.compare(k, kSpaceMark.size(), kSpaceMark) == 0) {
          d += ' ';
          k += kSpaceMark.size();
        } else {
          d += p[k++];
        }
      }
    }
  }
}

namespace {

struct Fragment {
  int32_t id;  // kNoToken for raw text
  size_t off;
  size_t len;
};

bool c_isspace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Cuts special-token spellings out of the text the way llama.cpp does: each
// special token, longest first, splits every remaining raw fragment at its
// occurrences (left to right). lstrip/rstrip tokens also eat the adjacent
// whitespace of the fragment they split.
std::vector<Fragment> partition(const Model& m, std::string_view text, bool parse_special) {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({kNoToken, 0, text.size()});
  std::vector<Fragment> next;
  for (const int32_t id : m.specials) {
    if (!parse_special && is_special_type(m.types[id])) continue;
    const std::string& s = m.pieces[id];
    bool any = false;
    for (const Fragment& f : frags) {
      if (f.id == kNoToken && text.substr(f.off, f.len).find(s) != std::string_view::npos) {
        any = true;
        break;
      }
    }
    if (!any) continue;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.id != kNoToken) {
        next.push_back(f);
        continue;
      }
      size_t base = f.off, blen = f.len;
      while (blen > 0) {
        const size_t match = text.substr(0, base + blen).find(s, base);
        if (match == std::string_view::npos) {
          next.push_back({kNoToken, base, blen});
          break;
        }
        size_t llen = match - base;
        if (m.flags[id] & kFlagLstrip)
          while (llen > 0 && c_isspace(text[base + llen - 1])) --llen;
        if (llen > 0) next.push_back({kNoToken, base, llen});
        next.push_back({id, 0, 0});
        size_t rb = match + s.size();
        size_t rlen = base + blen - rb;
        if (m.flags[id] & kFlagRstrip)
          while (rlen > 0 && c_isspace(text[rb])) ++rb, --rlen;
        base = rb;
        blen = rlen;
      }
    }
    std::swap(frags, next);
  }
  return frags;
}

std::string collapse_spaces(std::string_view t) {
  std::string out;
  bool prev_space = true;  // also drops leading spaces
  for (char c : t) {
    if (c == ' ') {
      if (!prev_space) out += c;
      prev_space = true;
    } else {
      out += c;
      prev_space = false;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

void encode_fragment(const Model& m, std::string_view text, bool first_fragment,
                     std::vector<int32_t>& out) {
  if (m.algorithm == Algorithm::kScoreMerge) {
    std::string collapsed;
    if (m.remove_extra_whitespaces) {
      collapsed = collapse_spaces(text);
      text = collapsed;
      if (text.empty()) return;
    }
    std::string s;
    s.reserve(text.size() + text.size() / 2 + 3);
    const bool prefix = m.space_prefix == SpacePrefix::kAlways ||
                        (m.space_prefix == SpacePrefix::kFirst && first_fragment);
    if (prefix) s += m.escape_spaces ? std::string(kSpaceMark) : std::string(" ");
    for (char c : text) {
      if (c == ' ' && m.escape_spaces) {
        s += kSpaceMark;
      } else {
        s += c;
      }
    }
    spm_tokenize(m, s, out);
    return;
  }
  thread_local std::vector<std::string> words;
  words.clear();
  if (m.normalizer.empty()) {
    m.pre.run(text, first_fragment, words);
  } else {
    m.pre.run(apply_normalizer(m.normalizer, text), first_fragment, words);
  }
  for (const std::string& w : words) bpe_tokenize(m, w, out);
}

}  // namespace detail

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  const Model& m = *model_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && m.add_bos && m.bos != kNoToken) out.push_back(m.bos);
  for (const auto& f : detail::partition(m, text, parse_special)) {
    if (f.id != kNoToken) {
      out.push_back(f.id);
    } else {
      detail::encode_fragment(m, text.substr(f.off, f.len), f.off == 0, out);
    }
  }
  if (add_special && m.add_eos && m.eos != kNoToken) out.push_back(m.eos);
  return out;
}

namespace {

void check_id(const Model& m, int32_t id) {
  if (id < 0 || id >= m.n_vocab()) {
    throw Error("token id " + std::to_string(id) + " is out of range (vocabulary has " +
                std::to_string(m.n_vocab()) + " tokens)");
  }
}

// Appends one token's text, updating the "strip the next leading space" state.
void append_piece(const Model& m, int32_t id, const DecodeOptions& opt, bool& strip_next,
                  std::string& out) {
  check_id(m, id);
  const TokenType t = m.types[id];
  const std::string& piece = m.decoded[id];
  if (detail::is_parsed_type(t)) {
    if (t == TokenType::kUserDefined || opt.render_special) out += piece;
    // The encoder put a space in front of the text after a special token.
    strip_next = opt.strip_space_prefix && m.space_prefix == detail::SpacePrefix::kAlways;
    return;
  }
  if (piece.empty()) return;
  if (strip_next && piece[0] == ' ') {
    out.append(piece, 1, std::string::npos);
  } else {
    out += piece;
  }
  strip_next = false;
}

}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids, const DecodeOptions& options) const {
  const Model& m = *model_;
  std::string out;
  bool strip_next = options.strip_space_prefix && m.space_prefix != detail::SpacePrefix::kNone;
  for (int32_t id : ids) append_piece(m, id, options, strip_next, out);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  check_id(*model_, id);
  if (!render_special && detail::is_special_type(model_->types[id])) return {};
  return model_->decoded[id];
}

const std::string& Tokenizer::token_text(int32_t id) const {
  check_id(*model_, id);
  return model_->pieces[id];
}

TokenType Tokenizer::token_type(int32_t id) const {
  check_id(*model_, id);
  return model_->types[id];
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const int32_t id = model_->find(text);
  if (id == kNoToken) return std::nullopt;
  return id;
}

namespace {
std::optional<int32_t> opt_id(int32_t id) {
  if (id == kNoToken) return std::nullopt;
  return id;
}
}  // namespace

int32_t Tokenizer::n_vocab() const {
  return model_->n_vocab();
}
std::optional<int32_t> Tokenizer::bos() const {
  return opt_id(model_->bos);
}
std::optional<int32_t> Tokenizer::eos() const {
  return opt_id(model_->eos);
}
std::optional<int32_t> Tokenizer::eot() const {
  return opt_id(model_->eot);
}
std::optional<int32_t> Tokenizer::unk() const {
  return opt_id(model_->unk);
}
std::optional<int32_t> Tokenizer::pad() const {
  return opt_id(model_->pad);
}
bool Tokenizer::add_bos() const {
  return model_->add_bos && model_->bos != kNoToken;
}
bool Tokenizer::add_eos() const {
  return model_->add_eos && model_->eos != kNoToken;
}
bool Tokenizer::is_eog(int32_t id) const {
  return id >= 0 && id < model_->n_vocab() && model_->eog[id] != 0;
}
const std::vector<int32_t>& Tokenizer::eog_ids() const {
  return model_->eog_list;
}
std::string_view Tokenizer::kind() const {
  return model_->kind_name;
}
std::string_view Tokenizer::pre() const {
  return model_->pre_name;
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options)
    : tokenizer_(&tokenizer), options_(options) {
  reset();
}

void StreamDecoder::reset() {
  pending_.clear();
  strip_next_ =
      options_.strip_space_prefix && tokenizer_->model().space_prefix != detail::SpacePrefix::kNone;
}

std::string StreamDecoder::push(int32_t id) {
  append_piece(tokenizer_->model(), id, options_, strip_next_, pending_);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    bool incomplete = false;
    size_t bad = 1;
    const size_t n = utf8::valid_len(pending_, i, &incomplete, &bad);
    if (n > 0) {
      out.append(pending_, i, n);
      i += n;
    } else if (incomplete) {
      break;  // wait for the rest of this character
    } else {
      out += utf8::kReplacement;
      i += bad;
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  // What is held is a valid but truncated prefix: one replacement character.
  if (!pending_.empty()) out = std::string(utf8::kReplacement);
  pending_.clear();
  return out;
}

}  // namespace slm::tokenizer
