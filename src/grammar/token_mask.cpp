// TokenTrie construction (sort the byte strings, emit the distinct prefixes in
// order) and the masked depth-first walk (token_mask.h).
#include "grammar/token_mask.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "base/error.h"

namespace slm::grammar {

namespace {
constexpr size_t kMaxTokenBytes = 4096;  // longer tokens are never allowed
}

TokenTrie::TokenTrie(const std::vector<std::string>& token_bytes) : n_tokens_(token_bytes.size()) {
  if (token_bytes.size() >= (size_t{1} << 31)) throw Error("token trie: vocabulary too large");
  std::vector<std::pair<std::string_view, int32_t>> order;
  for (size_t i = 0; i < token_bytes.size(); ++i)
    if (!token_bytes[i].empty() && token_bytes[i].size() <= kMaxTokenBytes)
      order.emplace_back(token_bytes[i], static_cast<int32_t>(i));
  std::sort(order.begin(), order.end());
  std::vector<uint32_t> open;  // path from the root to the last node
  std::string_view prev;
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
      nodes_.push_back({0, 0, 0, static_cast<uint16_t>(k + 1), static_cast<uint8_t>(bytes[k])});
    }
    Node& end = nodes_[open.back()];
    end.tok_begin = static_cast<uint32_t>(ids_.size());
    ids_.push_back(id);
    end.tok_end = static_cast<uint32_t>(ids_.size());
    prev = bytes;
  }
  for (uint32_t i : open) nodes_[i].next = static_cast<uint32_t>(nodes_.size());
}

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
  walk(m, mask);
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
  return id;
}

void MaskComputer::walk(Matcher& m, std::vector<uint64_t>& mask) {
  const auto& nodes = trie_->nodes_;
  mask.assign((trie_->n_tokens_ + 63) / 64, 0);
  if (snaps_.size() < kMaxTokenBytes + 1) snaps_.resize(kMaxTokenBytes + 1);
  Matcher::Snapshot& origin = snaps_[0];  // deeper entries: only when the DFA is full
  m.save(origin);
  states_.clear();
  state_sigs_.clear();
  trans_.clear();
  std::fill(index_.begin(), index_.end(), std::pair<uint64_t, int32_t>{0, -1});
  at_depth_.assign(kMaxTokenBytes + 1, kUnknown);
  visited_ = 0;
  try {
    at_depth_[0] = intern(m);
    for (size_t i = 0; i < nodes.size();) {
      const TokenTrie::Node& nd = nodes[i];
      const int32_t from = at_depth_[nd.depth - 1u];
      ++visited_;
      int32_t to = kUnknown;
      if (from >= 0) to = trans_[static_cast<size_t>(from) * 256 + nd.byte];
      if (to == kUnknown) {
        // Step the matcher from the parent's state (DFA full: walk without caching).
        if (from >= 0) m.load(states_[static_cast<size_t>(from)]);
        else m.load(snaps_[nd.depth - 1u]);
        bool ok = false;
        try {
          ok = m.accept_byte(nd.byte);
        } catch (const Error&) {
          ok = false;  // a path past the matcher's limits is never offered
        }
        if (!ok) {
          to = kDead;
        } else {
          to = intern(m);
          if (to == kUnknown) m.save(snaps_[nd.depth]);
        }
        if (from >= 0) trans_[static_cast<size_t>(from) * 256 + nd.byte] = to;
      }
      if (to == kDead) {
        i = nd.next;
        continue;
      }
      for (uint32_t t = nd.tok_begin; t < nd.tok_end; ++t) {
        const auto id = static_cast<uint32_t>(trie_->ids_[t]);
        mask[id >> 6] |= uint64_t{1} << (id & 63);
      }
      at_depth_[nd.depth] = to;
      ++i;
    }
  } catch (...) {
    m.restore(origin);
    throw;
  }
  m.restore(origin);
}

}  // namespace slm::grammar
