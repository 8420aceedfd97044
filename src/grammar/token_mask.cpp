// TokenTrie construction (sort the byte strings, emit the distinct prefixes in
// order) and the masked depth-first walk (token_mask.h).
#include "grammar/token_mask.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "base/error.h"

namespace slm::grammar {

TokenTrie::TokenTrie(const std::vector<std::string>& token_bytes) : n_tokens_(token_bytes.size()) {
  if (token_bytes.size() >= (size_t{1} << 31)) throw Error("token trie: vocabulary too large");
  std::vector<std::pair<std::string_view, int32_t>> order;
  for (size_t i = 0; i < token_bytes.size(); ++i)
    if (!token_bytes[i].empty() && token_bytes[i].size() <= kMaxTokenBytes)
      order.emplace_back(token_bytes[i], static_cast<int32_t>(i));
  std::sort(order.begin(), order.end());
  std::vector<uint32_t> open;  // path from the root to the last node
  std::string_view prev;
  ids_at_.reserve(order.size() * 2);
  for (const auto& [bytes, id] : order) {
    if (bytes == prev && !open.empty()) {  // same bytes as the previous token: same node
      ids_.push_back(id);
      nodes_[open.back()].tok_end = static_cast<uint32_t>(ids_.size());
      continue;
    }
    size_t lcp = 0;
    while (lcp < prev.size() && lcp < bytes.size() && prev[lcp] == bytes[lcp]) ++lcp;
    while (open.size() > lcp) {
      nodes_[open.back()].next = static_cast<uint32_t>(nodes_.size());
      open.pop_back();
    }
    for (size_t k = lcp; k < bytes.size(); ++k) {
      open.push_back(static_cast<uint32_t>(nodes_.size()));
      ids_at_.push_back(static_cast<uint32_t>(ids_.size()));
      nodes_.push_back({0, 0, 0, static_cast<uint16_t>(k + 1), static_cast<uint8_t>(bytes[k])});
    }
    Node& end = nodes_[open.back()];
    end.tok_begin = static_cast<uint32_t>(ids_.size());
    ids_.push_back(id);
    end.tok_end = static_cast<uint32_t>(ids_.size());
    prev = bytes;
  }
  for (uint32_t i : open) nodes_[i].next = static_cast<uint32_t>(nodes_.size());
  ids_at_.push_back(static_cast<uint32_t>(ids_.size()));
  summarize();
}

// UTF-8 validity of each node's path, with the matcher's rules (matcher.cpp),
// then what lies below each node, children before parents.
void TokenTrie::summarize() {
  struct Utf8 {
    bool valid = true;
    uint8_t need = 0, lead = 0, seen = 0;
  };
  std::vector<Utf8> at(kMaxTokenBytes + 1);
  std::vector<uint8_t> valid(nodes_.size());
  boundary_.assign(nodes_.size(), 0);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    Utf8 u = at[n.depth - 1u];
    const uint8_t b = n.byte;
    if (!u.valid) {
    } else if (u.need == 0) {
      if (b < 0x80) {
      } else if (b >= 0xC2 && b <= 0xDF) {
        u.need = 1, u.lead = b, u.seen = 0;
      } else if (b >= 0xE0 && b <= 0xEF) {
        u.need = 2, u.lead = b, u.seen = 0;
      } else if (b >= 0xF0 && b <= 0xF4) {
        u.need = 3, u.lead = b, u.seen = 0;
      } else {
        u.valid = false;
      }
    } else if ((b & 0xC0) != 0x80) {
      u.valid = false;
    } else {
      const uint8_t l = u.lead;
      if (u.seen == 0 && ((l == 0xE0 && b < 0xA0) || (l == 0xED && b > 0x9F) || (l == 0xF0 && b < 0x90) ||
                          (l == 0xF4 && b > 0x8F)))
        u.valid = false;
      --u.need, ++u.seen;
    }
    at[n.depth] = u;
    valid[i] = u.valid;
    boundary_[i] = u.valid && u.need == 0;
  }
  below_.assign(nodes_.size(), Below{{0, 0}, 0});
  for (size_t i = nodes_.size(); i-- > 0;) {
    for (size_t c = i + 1; c < nodes_[i].next; c = nodes_[c].next) {
      Below& b = below_[i];
      const Below& cb = below_[c];
      b.ascii[0] |= cb.ascii[0], b.ascii[1] |= cb.ascii[1], b.flags |= cb.flags;
      const uint8_t x = nodes_[c].byte;
      if (x < 0x80) b.ascii[x >> 6] |= uint64_t{1} << (x & 63);
      else b.flags |= kBelowNonAscii;
      if (!valid[c]) b.flags |= kBelowInvalid;
    }
  }
}

