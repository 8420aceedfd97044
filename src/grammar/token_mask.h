// Allowed-token masks: which tokens of a vocabulary can come next under a
// Matcher's current state. The grammar module stays free of tokenizers: the
// caller gives each token's bytes (empty bytes = never allowed, e.g. special
// tokens the grammar should not see).
//
// TokenTrie: the tokens' byte strings as a trie flattened in depth-first
// order; node i's subtree is [i, next[i]). A mask walks it depth-first: a byte
// the matcher rejects skips the whole subtree. During one walk the matcher's
// states are interned into a small lazily built DFA (state x byte -> state)
// by Matcher::state_key (the sorted hash-consed stack ids, O(stacks); the
// full signature walks every frame of every stack, which cost more than the
// steps in states with dozens of stacks, e.g. the start of a key among many
// listed properties), so a (state, byte) pair is stepped once and every other
// trie node costs a table lookup: inside free text, where almost every token
// is allowed, the walk is O(trie nodes) lookups plus O(distinct states x 256)
// matcher steps.
//
// A small per-computer cache maps a state's signature to its mask, so a state
// that recurs (free text inside a string) costs one signature and one copy. A
// second cache is keyed by the local signature (top frames of each stack):
// the walk records which paths looked below those frames (Matcher::watch);
// the rest of the mask holds in any context with the same local signature,
// so a later state with that local signature re-walks only those subtrees.
// (The matcher's depth limit is the one thing that may differ between such
// contexts; it only matters 10,000 rules deep.)
//
// Loop views: inside free text most characters take the matcher's state back
// to itself (its loop set). For such a set the trie keeps, built on first use
// and shared by every computer of the vocabulary, the tokens made only of
// those characters (a bitset) and the "exits": trie nodes where a token's
// path first leaves the set. A state that loops on the set then costs one
// bitset OR plus walks from the exits whose first byte it can take, instead
// of a walk over every token. At the root, a state where most first bytes
// lead to one looping state takes the view's tail (tokens whose characters
// after the first are in the set), and a counted repetition (x{0,n}, where
// each character of a set steps down a chain of states) takes the view's
// tokens by length and walks each exit from the chain state its prefix
// reaches. A DFA step fills the transitions of every ASCII byte that the top
// classes treat alike, so a state costs one matcher step per byte class.
//
// Shapes: mask is a bitset [ceil(n_tokens / 64)] of uint64_t, bit i = token i.
// Thread-safety: a TokenTrie is shared and safe to use from several threads
// (its loop-view memo is guarded by a mutex); MaskComputer is per-sequence
// scratch (snapshots), used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "grammar/matcher.h"

namespace slm::grammar {

class TokenTrie {
 public:
  explicit TokenTrie(const std::vector<std::string>& token_bytes);
  size_t n_tokens() const { return n_tokens_; }
  size_t n_nodes() const { return nodes_.size(); }
  // Loop views kept (up to kMaxViews, the least recently used dropped first).
  size_t loop_views() const;

 private:
  friend class MaskComputer;
  static constexpr size_t kMaxTokenBytes = 4096;  // longer tokens are never allowed
  static constexpr size_t kMaxViews = 32;
  static constexpr size_t kViewMinBytes = 32;  // smaller loop sets get no view
  void summarize();
  struct Node {
    uint32_t next;       // index just past this node's subtree
    uint32_t tok_begin;  // tokens ending at this node: ids_[tok_begin, tok_end)
    uint32_t tok_end;
    uint16_t depth;  // 1 for the first byte of a token
    uint8_t byte;
  };
  // What lies strictly below a node: the ASCII bytes (a 128-bit set) and flags.
  struct Below {
    uint64_t ascii[2];
    uint8_t flags;  // kBelowNonAscii | kBelowInvalid
  };
  static constexpr uint8_t kBelowNonAscii = 1;  // some byte >= 0x80
  static constexpr uint8_t kBelowInvalid = 2;   // some path is not a UTF-8 prefix
  std::vector<Node> nodes_;
  std::vector<int32_t> ids_;
  std::vector<Below> below_;       // [n_nodes]
  std::vector<uint8_t> boundary_;  // [n_nodes] path is valid UTF-8 ending a whole character
  std::vector<uint32_t> ids_at_;   // [n_nodes + 1] ids_ size when the node was made: the
                                   // tokens of subtree i are ids_[ids_at_[i], ids_at_[next])
  std::vector<uint32_t> parent_;   // [n_nodes] kNoParent for the first byte of a token
  // [n_nodes] kCharStart: the path before the node is valid UTF-8 ending a
  // whole character; kCharBad: the character starting here is not valid
  // UTF-8 on some path (a bad lead or continuation byte).
  std::vector<uint8_t> char_;
  static constexpr uint32_t kNoParent = UINT32_MAX;
  static constexpr uint8_t kCharStart = 1, kCharBad = 2;
  size_t n_tokens_ = 0;

