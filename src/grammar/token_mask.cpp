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
  std::vector<uint32_t> path(kMaxTokenBytes + 1, kNoParent);   // [depth] node on the current path
  std::vector<uint32_t> start(kMaxTokenBytes + 1, kNoParent);  // [depth] where its character starts
  boundary_.assign(nodes_.size(), 0);
  parent_.assign(nodes_.size(), kNoParent);
  char_.assign(nodes_.size(), 0);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    Utf8 u = at[n.depth - 1u];
    const uint8_t b = n.byte;
    parent_[i] = path[n.depth - 1u];
    path[n.depth] = static_cast<uint32_t>(i);
    const bool was_valid = u.valid;
    if (u.valid && u.need == 0) {
      char_[i] = kCharStart;
      start[n.depth] = static_cast<uint32_t>(i);
    } else {
      start[n.depth] = start[n.depth - 1u];
    }
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
      if (u.seen == 0 && ((l == 0xE0 && b < 0xA0) || (l == 0xED && b > 0x9F) ||
                          (l == 0xF0 && b < 0x90) || (l == 0xF4 && b > 0x8F)))
        u.valid = false;
      --u.need, ++u.seen;
    }
    at[n.depth] = u;
    valid[i] = u.valid;
    if (was_valid && !u.valid) char_[start[n.depth]] |= kCharBad;  // the character this byte is in
    boundary_[i] = u.valid && u.need == 0;
  }
  below_.assign(nodes_.size(), Below{{0, 0}, 0});
  for (size_t i = nodes_.size(); i-- > 0;) {
    for (size_t c = i + 1; c < nodes_[i].next; c = nodes_[c].next) {
      Below& b = below_[i];
      const Below& cb = below_[c];
      b.ascii[0] |= cb.ascii[0], b.ascii[1] |= cb.ascii[1], b.flags |= cb.flags;
      const uint8_t x = nodes_[c].byte;
      if (x < 0x80)
        b.ascii[x >> 6] |= uint64_t{1} << (x & 63);
      else
        b.flags |= kBelowNonAscii;
      if (!valid[c]) b.flags |= kBelowInvalid;
    }
  }
}

size_t TokenTrie::loop_views() const {
  std::lock_guard<std::mutex> lock(memo_->mu);
  return memo_->views.size();
}

std::shared_ptr<const TokenTrie::LoopView> TokenTrie::loop_view(const Below& set) const {
  if (static_cast<size_t>(__builtin_popcountll(set.ascii[0]) + __builtin_popcountll(set.ascii[1])) <
      kViewMinBytes)
    return nullptr;
  auto same = [&](const std::shared_ptr<const LoopView>& v) {
    return v->set.ascii[0] == set.ascii[0] && v->set.ascii[1] == set.ascii[1] &&
           v->set.flags == set.flags;
  };
  {
    std::lock_guard<std::mutex> lock(memo_->mu);
    auto& vs = memo_->views;
    for (size_t k = 0; k < vs.size(); ++k) {
      if (!same(vs[k])) continue;
      std::rotate(vs.begin() + static_cast<ptrdiff_t>(k),
                  vs.begin() + static_cast<ptrdiff_t>(k) + 1, vs.end());
      return vs.back();  // most recently used last
    }
  }
  auto view = build_view(set);  // outside the lock: two threads may build the same view once each
  std::lock_guard<std::mutex> lock(memo_->mu);
  for (const auto& v : memo_->views)
    if (same(v)) return v;
  if (memo_->views.size() >= kMaxViews) memo_->views.erase(memo_->views.begin());
  memo_->views.push_back(view);
  return view;
}