namespace {

size_t find_entry(const std::vector<std::vector<uint32_t>>& sigs, const std::vector<uint32_t>& sig) {
  for (size_t i = 0; i < sigs.size(); ++i)
    if (sigs[i] == sig) return i;
  return SIZE_MAX;
}

}  // namespace

void MaskComputer::compute(Matcher& m, std::vector<uint64_t>& mask) {
  m.signature(sig_);
  for (const Entry& e : cache_) {
    if (e.sig == sig_) {
      mask = e.mask;
      visited_ = 0;
      ++hits_;
      return;
    }
  }
  m.signature(local_sig_, kLocalFrames);
  const size_t li = find_entry(local_sigs_, local_sig_);
  begin_walk(m);
  try {
    if (li != SIZE_MAX) {
      // Same local context as a state seen before: its context-free part of
      // the mask stands; only the subtrees that reached deeper are walked.
      const LocalEntry& le = local_[li];
      mask = le.mask;
      ++local_hits_;
      for (const Uncertain& u : le.uncertain) {
        int32_t state = at_depth_[0];
        for (size_t d = 0; d < u.path.size() && state != kDead; ++d)
          state = step(m, state, u.path[d], d + 1, nullptr);
        if (state == kDead) continue;
        at_depth_[u.path.size()] = state;
        walk_range(m, u.node, trie_->nodes_[u.node].next, mask, nullptr, nullptr);
      }
    } else {
      std::vector<uint64_t>& local = scratch_local_;
      local.assign((trie_->n_tokens_ + 63) / 64, 0);
      mask.assign(local.size(), 0);
      uncertain_.clear();
      m.watch(kLocalFrames, watch_flags_);
      walk_range(m, 0, trie_->nodes_.size(), mask, &local, &uncertain_);
      m.unwatch();
      if (uncertain_.size() <= kMaxUncertain) {
        if (local_.size() < kCacheSize) {
          local_.emplace_back();
          local_sigs_.emplace_back();
        }
        local_[next_local_] = {local, uncertain_};
        local_sigs_[next_local_] = local_sig_;
        next_local_ = (next_local_ + 1) % kCacheSize;
      }
    }
  } catch (...) {
    m.unwatch();
    end_walk(m);
    throw;
  }
  end_walk(m);
  if (cache_.size() < kCacheSize) cache_.emplace_back();
  Entry& slot = cache_[next_slot_];
  next_slot_ = (next_slot_ + 1) % kCacheSize;
  slot.sig = sig_;
  slot.mask = mask;
}

int32_t MaskComputer::intern(Matcher& m) {
  m.signature(state_sig_);
  const auto& sig = state_sig_;
  uint64_t h = 1469598103934665603ull;
  for (uint32_t v : sig) h = (h ^ v) * 1099511628211ull;
  if (index_.size() < 2 * (states_.size() + 1)) {  // grow and rehash
    std::vector<std::pair<uint64_t, int32_t>> bigger(std::max<size_t>(64, index_.size() * 2), {0, -1});
    for (const auto& e : index_) {
      if (e.second < 0) continue;
      size_t k = e.first & (bigger.size() - 1);
      while (bigger[k].second >= 0) k = (k + 1) & (bigger.size() - 1);
      bigger[k] = e;
    }
    index_.swap(bigger);
  }
  size_t k = h & (index_.size() - 1);
  for (; index_[k].second >= 0; k = (k + 1) & (index_.size() - 1))
    if (index_[k].first == h && state_sigs_[static_cast<size_t>(index_[k].second)] == sig)
      return index_[k].second;
  if (states_.size() >= kMaxStates) return kUnknown;
  const auto id = static_cast<int32_t>(states_.size());
  index_[k] = {h, id};
  states_.emplace_back();
  m.save(states_.back());
  state_sigs_.push_back(sig);
  trans_.resize(trans_.size() + 256, kUnknown);
  trans_deep_.resize(trans_deep_.size() + 256, 0);
  return id;
}