  // A character is in a loop set when it is ASCII and in .ascii, or valid
  // non-ASCII and the set has kBelowNonAscii; an exit is a node that starts a
  // character not in the set (or a bad one).
  struct LoopView {
    Below set;
    std::vector<uint64_t> whole;      // [mask words] tokens with no exit
    std::vector<uint64_t> tail;       // [mask words] ASCII first byte, no exit below depth 1
    std::vector<uint8_t> exit_depth;  // [ids_ size] deepest exit on each token's path (255: deeper)
    std::vector<uint32_t> exits;      // every exit, in trie order
    std::vector<uint32_t> exit_skip;  // [exits] index of the first exit after the exit's subtree
    // Exits with no exit above them (first0) and exits below depth 1 with no
    // exit above them below depth 1 (first1, ASCII first byte only), by byte:
    // nodes first0[first0_at[b], first0_at[b + 1]).
    std::vector<uint32_t> first0, first0_at, first1, first1_at;
    std::vector<uint8_t> first1_root;  // [first1] the token's first byte
    // For counted repetitions (walk_chain): characters before each first0 exit,
    // the tokens with no exit and at most n characters (a trailing partial one
    // counts) for n <= kUptoChars, longer ones as (characters, id) sorted, and
    // the most characters any of these has (capped at 255).
    std::vector<uint8_t> first0_chars;
    std::vector<std::vector<uint64_t>> whole_upto;  // [kUptoChars + 1][mask words]
    std::vector<std::pair<uint8_t, uint32_t>> whole_long;
    size_t max_chars = 0;
  };
  static constexpr size_t kUptoChars = 16;
  // The view of a loop set, or nullptr for sets with fewer than kViewMinBytes
  // ASCII characters. Built once per set (a pass over the trie) and shared.
  std::shared_ptr<const LoopView> loop_view(const Below& set) const;
  std::shared_ptr<const LoopView> build_view(const Below& set) const;
  struct ViewMemo {
    std::mutex mu;
    std::vector<std::shared_ptr<const LoopView>> views;  // least recently used first
  };
  std::unique_ptr<ViewMemo> memo_ = std::make_unique<ViewMemo>();
};

class MaskComputer {
 public:
  explicit MaskComputer(const TokenTrie& trie) : trie_(&trie) {}
  // Sets mask bits of the tokens whose bytes keep m viable; m is left as it
  // was. mask is resized to the bitset shape. A token whose bytes would push
  // the matcher past its limits (too ambiguous, too deep) is left out.
  void compute(Matcher& m, std::vector<uint64_t>& mask);
  // Trie nodes visited by the last compute() (0 when it came from the cache).
  size_t last_visited() const { return visited_; }
  size_t cache_hits() const { return hits_; }
  // Subtrees taken whole by loop sets in all walks so far (see walk_range).
  size_t loop_skips() const { return loop_skips_; }
  size_t local_hits() const { return local_hits_; }
  // Matcher states interned by the last walk (0 when it came from the cache).
  size_t last_states() const { return visited_ ? n_states_ : 0; }

 private:
  static constexpr int32_t kUnknown = -1, kDead = -2;
  static constexpr size_t kMaxStates = 4096;     // per walk; beyond it, steps are not cached
  static constexpr size_t kCacheSize = 32;       // round-robin caches below
  static constexpr size_t kLocalFrames = 4;      // frames per stack in a local signature
  static constexpr size_t kMaxUncertain = 8192;  // larger context-dependent parts are not cached
  static constexpr size_t kLoopMinBelow = 32;    // subtrees smaller than this are walked
  static constexpr size_t kLoopMinBytes = 8;     // smaller loop sets are not worth keeping
  static constexpr size_t kLoopMaxStacks = 256;  // no loop sets for more ambiguous states
  static constexpr size_t kGroupMin = 16;  // first bytes sharing a looping state, for walk_root
  struct Uncertain {                       // a trie node whose path looked below the local frames
    uint32_t node;
    std::vector<uint8_t> path;  // bytes of its ancestors
  };
  struct Entry {
    std::vector<uint32_t> sig;
    std::vector<uint64_t> mask;
  };
  struct LocalEntry {
    std::vector<uint64_t> mask;        // tokens allowed in every context with this local signature
    std::vector<Uncertain> uncertain;  // subtrees to walk again in each context
  };

