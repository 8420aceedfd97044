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

void MaskComputer::walk(Matcher& m, std::vector<uint64_t>& mask) {
  const auto& nodes = trie_->nodes_;
  mask.assign((trie_->n_tokens_ + 63) / 64, 0);
  if (snaps_.size() < kMaxTokenBytes + 1) snaps_.resize(kMaxTokenBytes + 1);
  m.save(snaps_[0]);
  visited_ = 0;
  size_t depth = 0;  // bytes of the current path the matcher has taken
  try {
    for (size_t i = 0; i < nodes.size();) {
      const TokenTrie::Node& nd = nodes[i];
      if (depth != nd.depth - 1u) {
        m.restore(snaps_[nd.depth - 1u]);
        depth = nd.depth - 1u;
      }
      ++visited_;
      if (!m.accept_byte(nd.byte)) {  // dead: skip the subtree
        i = nd.next;
        continue;
      }
      depth = nd.depth;
      for (uint32_t t = nd.tok_begin; t < nd.tok_end; ++t) {
        const auto id = static_cast<uint32_t>(trie_->ids_[t]);
        mask[id >> 6] |= uint64_t{1} << (id & 63);
      }
      if (nd.next > i + 1) m.save(snaps_[nd.depth]);
      ++i;
    }
  } catch (...) {
    m.restore(snaps_[0]);
    throw;
  }
  m.restore(snaps_[0]);
}

}  // namespace slm::grammar