void MaskComputer::begin_walk(Matcher& m) {
  constexpr size_t kMaxTokenBytes = TokenTrie::kMaxTokenBytes;
  if (snaps_.size() < kMaxTokenBytes + 1) snaps_.resize(kMaxTokenBytes + 1);
  loop_of_.clear();
  loops_.clear();
  m.save(snaps_[0]);  // the origin; deeper entries only when the DFA is full
  states_.clear();
  state_sigs_.clear();
  trans_.clear();
  trans_deep_.clear();
  std::fill(index_.begin(), index_.end(), std::pair<uint64_t, int32_t>{0, -1});
  at_depth_.assign(kMaxTokenBytes + 1, kUnknown);
  path_.assign(kMaxTokenBytes + 1, 0);
  visited_ = 0;
  at_depth_[0] = intern(m);
}

void MaskComputer::end_walk(Matcher& m) { m.restore(snaps_[0]); }

// One byte from DFA state `from` (kUnknown: the state saved in snaps_[depth-1]).
// *deep (optional) tells whether the step looked below the local frames.
int32_t MaskComputer::step(Matcher& m, int32_t from, uint8_t byte, size_t depth, bool* deep) {
  if (from >= 0) {
    const size_t t = static_cast<size_t>(from) * 256 + byte;
    if (trans_[t] != kUnknown) {
      if (deep) *deep = trans_deep_[t] != 0;
      return trans_[t];
    }
    m.load(states_[static_cast<size_t>(from)]);
  } else {
    m.load(snaps_[depth - 1]);
  }
  m.clear_watch_hit();
  bool ok = false;
  try {
    ok = m.accept_byte(byte);
  } catch (const Error&) {
    ok = false;  // a path past the matcher's limits is never offered
  }
  const bool hit = m.watch_hit();
  int32_t to = kDead;
  if (ok) {
    to = intern(m);
    if (to == kUnknown) m.save(snaps_[depth]);
  }
  if (from >= 0) {
    const size_t t = static_cast<size_t>(from) * 256 + byte;
    trans_[t] = to;
    trans_deep_[t] = hit;
  }
  if (deep) *deep = hit;
  return to;
}

