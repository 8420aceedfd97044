// The two merge algorithms. Both work on one word (a pre-token, or a whole
// SentencePiece fragment) cut into UTF-8 characters, keep the symbols in a
// doubly linked list and pick the next merge from a binary heap, so a long
// word costs O(n log n) rather than a rescan of every pair after each merge.
#include <algorithm>

#include "base/utf8.h"
#include "tokenizer/model.h"

namespace slm::tokenizer::detail {
namespace {

struct Symbol {
  int32_t prev;
  int32_t next;
  uint32_t start;  // byte offset in the word
  uint32_t len;    // 0 once merged into its left neighbour
  int32_t id;      // rank merging: the token this symbol spells, or kNoToken
};

void cut_symbols(std::string_view word, std::vector<Symbol>& syms) {
  syms.clear();
  for (size_t i = 0; i < word.size();) {
    // A byte that does not start a well-formed character is a symbol of its
    // own (llama.cpp trusts the lead byte and can swallow the next "▁").
    size_t n = utf8::valid_len(word, i);
    if (n == 0) n = 1;
    const auto idx = static_cast<int32_t>(syms.size());
    syms.push_back(
        {idx - 1, idx + 1, static_cast<uint32_t>(i), static_cast<uint32_t>(n), kNoToken});
    i += n;
  }
  if (!syms.empty()) syms.back().next = -1;
}

// A symbol that is not a token: <0xNN> byte tokens where the vocabulary has
// them, else the unknown token (fused when asked), else nothing — the text
// cannot be represented and is dropped, as llama.cpp does.
void emit_unknown(const Model& m, std::string_view text, bool prefer_bytes,
                  std::vector<int32_t>& out) {
  if (prefer_bytes) {
    bool all = true;
    for (char c : text) all = all && m.byte_tokens[static_cast<uint8_t>(c)] != kNoToken;
    if (all) {
      for (char c : text) out.push_back(m.byte_tokens[static_cast<uint8_t>(c)]);
      return;
    }
  }
  if (m.unk == kNoToken) return;
  if (m.fuse_unk && !out.empty() && out.back() == m.unk) return;
  out.push_back(m.unk);
}

// The token of one symbol: a table lookup for BMP characters, the hash map
// for the rest (and for stray bytes, which are not characters).
int32_t char_token(const Model& m, std::string_view c) {
  size_t len = 0;
  const char32_t cp = utf8::decode(c, 0, &len);
  if (len != c.size() || cp >= m.char_tokens.size() || (len == 1 && cp >= 0x80)) return m.find(c);
  return m.char_tokens[cp];
}

struct SpmBigram {
  float score;
  int32_t left;
  int32_t right;
  uint32_t size;   // bytes of the merged symbol
  int32_t result;  // its token
};
struct SpmOrder {  // best score first, then the leftmost pair
  bool operator()(const SpmBigram& a, const SpmBigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

struct RankBigram {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t left_id;
  int32_t right_id;
  int32_t result;
};
struct RankOrder {  // lowest rank first, then the leftmost pair
  bool operator()(const RankBigram& a, const RankBigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

// The loop both algorithms share: queue every adjacent pair that may merge,
// then merge the best queued pair that is still current until none is left,
// linking the survivor to its new neighbours and queueing the two new pairs.
// pair_of(l, r, b): whether symbols l and r may merge, filling bigram b
// (left, right, result and the Order's key); current(b, left, right):
// whether a popped pair still describes its two (unmerged) symbols.
template <class Order, class Bigram, class PairOf, class Current>
void merge_symbols(std::vector<Symbol>& syms, std::vector<Bigram>& heap, PairOf pair_of,
                   Current current) {
  heap.clear();
  auto try_add = [&](int32_t l, int32_t r) {
    Bigram b{};
    if (l < 0 || r < 0 || !pair_of(l, r, b)) return;
    heap.push_back(b);
    std::push_heap(heap.begin(), heap.end(), Order{});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) try_add(i - 1, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), Order{});
    const Bigram b = heap.back();
    heap.pop_back();
    Symbol& left = syms[b.left];
    Symbol& right = syms[b.right];
    if (left.len == 0 || right.len == 0 || !current(b, left, right)) continue;  // stale
    left.len += right.len;
    left.id = b.result;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = b.left;
    try_add(left.prev, b.left);
    try_add(b.left, left.next);
  }
}

}  // namespace

void spm_tokenize(const Model& m, std::string_view word, std::vector<int32_t>& out) {
  // Scratch reused across calls on this thread: encode stays allocation-light
  // while the Model itself stays immutable and shareable.
  thread_local std::vector<Symbol> syms;
  thread_local std::vector<SpmBigram> heap;
  cut_symbols(word, syms);
  if (syms.empty()) return;
  merge_symbols<SpmOrder>(
      syms, heap,
      [&](int32_t l, int32_t r, SpmBigram& b) {
        const uint32_t size = syms[l].len + syms[r].len;
        const int32_t id = m.find(word.substr(syms[l].start, size));
        if (id == kNoToken) return false;
        b = {m.scores[id], l, r, size, id};
        return true;
      },
      // A merge into either side changes its length.
      [](const SpmBigram& b, const Symbol& left, const Symbol& right) {
        return left.len + right.len == b.size;
      });

  for (int32_t i = 0; i != -1; i = syms[i].next) {
    const std::string_view text = word.substr(syms[i].start, syms[i].len);
    const int32_t id = m.find(text);
    if (id != kNoToken) {
      out.push_back(id);
    } else {
      emit_unknown(m, text, true, out);
    }
  }
}

void bpe_tokenize(const Model& m, std::string_view word, std::vector<int32_t>& out) {
  if (word.empty()) return;
  if (m.ignore_merges) {
    const int32_t id = m.find(word);
    if (id != kNoToken) {
      out.push_back(id);
      return;
    }
  }
  thread_local std::vector<Symbol> syms;
  thread_local std::vector<RankBigram> heap;
  cut_symbols(word, syms);
  for (auto& s : syms) s.id = char_token(m, word.substr(s.start, s.len));
  merge_symbols<RankOrder>(
      syms, heap,
      [&](int32_t l, int32_t r, RankBigram& b) {
        const int32_t a = syms[l].id, c = syms[r].id;
        if (a == kNoToken || c == kNoToken) return false;
        const MergeResult* mr = m.merges.find(a, c);
        if (mr == nullptr) return false;
        b = {mr->rank, l, r, a, c, mr->id};
        return true;
      },
      // Current while neither side has merged since the pair was queued.
      [](const RankBigram& b, const Symbol& left, const Symbol& right) {
        return left.next == b.right && left.id == b.left_id && right.id == b.right_id;
      });

  for (int32_t i = 0; i != -1; i = syms[i].next) {
    if (syms[i].id != kNoToken) {
      out.push_back(syms[i].id);
    } else {
      emit_unknown(m, word.substr(syms[i].start, syms[i].len), m.byte_fallback, out);
    }
  }
}

}  // namespace slm::tokenizer::detail
