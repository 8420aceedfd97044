// Incremental byte-level matcher for a compiled Grammar: a pushdown automaton
// that keeps the set of all parse stacks alive after the bytes seen so far
// (llama.cpp's stack-set idea, on a persistent node arena).
//
// State: a set of stacks plus a partly received UTF-8 character. A stack is a
// linked list of arena nodes {program position, parent}; the top position
// always names a character class (or the stack is "done": the root rule
// ended). A byte either completes a code point -- every stack whose class
// holds it advances and is re-expanded through rule references -- or extends a
// partial character, which is viable when some top class intersects the range
// of code points that the prefix can still become. Rule references in tail
// position pop before they push, so right recursion (`x*`, `x{0,n}`) keeps
// stacks flat.
//
// Cost per byte: O(stacks x expansion fan-out), bounded by MatcherLimits; when
// an ambiguous grammar exceeds them, accept throws slm::Error saying so (no
// exponential blow-up). Memory: the arena is compacted when it grows past
// what is live.
//
// Stack nodes are hash-consed: a (program position, parent) pair that
// exists already is reused, so stacks that reach the same content by
// different paths (e.g. x* y* with ambiguous boundaries) stay one stack.
//
// Snapshots (for token masks): save() copies the state, restore() returns to
// it and drops the arena nodes made since.
//
// Thread-safety: a Matcher is per-sequence state for one thread at a time; it
// shares the immutable Grammar.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "grammar/grammar.h"

namespace slm::grammar {

struct MatcherLimits {
  size_t max_stacks = 4096;          // live parse stacks after one byte
  uint32_t max_depth = 10000;        // nesting of one stack
  size_t max_expansions = 1u << 16;  // rule expansions in one step
};

class Matcher {
 public:
  explicit Matcher(std::shared_ptr<const Grammar> grammar, MatcherLimits limits = {});

  // Feeds one byte. False (state unchanged) when no continuation of the input
  // with this byte can be in the language. Throws slm::Error when a limit is hit.
  bool accept_byte(uint8_t b);
  // Feeds bytes in order; returns how many were accepted (all of them, or the
  // offset of the first rejected byte).
  size_t accept(std::string_view bytes);
  // The input so far is a whole sentence of the grammar (it may also continue).
  bool is_complete() const;
  // No byte can follow (complete and nothing else is possible).
  bool is_finished() const;
  void reset();

  // A UTF-8 character not yet complete.
  struct Partial {
    uint32_t cp = 0;
    uint8_t need = 0;  // continuation bytes still to come
    uint8_t lead = 0;  // first byte, for the second-byte constraints
    uint8_t seen = 0;  // continuation bytes received
  };
  // A copy of the state for backtracking (token masks). Valid until the next
  // accept() or compact(); accept_byte() keeps it valid. Reuse one Snapshot
  // per trie depth and nothing is allocated once warm.
  struct Snapshot {
    std::vector<uint32_t> stacks;
    Partial partial;
    size_t n_nodes = 0;
  };
  void save(Snapshot& s) const;
  void restore(const Snapshot& s);
  // Returns to a state saved since the last restore() without dropping the
  // arena nodes made after it (for walks that revisit several saved states).
  void load(const Snapshot& s);
  // Drops arena nodes no stack reaches when the arena has grown well past
  // what is live (accept() calls it; snapshots become invalid).
  void compact();

  // A canonical form of the state: two matchers with equal signatures accept
  // exactly the same continuations (node ids are replaced by the program
  // positions of each whole stack, stacks in sorted order). O(total depth).
  // max_frames keeps only the top frames of each stack (a "local" signature).
  void signature(std::vector<uint32_t>& out, size_t max_frames = SIZE_MAX) const;

  // A cheap identity of the state, O(stacks): the sorted stack node ids and
  // the partial character in signature()'s canonical form. Stack nodes are
  // hash-consed and immutable while the arena only grows, so between two
  // restore()/compact() calls equal keys mean equal signatures (token masks
  // intern the states of one walk by it instead of walking every stack).
  void state_key(std::vector<uint32_t>& out) const;