// Walks trie nodes [begin, end) (one subtree or the whole trie) from the DFA
// state in at_depth_[depth of begin - 1]. With `local`, tokens reached without
// looking below the local frames also go to *local, and the first node of each
// path that did look deeper is recorded in *uncertain.
void MaskComputer::walk_range(Matcher& m, size_t begin, size_t end, std::vector<uint64_t>& mask,
                              std::vector<uint64_t>* local, std::vector<Uncertain>* uncertain) {
  const auto& nodes = trie_->nodes_;
  size_t unc_depth = 0;  // depth of the uncertain node we are under, 0: none
  for (size_t i = begin; i < end;) {
    const TokenTrie::Node& nd = nodes[i];
    if (unc_depth && nd.depth <= unc_depth) unc_depth = 0;
    ++visited_;
    bool deep = false;
    const int32_t from = at_depth_[nd.depth - 1u];
    int32_t to = kUnknown;
    if (from >= 0) {  // a known transition: one lookup, no call
      const size_t t = static_cast<size_t>(from) * 256 + nd.byte;
      to = trans_[t];
      deep = local && trans_deep_[t] != 0;
    }
    if (to == kUnknown) to = step(m, from, nd.byte, nd.depth, local ? &deep : nullptr);
    path_[nd.depth - 1u] = nd.byte;
    if (deep && !unc_depth) {
      uncertain->push_back({static_cast<uint32_t>(i), std::vector<uint8_t>(path_.begin(), path_.begin() + nd.depth - 1)});
      unc_depth = nd.depth;
    }
    if (to == kDead) {
      i = nd.next;
      continue;
    }
    for (uint32_t t = nd.tok_begin; t < nd.tok_end; ++t) {
      const auto id = static_cast<uint32_t>(trie_->ids_[t]);
      mask[id >> 6] |= uint64_t{1} << (id & 63);
      if (local && !unc_depth) (*local)[id >> 6] |= uint64_t{1} << (id & 63);
    }
    // A subtree whose characters all take the state back to itself: every
    // token in it is allowed, in the same (local) way as this node.
    if (nd.next > i + 1 && to >= 0 && trie_->boundary_[i] && !(trie_->below_[i].flags & TokenTrie::kBelowInvalid)) {
      const TokenTrie::Below& below = trie_->below_[i];
      const TokenTrie::Below* loop = nullptr;
      const auto ts = static_cast<size_t>(to);
      if (ts < loop_of_.size() && loop_of_[ts] != kUnknown) {
        if (loop_of_[ts] >= 0) loop = &loops_[static_cast<size_t>(loop_of_[ts])];
      } else if (nd.next > i + kLoopMinBelow) {
        loop = loop_set(m, to, nd.depth);
      }
      if (loop && (below.ascii[0] & ~loop->ascii[0]) == 0 && (below.ascii[1] & ~loop->ascii[1]) == 0 &&
          (loop->flags & TokenTrie::kBelowNonAscii || !(below.flags & TokenTrie::kBelowNonAscii))) {
        const bool also_local = local && !unc_depth;
        for (uint32_t t = trie_->ids_at_[i + 1]; t < trie_->ids_at_[nd.next]; ++t) {
          const auto id = static_cast<uint32_t>(trie_->ids_[t]);
          mask[id >> 6] |= uint64_t{1} << (id & 63);
          if (also_local) (*local)[id >> 6] |= uint64_t{1} << (id & 63);
        }
        ++loop_skips_;
        i = nd.next;
        continue;
      }
    }
    at_depth_[nd.depth] = to;
    ++i;
  }
}

const TokenTrie::Below* MaskComputer::loop_set(Matcher& m, int32_t s, size_t depth) {
  const auto si = static_cast<size_t>(s);
  if (si >= loop_of_.size()) loop_of_.resize(states_.size(), kUnknown);
  if (loop_of_[si] != kUnknown) return loop_of_[si] >= 0 ? &loops_[static_cast<size_t>(loop_of_[si])] : nullptr;
  loop_of_[si] = kDead;
  // Stepping may intern new states; keep room so the walk's own path never
  // falls back to the depth snapshots this could overwrite.
  if (states_.size() + 160 > kMaxStates) return nullptr;
  m.load(states_[si]);
  if (m.stack_count() > kLoopMaxStacks) return nullptr;  // stepping would cost more than it saves
  uint64_t cand[2];
  m.ascii_candidates(cand);
  if (static_cast<size_t>(__builtin_popcountll(cand[0]) + __builtin_popcountll(cand[1])) < kLoopMinBytes)
    return nullptr;
  TokenTrie::Below loop{{0, 0}, 0};
  size_t n = 0;
  for (uint8_t b = 0; b < 0x80; ++b) {
    if (!((cand[b >> 6] >> (b & 63)) & 1)) continue;
    bool deep = false;
    if (step(m, s, b, depth + 1, &deep) == s && !deep) {
      loop.ascii[b >> 6] |= uint64_t{1} << (b & 63);
      ++n;
    }
  }
  if (n < kLoopMinBytes) return nullptr;
  // When every top class holds all non-ASCII characters or none, they all
  // step alike: one of them (U+00E9) stands for the rest.
  m.load(states_[si]);
  if (m.classes_uniform(0x80, 0x10FFFF)) {
    bool d1 = false, d2 = false;
    const int32_t t1 = step(m, s, 0xC3, depth + 1, &d1);
    if (t1 >= 0 && step(m, t1, 0xA9, depth + 2, &d2) == s && !d1 && !d2) loop.flags = TokenTrie::kBelowNonAscii;
  }
  loop_of_[si] = static_cast<int32_t>(loops_.size());
  loops_.push_back(loop);
  return &loops_.back();
}

}  // namespace slm::grammar