  void begin_walk(Matcher& m);
  void end_walk(Matcher& m);
  int32_t step(Matcher& m, int32_t from, uint8_t byte, size_t depth, bool* deep);
  void walk_range(Matcher& m, size_t begin, size_t end, std::vector<uint64_t>& mask,
                  std::vector<uint64_t>* local, std::vector<Uncertain>* uncertain);
  int32_t intern(Matcher& m);
  // The characters that take DFA state `s` back to itself (loop_deep_ tells
  // whether that looked below the local frames), or nullptr when there are
  // few (see walk_range).
  const TokenTrie::Below* loop_set(Matcher& m, int32_t s, size_t depth);
  // The loop set's index in loops_ for state s (after loop_set()), or -1.
  int32_t loop_index(int32_t s) const;
  const TokenTrie::LoopView* view_of(int32_t loop);
  // The whole-trie walk from at_depth_[0], through loop views when the state
  // loops (or most first bytes lead to one state that does).
  void walk_root(Matcher& m, std::vector<uint64_t>& mask, std::vector<uint64_t>* local,
                 std::vector<Uncertain>* uncertain);
  // Tokens below node i (a character boundary in DFA state s, which loops on
  // view v): those with no exit below i, and the walks from the first exits.
  void walk_view(Matcher& m, size_t i, int32_t s, const TokenTrie::LoopView& v,
                 std::vector<uint64_t>& mask, std::vector<uint64_t>* local,
                 std::vector<Uncertain>* uncertain);
  void walk_exits(Matcher& m, const std::vector<uint32_t>& nodes, uint32_t begin, uint32_t end,
                  int32_t s, std::vector<uint64_t>& mask, std::vector<uint64_t>* local,
                  std::vector<Uncertain>* uncertain, const uint8_t* root_bytes = nullptr,
                  const uint64_t* roots = nullptr);
  void add_uncertain(size_t node, std::vector<Uncertain>* uncertain) const;
  // A counted repetition at the root (x{0,n}: each character of a set takes
  // the state one step down a chain, none of them looping): the view's tokens
  // by length, then the exits from the chain state their prefix reaches.
  // False (mask untouched) when the state is not of that shape.
  bool walk_chain(Matcher& m, std::vector<uint64_t>& mask, std::vector<uint64_t>*& local,
                  std::vector<Uncertain>*& uncertain);

  const TokenTrie* trie_;
  // Whole masks by full Matcher::signature (states recur: every token inside
  // a free-text string leaves the same signature).
  std::vector<Entry> cache_;
  size_t next_slot_ = 0, hits_ = 0;
  // Context-free parts by local signature (the top kLocalFrames of each
  // stack): the same string or number rule under a different parent.
  std::vector<std::vector<uint32_t>> local_sigs_;
  std::vector<LocalEntry> local_;
  size_t next_local_ = 0, local_hits_ = 0;
  std::vector<uint32_t> sig_, local_sig_;  // of the state a mask is asked for
  std::vector<uint8_t> watch_flags_;
  std::vector<uint64_t> scratch_local_;
  std::vector<Uncertain> uncertain_;
  // The per-walk DFA: states, their keys, transitions [n_states * 256]
  // (kUnknown / kDead / a state index) with a "looked deeper" flag, and a hash
  // index over signatures.
  // States are interned by Matcher::state_key (the arena only grows during a
  // walk): keys_[key_at_[i], key_at_[i + 1]) is state i's key. states_ keeps
  // its snapshots between walks (n_states_ are this walk's) so that a warm
  // computer allocates nothing per state.
  std::vector<Matcher::Snapshot> states_;
  size_t n_states_ = 0;
  std::vector<uint32_t> keys_, key_at_, key_;
  std::vector<int32_t> trans_;
  std::vector<uint8_t> trans_deep_;
  std::vector<std::pair<uint64_t, int32_t>> index_;  // open addressing, size a power of two
  std::vector<int32_t> at_depth_;                    // [depth]: DFA state after the path
  std::vector<Matcher::Snapshot> snaps_;  // [depth]: state after the path's bytes (DFA full)
  std::vector<int32_t> loop_of_;          // [state]: index into loops_, kUnknown or kDead (none)
  std::vector<TokenTrie::Below> loops_;
  std::vector<uint8_t> loop_deep_;  // [loops_]: some loop step looked below the local frames
  bool local_ok_ = true;            // the walk's context-free part may be kept
  std::vector<std::shared_ptr<const TokenTrie::LoopView>> views_;  // [loops_], fetched lazily
  std::vector<uint8_t> view_fetched_;                              // [loops_]
  std::vector<uint64_t> cand_;       // [state * 2]: ASCII bytes some top class holds
  std::vector<uint8_t> whole_char_;  // [state]: no character partly received
  std::vector<std::pair<uint32_t, int32_t>> roots_;  // scratch of walk_root
  std::vector<uint8_t> roots_deep_;  // [roots_] the step looked below the local frames
  std::vector<int32_t> chain_;       // scratch of walk_chain: state after j characters
  static constexpr size_t kMaxChain = 256;
  std::vector<uint32_t> counts_;  // [state] scratch of walk_root, kept zero
  size_t visited_ = 0;
  size_t loop_skips_ = 0;
};

}  // namespace slm::grammar