namespace {

// Sorts (byte, node) pairs into nodes grouped by byte: nodes[at[b], at[b + 1]).
void group_by_byte(std::vector<std::pair<uint8_t, uint32_t>>& pairs, std::vector<uint32_t>& nodes,
                   std::vector<uint32_t>& at) {
  std::stable_sort(pairs.begin(), pairs.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  at.assign(257, 0);
  nodes.clear();
  for (const auto& [b, n] : pairs) {
    ++at[b + 1u];
    nodes.push_back(n);
  }
  for (size_t b = 0; b < 256; ++b) at[b + 1] += at[b];
}

}  // namespace

std::shared_ptr<const TokenTrie::LoopView> TokenTrie::build_view(const Below& set) const {
  auto v = std::make_shared<LoopView>();
  v->set = set;
  const size_t words = (n_tokens_ + 63) / 64;
  v->whole.assign(words, 0);
  v->tail.assign(words, 0);
  v->exit_depth.assign(ids_.size(), 0);
  std::vector<uint16_t> deepest(kMaxTokenBytes + 1, 0);  // [depth] deepest exit on the path so far
  std::vector<uint16_t> chars(kMaxTokenBytes + 1, 0);    // [depth] characters begun on the path
  v->whole_upto.assign(kUptoChars + 1, std::vector<uint64_t>(words, 0));
  std::vector<std::pair<uint8_t, uint32_t>> f0, f1;
  bool tail_root = false;  // the token's first character is ASCII or a valid non-ASCII one
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    if (n.depth == 1) tail_root = n.byte < 0x80 || !(char_[i] & kCharBad);
    uint16_t e = deepest[n.depth - 1u];
    const uint16_t before = chars[n.depth - 1u];
    chars[n.depth] = static_cast<uint16_t>(before + ((char_[i] & kCharStart) ? 1 : 0));
    if (char_[i] & kCharStart) {
      const bool in = n.byte < 0x80 ? ((set.ascii[n.byte >> 6] >> (n.byte & 63)) & 1) != 0
                                    : (set.flags & kBelowNonAscii) && !(char_[i] & kCharBad);
      if (!in) {
        v->exits.push_back(static_cast<uint32_t>(i));
        if (e == 0) {
          f0.push_back({n.byte, static_cast<uint32_t>(i)});
          v->max_chars = std::max<size_t>(v->max_chars, std::min<size_t>(before + 1u, 255));
        }
        if (e <= 1 && n.depth >= 2 && tail_root) {
          f1.push_back({n.byte, static_cast<uint32_t>(i)});
        }
        e = n.depth;
      }
    }
    deepest[n.depth] = e;
    for (uint32_t t = n.tok_begin; t < n.tok_end; ++t) {
      v->exit_depth[t] = static_cast<uint8_t>(std::min<uint16_t>(e, 255));
      const auto id = static_cast<uint32_t>(ids_[t]);
      if (e == 0) {
        v->whole[id >> 6] |= uint64_t{1} << (id & 63);
        const size_t c = std::min<size_t>(chars[n.depth], 255);
        v->max_chars = std::max(v->max_chars, c);
        if (c <= kUptoChars) {
          for (size_t u = c; u <= kUptoChars; ++u)
            v->whole_upto[u][id >> 6] |= uint64_t{1} << (id & 63);
        } else {
          v->whole_long.push_back({static_cast<uint8_t>(c), id});
        }
      }
      if (e <= 1 && tail_root) v->tail[id >> 6] |= uint64_t{1} << (id & 63);
    }
  }
  v->exit_skip.resize(v->exits.size());
  for (size_t k = 0; k < v->exits.size(); ++k)
    v->exit_skip[k] =
        static_cast<uint32_t>(std::lower_bound(v->exits.begin() + static_cast<ptrdiff_t>(k),
                                               v->exits.end(), nodes_[v->exits[k]].next) -
                              v->exits.begin());
  std::sort(v->whole_long.begin(), v->whole_long.end());
  group_by_byte(f0, v->first0, v->first0_at);
  for (uint32_t node : v->first0) {  // characters before the exit: count up the path
    size_t c = 0;
    for (uint32_t p = parent_[node]; p != kNoParent; p = parent_[p])
      c += (char_[p] & kCharStart) ? 1 : 0;
    v->first0_chars.push_back(static_cast<uint8_t>(std::min<size_t>(c, 255)));
  }
  // first1 keeps each exit's first byte beside it.
  std::stable_sort(f1.begin(), f1.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  v->first1_at.assign(257, 0);
  for (const auto& [b, node] : f1) {
    ++v->first1_at[b + 1u];
    v->first1.push_back(node);
    uint32_t r = node;
    while (parent_[r] != kNoParent) r = parent_[r];
    v->first1_root.push_back(nodes_[r].byte);
  }
  for (size_t b = 0; b < 256; ++b) v->first1_at[b + 1] += v->first1_at[b];
  return v;
}

namespace {

size_t find_entry(const std::vector<std::vector<uint32_t>>& sigs,
                  const std::vector<uint32_t>& sig) {
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
      local_ok_ = true;
      walk_root(m, mask, &local, &uncertain_);
      m.unwatch();
      if (local_ok_ && uncertain_.size() <= kMaxUncertain) {
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
  m.state_key(key_);
  const auto& key = key_;
  uint64_t h = 1469598103934665603ull;
  for (uint32_t v : key) h = (h ^ v) * 1099511628211ull;
  if (index_.size() < 2 * (n_states_ + 1)) {  // grow and rehash
    std::vector<std::pair<uint64_t, int32_t>> bigger(std::max<size_t>(64, index_.size() * 2),
                                                     {0, -1});
    for (const auto& e : index_) {
      if (e.second < 0) continue;
      size_t k = e.first & (bigger.size() - 1);
      while (bigger[k].second >= 0) k = (k + 1) & (bigger.size() - 1);
      bigger[k] = e;
    }
    index_.swap(bigger);
  }
  auto same = [&](int32_t id) {
    const uint32_t b = key_at_[static_cast<size_t>(id)], e = key_at_[static_cast<size_t>(id) + 1];
    return e - b == key.size() && std::equal(key.begin(), key.end(), keys_.begin() + b);
  };
  size_t k = h & (index_.size() - 1);
  for (; index_[k].second >= 0; k = (k + 1) & (index_.size() - 1))
    if (index_[k].first == h && same(index_[k].second)) return index_[k].second;
  if (n_states_ >= kMaxStates) return kUnknown;
  const auto id = static_cast<int32_t>(n_states_);
  index_[k] = {h, id};
  if (states_.size() == n_states_) states_.emplace_back();  // snapshots are reused across walks
  Matcher::Snapshot& snap = states_[n_states_++];
  m.save(snap);
  keys_.insert(keys_.end(), key.begin(), key.end());
  key_at_.push_back(static_cast<uint32_t>(keys_.size()));
  uint64_t cand[2];
  m.ascii_candidates(cand);
  cand_.push_back(cand[0]);
  cand_.push_back(cand[1]);
  whole_char_.push_back(snap.partial.need == 0);
  trans_.resize(trans_.size() + 256, kUnknown);
  trans_deep_.resize(trans_deep_.size() + 256, 0);
  return id;
}

void MaskComputer::begin_walk(Matcher& m) {
  constexpr size_t kMaxTokenBytes = TokenTrie::kMaxTokenBytes;
  if (snaps_.size() < kMaxTokenBytes + 1) snaps_.resize(kMaxTokenBytes + 1);
  loop_of_.clear();
  loops_.clear();
  loop_deep_.clear();
  views_.clear();
  view_fetched_.clear();
  cand_.clear();
  whole_char_.clear();
  m.save(snaps_[0]);  // the origin; deeper entries only when the DFA is full
  n_states_ = 0;
  keys_.clear();
  key_at_.assign(1, 0);
  trans_.clear();
  trans_deep_.clear();
  std::fill(index_.begin(), index_.end(), std::pair<uint64_t, int32_t>{0, -1});
  at_depth_.assign(kMaxTokenBytes + 1, kUnknown);
  visited_ = 0;
  at_depth_[0] = intern(m);
}

void MaskComputer::end_walk(Matcher& m) {
  m.restore(snaps_[0]);
}

// One byte from DFA state `from` (kUnknown: the state saved in snaps_[depth-1]).
// *deep (optional) tells whether the step looked below the local frames.
int32_t MaskComputer::step(Matcher& m, int32_t from, uint8_t byte, size_t depth, bool* deep) {
  if (from >= 0) {
    const size_t t = static_cast<size_t>(from) * 256 + byte;
    if (trans_[t] != kUnknown) {
      if (deep) *deep = trans_deep_[t] != 0;
      return trans_[t];
    }
    const auto f = static_cast<size_t>(from);
    if (byte < 0x80 && whole_char_[f] && !((cand_[2 * f + (byte >> 6)] >> (byte & 63)) & 1)) {
      trans_[t] = kDead;  // no top class holds the byte: accept_byte would refuse it
      if (deep) *deep = false;
      return kDead;
    }
    m.load(states_[f]);
  } else {
    m.load(snaps_[depth - 1]);
  }
  // The bytes every top class treats alike step alike: one step fills them all.
  uint64_t part[2] = {0, 0};
  if (from >= 0 && byte < 0x80 && whole_char_[static_cast<size_t>(from)])
    m.ascii_class_of(byte, part);
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
    const size_t row = static_cast<size_t>(from) * 256;
    trans_[row + byte] = to;
    trans_deep_[row + byte] = hit;
    if (to != kUnknown) {
      for (size_t w = 0; w < 2; ++w)
        for (uint64_t bits = part[w]; bits; bits &= bits - 1) {
          const size_t c = w * 64 + static_cast<size_t>(__builtin_ctzll(bits));
          trans_[row + c] = to;
          trans_deep_[row + c] = hit;
        }
    }
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
    if (deep && !unc_depth) {
      add_uncertain(i, uncertain);
      unc_depth = nd.depth;
    }
    if (to == kDead) {
      i = nd.next;
      continue;
    }
    const bool also_local = local && !unc_depth;
    for (uint32_t t = nd.tok_begin; t < nd.tok_end; ++t) {
      const auto id = static_cast<uint32_t>(trie_->ids_[t]);
      mask[id >> 6] |= uint64_t{1} << (id & 63);
      if (also_local) (*local)[id >> 6] |= uint64_t{1} << (id & 63);
    }
    // A subtree below a state that loops: the characters of the loop set take
    // the state back to itself, so only what lies past them is walked.
    if (nd.next > i + 1 && to >= 0 && trie_->boundary_[i]) {
      const TokenTrie::Below& below = trie_->below_[i];
      const auto ts = static_cast<size_t>(to);
      int32_t li = kDead;
      if (ts < loop_of_.size() && loop_of_[ts] != kUnknown) {
        li = loop_of_[ts];
      } else if (nd.next > i + kLoopMinBelow) {
        loop_set(m, to, nd.depth);
        li = loop_index(to);
      }
      if (li >= 0) {
        const TokenTrie::Below& loop = loops_[static_cast<size_t>(li)];
        // A loop that looked below the local frames: the subtree belongs to
        // this context only (walked again in others).
        const bool sub_local = also_local && !loop_deep_[static_cast<size_t>(li)];
        if (!(below.flags & TokenTrie::kBelowInvalid) && (below.ascii[0] & ~loop.ascii[0]) == 0 &&
            (below.ascii[1] & ~loop.ascii[1]) == 0 &&
            (loop.flags & TokenTrie::kBelowNonAscii ||
             !(below.flags & TokenTrie::kBelowNonAscii))) {
          // Every character below is in the set: every token is allowed.
          if (also_local && !sub_local) add_uncertain(i, uncertain);
          for (uint32_t t = trie_->ids_at_[i + 1]; t < trie_->ids_at_[nd.next]; ++t) {
            const auto id = static_cast<uint32_t>(trie_->ids_[t]);
            mask[id >> 6] |= uint64_t{1} << (id & 63);
            if (sub_local) (*local)[id >> 6] |= uint64_t{1} << (id & 63);
          }
          ++loop_skips_;
          i = nd.next;
          continue;
        }
        const TokenTrie::LoopView* v =
            nd.depth < 255 && nd.next > i + kLoopMinBelow ? view_of(li) : nullptr;
        if (v) {
          if (also_local && !sub_local) add_uncertain(i, uncertain);
          walk_view(m, i, to, *v, mask, sub_local ? local : nullptr,
                    sub_local ? uncertain : nullptr);
          ++loop_skips_;
          i = nd.next;
          continue;
        }
      }
    }
    at_depth_[nd.depth] = to;
    ++i;
  }
}

void MaskComputer::add_uncertain(size_t node, std::vector<Uncertain>* uncertain) const {
  Uncertain u{static_cast<uint32_t>(node), {}};
  for (uint32_t p = trie_->parent_[node]; p != TokenTrie::kNoParent; p = trie_->parent_[p])
    u.path.push_back(trie_->nodes_[p].byte);
  std::reverse(u.path.begin(), u.path.end());
  uncertain->push_back(std::move(u));
}

int32_t MaskComputer::loop_index(int32_t s) const {
  const auto si = static_cast<size_t>(s);
  return si < loop_of_.size() && loop_of_[si] >= 0 ? loop_of_[si] : -1;
}

const TokenTrie::LoopView* MaskComputer::view_of(int32_t loop) {
  const auto li = static_cast<size_t>(loop);
  if (views_.size() < loops_.size()) {
    views_.resize(loops_.size());
    view_fetched_.resize(loops_.size(), 0);
  }
  if (!view_fetched_[li]) {
    view_fetched_[li] = 1;
    views_[li] = trie_->loop_view(loops_[li]);
  }
  return views_[li].get();
}

void MaskComputer::walk_view(Matcher& m, size_t i, int32_t s, const TokenTrie::LoopView& v,
                             std::vector<uint64_t>& mask, std::vector<uint64_t>* local,
                             std::vector<Uncertain>* uncertain) {
  const auto& nodes = trie_->nodes_;
  const TokenTrie::Node& nd = nodes[i];
  const uint8_t depth = static_cast<uint8_t>(nd.depth);
  for (uint32_t t = trie_->ids_at_[i + 1]; t < trie_->ids_at_[nd.next]; ++t) {
    if (v.exit_depth[t] > depth) continue;
    const auto id = static_cast<uint32_t>(trie_->ids_[t]);
    mask[id >> 6] |= uint64_t{1} << (id & 63);
    if (local) (*local)[id >> 6] |= uint64_t{1} << (id & 63);
  }
  const auto first =
      std::lower_bound(v.exits.begin(), v.exits.end(), static_cast<uint32_t>(i + 1)) -
      v.exits.begin();
  for (auto k = static_cast<size_t>(first); k < v.exits.size() && v.exits[k] < nd.next;
       k = v.exit_skip[k]) {
    const uint32_t j = v.exits[k];
    if (trans_[static_cast<size_t>(s) * 256 + nodes[j].byte] == kDead) continue;
    at_depth_[nodes[j].depth - 1u] = s;
    walk_range(m, j, nodes[j].next, mask, local, uncertain);
  }
}

// Walks the exits nodes[begin, end) from state s (each exit's parent is in
// state s); with root_bytes, only those whose token's first byte is in roots.
void MaskComputer::walk_exits(Matcher& m, const std::vector<uint32_t>& exits, uint32_t begin,
                              uint32_t end, int32_t s, std::vector<uint64_t>& mask,
                              std::vector<uint64_t>* local, std::vector<Uncertain>* uncertain,
                              const uint8_t* root_bytes, const uint64_t* roots) {
  const auto& nodes = trie_->nodes_;
  for (uint32_t k = begin; k < end; ++k) {
    if (root_bytes && !((roots[root_bytes[k] >> 6] >> (root_bytes[k] & 63)) & 1)) continue;
    const uint32_t j = exits[k];
    at_depth_[nodes[j].depth - 1u] = s;
    walk_range(m, j, nodes[j].next, mask, local, uncertain);
  }
}

void MaskComputer::walk_root(Matcher& m, std::vector<uint64_t>& mask, std::vector<uint64_t>* local,
                             std::vector<Uncertain>* uncertain) {
  const auto& nodes = trie_->nodes_;
  const size_t n = nodes.size();
  const int32_t s0 = at_depth_[0];
  if (s0 < 0 || !whole_char_[static_cast<size_t>(s0)] || n == 0) {
    walk_range(m, 0, n, mask, local, uncertain);
    return;
  }
  auto add_bits = [&](const std::vector<uint64_t>& bits) {
    for (size_t w = 0; w < bits.size(); ++w) mask[w] |= bits[w];
    if (local)
      for (size_t w = 0; w < bits.size(); ++w) (*local)[w] |= bits[w];
  };
  // The state loops: tokens made of its loop set, then the exits it can take.
  loop_set(m, s0, 0);
  int32_t li = loop_index(s0);
  if (const TokenTrie::LoopView* v = li >= 0 ? view_of(li) : nullptr) {
    if (loop_deep_[static_cast<size_t>(li)])
      local = nullptr, uncertain = nullptr, local_ok_ = false;
    add_bits(v->whole);
    for (size_t b = 0; b < 256; ++b) {
      if (v->first0_at[b] == v->first0_at[b + 1]) continue;
      if (step(m, s0, static_cast<uint8_t>(b), 1, nullptr) == kDead) continue;
      walk_exits(m, v->first0, v->first0_at[b], v->first0_at[b + 1], s0, mask, local, uncertain);
    }
    ++loop_skips_;
    return;
  }
  if (walk_chain(m, mask, local, uncertain)) return;
  // Most ASCII first bytes lead to one state G that loops: the tokens whose
  // first byte leads there and whose other characters are in G's loop set
  // (the view's tail, less the other first bytes), then the exits below.
  auto& roots = roots_;  // (node, state after its byte), ASCII first bytes
  roots.clear();
  roots_deep_.clear();
  size_t ascii_end = 0;
  bool any_deep = false;  // some first byte or G's loop looked below the local frames
  for (; ascii_end < n && nodes[ascii_end].byte < 0x80; ascii_end = nodes[ascii_end].next) {
    bool deep = false;
    roots.push_back(
        {static_cast<uint32_t>(ascii_end), step(m, s0, nodes[ascii_end].byte, 1, &deep)});
    roots_deep_.push_back(deep);
  }
  int32_t g = kDead;
  size_t best = 0;
  counts_.resize(n_states_);
  for (const auto& r : roots)
    if (r.second >= 0 && ++counts_[static_cast<size_t>(r.second)] > best)
      best = counts_[static_cast<size_t>(r.second)], g = r.second;
  for (const auto& r : roots)
    if (r.second >= 0) counts_[static_cast<size_t>(r.second)] = 0;
  for (size_t r = 0; r < roots.size(); ++r)
    any_deep = any_deep || (roots[r].second == g && roots_deep_[r]);
  const TokenTrie::LoopView* v = nullptr;
  if (best >= kGroupMin) {
    loop_set(m, g, 1);
    li = loop_index(g);
    v = li >= 0 ? view_of(li) : nullptr;
  }
  if (!v) {
    walk_range(m, 0, n, mask, local, uncertain);
    return;
  }
  // Non-ASCII first characters join the group when every top class holds
  // all of them or none and one of them (U+00E9) leads to G.
  m.load(states_[static_cast<size_t>(s0)]);
  bool non_ascii = false;
  if (m.classes_uniform(0x80, 0x10FFFF)) {
    bool d1 = false, d2 = false;
    const int32_t t1 = step(m, s0, 0xC3, 1, &d1);
    non_ascii = t1 >= 0 && step(m, t1, 0xA9, 2, &d2) == g;
    any_deep = any_deep || (non_ascii && (d1 || d2));
  }
  // Where the group's tokens depended on more than the local frames, this
  // mask has no context-free part worth keeping.
  if (any_deep || loop_deep_[static_cast<size_t>(li)])
    local = nullptr, uncertain = nullptr, local_ok_ = false;
  for (size_t i = ascii_end; i < n; i = nodes[i].next)
    roots.push_back({static_cast<uint32_t>(i),
                     non_ascii && !(trie_->char_[i] & TokenTrie::kCharBad) ? g : kDead});
  uint64_t group[4] = {0, 0, 0, 0};
  for (const auto& [i, to] : roots)
    if (to == g) group[nodes[i].byte >> 6] |= uint64_t{1} << (nodes[i].byte & 63);
  add_bits(v->tail);
  for (const auto& [i, to] : roots) {
    if (to == g) continue;
    // Not in the group: take back what the tail set and walk the subtree.
    if (nodes[i].byte < 0x80 || !(trie_->char_[i] & TokenTrie::kCharBad)) {
      for (uint32_t t = trie_->ids_at_[i]; t < trie_->ids_at_[nodes[i].next]; ++t) {
        if (v->exit_depth[t] > 1) continue;
        const auto id = static_cast<uint32_t>(trie_->ids_[t]);
        mask[id >> 6] &= ~(uint64_t{1} << (id & 63));
        if (local) (*local)[id >> 6] &= ~(uint64_t{1} << (id & 63));
      }
    }
    walk_range(m, i, nodes[i].next, mask, local, uncertain);
  }
  for (size_t b = 0; b < 256; ++b) {
    if (v->first1_at[b] == v->first1_at[b + 1]) continue;
    if (step(m, g, static_cast<uint8_t>(b), 2, nullptr) == kDead) continue;
    walk_exits(m, v->first1, v->first1_at[b], v->first1_at[b + 1], g, mask, local, uncertain,
               v->first1_root.data(), group);
  }
  ++loop_skips_;
}

bool MaskComputer::walk_chain(Matcher& m, std::vector<uint64_t>& mask,
                              std::vector<uint64_t>*& local, std::vector<Uncertain>*& uncertain) {
  const int32_t s0 = at_depth_[0];
  if (n_states_ + kMaxChain + 64 > kMaxStates) return false;
  // The biggest class of ASCII bytes that s0's top classes treat alike.
  m.load(states_[static_cast<size_t>(s0)]);
  uint64_t left[2] = {cand_[2 * static_cast<size_t>(s0)], cand_[2 * static_cast<size_t>(s0) + 1]};
  TokenTrie::Below set{{0, 0}, 0};
  int best = 0;
  while (left[0] | left[1]) {
    const auto b =
        static_cast<uint8_t>(left[0] ? __builtin_ctzll(left[0]) : 64 + __builtin_ctzll(left[1]));
    uint64_t part[2];
    m.ascii_class_of(b, part);
    part[0] &= left[0], part[1] &= left[1];
    left[0] &= ~part[0], left[1] &= ~part[1];
    const int n = __builtin_popcountll(part[0]) + __builtin_popcountll(part[1]);
    if (n > best) best = n, set.ascii[0] = part[0], set.ascii[1] = part[1];
  }
  if (static_cast<size_t>(best) < TokenTrie::kViewMinBytes) return false;
  const auto rep = static_cast<uint8_t>(set.ascii[0] ? __builtin_ctzll(set.ascii[0])
                                                     : 64 + __builtin_ctzll(set.ascii[1]));
  bool deep = false, any_deep = false;
  const int32_t s1 = step(m, s0, rep, 1, &deep);
  if (s1 < 0 || s1 == s0) return false;
  any_deep = deep;
  // Non-ASCII characters join the set when the top classes treat them all
  // alike (then U+00E9 stands for them) and like the set's bytes.
  m.load(states_[static_cast<size_t>(s0)]);
  if (m.classes_uniform(0x80, 0x10FFFF) && m.treats_alike(rep, 0xE9))
    set.flags = TokenTrie::kBelowNonAscii;
  {
    // A state that loops after one character is the group walk's (walk_root).
    m.load(states_[static_cast<size_t>(s1)]);
    if (step(m, s1, rep, 2, nullptr) == s1) return false;
  }
  const auto view_ptr = trie_->loop_view(set);
  if (!view_ptr) return false;
  const TokenTrie::LoopView& v = *view_ptr;
  // The chain: chain_[j] is the state after j characters of the set, up to
  // the first dead one (r: the most characters allowed) or a repeat (loop).
  chain_.assign({s0, s1});
  size_t r = SIZE_MAX, loop_at = SIZE_MAX;
  const size_t need = std::min(v.max_chars, kMaxChain);
  while (chain_.size() <= need) {
    const int32_t s = chain_.back();
    m.load(states_[static_cast<size_t>(s)]);
    uint64_t part[2];
    m.ascii_class_of(rep, part);
    if ((set.ascii[0] & ~part[0]) || (set.ascii[1] & ~part[1])) return false;  // not one class here
    if (set.flags && !(m.classes_uniform(0x80, 0x10FFFF) && m.treats_alike(rep, 0xE9)))
      return false;
    const int32_t next = step(m, s, rep, 1, &deep);
    if (next == kDead) {
      r = chain_.size() - 1;
      break;
    }
    if (next < 0) return false;
    any_deep |= deep;
    if (next == s) {
      loop_at = chain_.size() - 1;
      break;
    }
    chain_.push_back(next);
  }
  if (r == SIZE_MAX && loop_at == SIZE_MAX && v.max_chars > kMaxChain)
    return false;  // longer than the chain
  if (any_deep) local = nullptr, uncertain = nullptr, local_ok_ = false;
  auto add_bits = [&](const std::vector<uint64_t>& bits) {
    for (size_t w = 0; w < bits.size(); ++w) mask[w] |= bits[w];
    if (local)
      for (size_t w = 0; w < bits.size(); ++w) (*local)[w] |= bits[w];
  };
  if (r == SIZE_MAX || r >= v.max_chars) {
    add_bits(v.whole);
  } else if (r > 0) {
    add_bits(v.whole_upto[std::min(r, TokenTrie::kUptoChars)]);
    for (const auto& [c, id] : v.whole_long) {
      if (c > r) break;
      mask[id >> 6] |= uint64_t{1} << (id & 63);
      if (local) (*local)[id >> 6] |= uint64_t{1} << (id & 63);
    }
  }
  const auto& nodes = trie_->nodes_;
  for (size_t b = 0; b < 256; ++b) {
    for (uint32_t k = v.first0_at[b]; k < v.first0_at[b + 1]; ++k) {
      const size_t j = v.first0_chars[k];
      if (r != SIZE_MAX && j > r) continue;
      const int32_t s = chain_[std::min(j, loop_at != SIZE_MAX ? loop_at : chain_.size() - 1)];
      const uint32_t node = v.first0[k];
      if (trans_[static_cast<size_t>(s) * 256 + b] == kDead) continue;
      at_depth_[nodes[node].depth - 1u] = s;
      walk_range(m, node, nodes[node].next, mask, local, uncertain);
    }
  }
  ++loop_skips_;
  return true;
}

const TokenTrie::Below* MaskComputer::loop_set(Matcher& m, int32_t s, size_t depth) {
  const auto si = static_cast<size_t>(s);
  if (si >= loop_of_.size()) loop_of_.resize(n_states_, kUnknown);
  if (loop_of_[si] != kUnknown)
    return loop_of_[si] >= 0 ? &loops_[static_cast<size_t>(loop_of_[si])] : nullptr;
  loop_of_[si] = kDead;
  // Stepping may intern new states; keep room so the walk's own path never
  // falls back to the depth snapshots this could overwrite.
  if (n_states_ + 160 > kMaxStates) return nullptr;
  m.load(states_[si]);
  if (m.stack_count() > kLoopMaxStacks) return nullptr;  // stepping would cost more than it saves
  uint64_t cand[2];
  m.ascii_candidates(cand);
  if (static_cast<size_t>(__builtin_popcountll(cand[0]) + __builtin_popcountll(cand[1])) <
      kLoopMinBytes)
    return nullptr;
  TokenTrie::Below loop{{0, 0}, 0};
  size_t n = 0;
  bool any_deep = false;
  for (uint8_t b = 0; b < 0x80; ++b) {
    if (!((cand[b >> 6] >> (b & 63)) & 1)) continue;
    bool deep = false;
    if (step(m, s, b, depth + 1, &deep) == s) {
      loop.ascii[b >> 6] |= uint64_t{1} << (b & 63);
      any_deep = any_deep || deep;
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
    if (t1 >= 0 && step(m, t1, 0xA9, depth + 2, &d2) == s) {
      loop.flags = TokenTrie::kBelowNonAscii;
      any_deep = any_deep || d1 || d2;
    }
  }
  loop_of_[si] = static_cast<int32_t>(loops_.size());
  loops_.push_back(loop);
  loop_deep_.push_back(any_deep);
  return &loops_.back();
}

}  // namespace slm::grammar