  // Context watch (token masks): flags[id] for the arena nodes that exist now
  // are 1 for the top max_frames nodes of each stack, 0 below. While watching,
  // a step that returns into an existing node whose flag is 0 sets
  // watch_hit(): its outcome depended on more than the local signature.
  void watch(size_t max_frames, std::vector<uint8_t>& flags);
  void unwatch() { watch_limit_ = 0; }
  bool watch_hit() const { return watch_hit_; }
  void clear_watch_hit() { watch_hit_ = false; }

  // No partial character, and every top class holds all of [lo, hi] or none
  // of it (surrogates aside): every code point in the range then takes the matcher to the same
  // state (token masks use it to treat all non-ASCII characters as one).
  bool classes_uniform(char32_t lo, char32_t hi) const;
  // Every top class holds both code points or neither: with no character
  // partly received, they take the matcher to the same state. O(stacks).
  bool treats_alike(char32_t a, char32_t b) const;

  // The ASCII bytes some top class holds (a 128-bit set): a superset of the
  // bytes accept_byte() takes when no character is partly received.
  void ascii_candidates(uint64_t out[2]) const;
  // The ASCII bytes that every top class holds exactly when it holds b (b
  // among them): with no character partly received, accept_byte() takes each
  // of them to the state it takes b to (or refuses them all). O(stacks).
  void ascii_class_of(uint8_t b, uint64_t out[2]) const;

  const Grammar& grammar() const { return *g_; }
  size_t stack_count() const { return stacks_.size(); }

 private:
  struct Node {
    uint32_t pos;
    uint32_t parent;
    uint32_t depth;
  };
  static constexpr uint32_t kNone = UINT32_MAX;  // no parent / the "done" stack

  // Open-addressing map from a 64-bit key to a node id, emptied in O(1) per
  // step by bumping a generation stamp (a byte step touches a handful of keys,
  // so clearing a std::unordered_map would cost more than the step).
  class StepTable {
   public:
    void next_step();
    // The value stored under key, or val after storing it; *added tells which.
    uint32_t insert(uint64_t key, uint32_t val, bool* added);
    size_t size() const { return count_; }

   private:
    void grow();
    std::vector<uint64_t> keys_;
    std::vector<uint32_t> vals_, stamps_;
    uint32_t gen_ = 1;
    size_t count_ = 0;
  };

  bool advance_code_point(char32_t cp);
  void expand(uint32_t pos, uint32_t parent, std::vector<uint32_t>& out);
  uint32_t make_node(uint32_t pos, uint32_t parent);
  bool any_top_intersects(char32_t lo, char32_t hi) const;
  // The code points the partial character can still become: [lo, hi].
  void partial_range(char32_t& lo, char32_t& hi) const;
  // need | lead << 8 | seen << 16 (lead only where it still constrains, in
  // the canonical form).
  uint32_t partial_word(bool canonical) const;

  std::shared_ptr<const Grammar> g_;
  MatcherLimits lim_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> stacks_;  // node ids (kNone = done), sorted, unique
  Partial partial_;
  size_t compact_at_ = 1u << 16;  // arena size that triggers compact()
  // Scratch reused across steps (no allocation once warm).
  std::vector<uint32_t> next_;
  std::vector<std::pair<uint32_t, uint32_t>> work_;
  uint32_t watch_limit_ = 0;  // nodes below this id are watched
  const uint8_t* watch_flags_ = nullptr;
  bool watch_hit_ = false;
  mutable std::vector<uint32_t> sig_flat_;
  mutable std::vector<std::pair<uint32_t, uint32_t>> sig_spans_;
  // (pos, parent) -> the node with that content, kept across steps so that
  // equal stacks share one node id and deduplicate (entries may be stale
  // after restore() or compact(): a hit counts only when the node it names
  // still holds that content). Rebuilt when it grows well past the arena.
  std::vector<uint64_t> index_keys_;
  std::vector<uint32_t> index_vals_;  // kNone: empty slot
  size_t index_count_ = 0;
  void rebuild_index();
  StepTable seen_items_;  // (pos, parent) items expanded in this step
};

}  // namespace slm::grammar
