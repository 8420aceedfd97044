// Matcher (matcher.h): stack-set stepping, UTF-8 assembly, arena compaction.
#include "grammar/matcher.h"

#include <algorithm>
#include <string>

#include "base/error.h"

namespace slm::grammar {

namespace {
// Slot of a (pos << 32 | parent) key in a power-of-two table. Every key bit
// must reach the low bits: a bare multiply's middle bits see only the low
// bits of pos, and the long probe chains that made cost more than the steps.
size_t index_hash(uint64_t key, size_t mask) {
  key ^= key >> 33;
  key *= 0xFF51AFD7ED558CCDull;
  key ^= key >> 33;
  key *= 0xC4CEB9FE1A85EC53ull;
  key ^= key >> 33;
  return static_cast<size_t>(key) & mask;
}
}  // namespace

void Matcher::StepTable::next_step() {
  count_ = 0;
  if (++gen_ == 0) {  // wrapped: forget every stamp
    std::fill(stamps_.begin(), stamps_.end(), 0);
    gen_ = 1;
  }
}

void Matcher::StepTable::grow() {
  const size_t n = keys_.empty() ? 64 : keys_.size() * 2;
  std::vector<uint64_t> keys(n);
  std::vector<uint32_t> vals(n), stamps(n, 0);
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (stamps_[i] != gen_) continue;
    size_t h = index_hash(keys_[i], n - 1);
    while (stamps[h] == gen_) h = (h + 1) & (n - 1);
    keys[h] = keys_[i], vals[h] = vals_[i], stamps[h] = gen_;
  }
  keys_.swap(keys), vals_.swap(vals), stamps_.swap(stamps);
}

uint32_t Matcher::StepTable::insert(uint64_t key, uint32_t val, bool* added) {
  if ((count_ + 1) * 2 > keys_.size()) grow();
  const size_t mask = keys_.size() - 1;
  size_t h = index_hash(key, mask);
  while (stamps_[h] == gen_) {
    if (keys_[h] == key) {
      *added = false;
      return vals_[h];
    }
    h = (h + 1) & mask;
  }
  keys_[h] = key, vals_[h] = val, stamps_[h] = gen_;
  ++count_;
  *added = true;
  return val;
}

Matcher::Matcher(std::shared_ptr<const Grammar> grammar, MatcherLimits limits)
    : g_(std::move(grammar)), lim_(limits) {
  if (!g_ || g_->root >= g_->alts.size()) throw Error("matcher: grammar has no root rule");
  reset();
}

void Matcher::reset() {
  nodes_.clear();
  partial_ = {};
  stacks_.clear();
  seen_items_.next_step();
  rebuild_index();
  for (uint32_t a : g_->alts[g_->root]) expand(a, kNone, stacks_);
  std::sort(stacks_.begin(), stacks_.end());
  stacks_.erase(std::unique(stacks_.begin(), stacks_.end()), stacks_.end());
  compact_at_ = 1u << 16;
}

void Matcher::rebuild_index() {
  size_t n = 1024;
  while (n < 4 * nodes_.size()) n *= 2;
  index_keys_.assign(n, 0);
  index_vals_.assign(n, kNone);
  index_count_ = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const uint64_t key = (uint64_t{nodes_[i].pos} << 32) | nodes_[i].parent;
    size_t h = index_hash(key, n - 1);
    while (index_vals_[h] != kNone && index_keys_[h] != key) h = (h + 1) & (n - 1);
    if (index_vals_[h] == kNone) ++index_count_;
    index_keys_[h] = key, index_vals_[h] = static_cast<uint32_t>(i);
  }
}

uint32_t Matcher::make_node(uint32_t pos, uint32_t parent) {
  const uint64_t key = (uint64_t{pos} << 32) | parent;
  if ((index_count_ + 1) * 2 > index_keys_.size()) rebuild_index();  // also drops stale entries
  const size_t mask = index_keys_.size() - 1;
  size_t h = index_hash(key, mask);
  while (index_vals_[h] != kNone && index_keys_[h] != key) h = (h + 1) & mask;
  if (index_vals_[h] != kNone) {
    const uint32_t id = index_vals_[h];
    if (id < nodes_.size() && nodes_[id].pos == pos && nodes_[id].parent == parent) return id;
  } else {
    ++index_count_;
  }
  const uint32_t depth = parent == kNone ? 1 : nodes_[parent].depth + 1;
  if (depth > lim_.max_depth)
    throw Error(std::string("grammar: input nests deeper than ") + std::to_string(lim_.max_depth) +
                " rules");
  if (nodes_.size() >= kNone - 1) throw Error("grammar: matcher arena is full");
  const auto id = static_cast<uint32_t>(nodes_.size());
  nodes_.push_back({pos, parent, depth});
  index_keys_[h] = key, index_vals_[h] = id;
  return id;
}

// Expands the item "at program position pos, returning to parent" until every
// path stops at a character class (a new stack top) or finishes the root.
void Matcher::expand(uint32_t pos, uint32_t parent, std::vector<uint32_t>& out) {
  const auto& code = g_->code;
  work_.clear();
  work_.push_back({pos, parent});
  while (!work_.empty()) {
    const auto [p, par] = work_.back();
    work_.pop_back();
    bool added = false;
    seen_items_.insert((uint64_t{p} << 32) | par, 0, &added);
    if (!added) continue;
    if (seen_items_.size() > lim_.max_expansions)
      throw Error(std::string("grammar: too ambiguous (more than ") +
                  std::to_string(lim_.max_expansions) + " rule expansions for one character)");
    const Element& e = code[p];
    if (e.op == Op::kChar) {
      out.push_back(make_node(p, par));
    } else if (e.op == Op::kEnd) {
      if (par == kNone) {
        out.push_back(kNone);
      } else {
        if (par < watch_limit_ && !watch_flags_[par]) watch_hit_ = true;
        work_.push_back({nodes_[par].pos, nodes_[par].parent});
      }
    } else {
      // Tail call: nothing follows the reference, so return straight to parent.
      const uint32_t cont = code[p + 1].op == Op::kEnd ? par : make_node(p + 1, par);
      const auto& alts = g_->alts[e.arg];
      for (auto it = alts.rbegin(); it != alts.rend(); ++it) work_.push_back({*it, cont});
    }
  }
}

bool Matcher::advance_code_point(char32_t cp) {
  const size_t n_nodes = nodes_.size();
  next_.clear();
  seen_items_.next_step();
  const auto& code = g_->code;
  for (uint32_t s : stacks_) {
    if (s == kNone) continue;
    const Node n = nodes_[s];
    if (!g_->classes[code[n.pos].arg].contains(cp)) continue;
    // Inside a literal the next element is a class again: the new top is
    // (pos + 1, parent), with no rule to expand. Stacks are distinct nodes,
    // so these items are distinct too (any equal one an expansion reaches is
    // the same hash-consed node, removed by the sort below).
    if (code[n.pos + 1].op == Op::kChar)
      next_.push_back(make_node(n.pos + 1, n.parent));
    else
      expand(n.pos + 1, n.parent, next_);
  }
  if (next_.empty()) {
    nodes_.resize(n_nodes);
    return false;
  }
  std::sort(next_.begin(), next_.end());
  next_.erase(std::unique(next_.begin(), next_.end()), next_.end());
  if (next_.size() > lim_.max_stacks)
    throw Error(std::string("grammar: too ambiguous (more than ") +
                std::to_string(lim_.max_stacks) + " parse stacks alive)");
  stacks_.swap(next_);
  return true;
}

bool Matcher::any_top_intersects(char32_t lo, char32_t hi) const {
  for (uint32_t s : stacks_) {
    if (s == kNone) continue;
    if (g_->classes[g_->code[nodes_[s].pos].arg].intersects(lo, hi)) return true;
  }
  return false;
}

bool Matcher::classes_uniform(char32_t lo, char32_t hi) const {
  if (partial_.need != 0) return false;
  // Surrogates are never characters (classes leave them out): test the
  // scalar values on either side of them.
  CodeRange parts[2];
  size_t n = 0;
  if (lo < 0xD800) parts[n++] = {lo, std::min<char32_t>(hi, 0xD7FF)};
  if (hi > 0xDFFF) parts[n++] = {std::max<char32_t>(lo, 0xE000), hi};
  for (uint32_t s : stacks_) {
    if (s == kNone) continue;
    const CharClass& c = g_->classes[g_->code[nodes_[s].pos].arg];
    bool some = false, gap = false;
    for (size_t k = 0; k < n; ++k) {
      some = some || c.intersects(parts[k].lo, parts[k].hi);
      gap = gap || c.intersects_gap(parts[k].lo, parts[k].hi);
    }
    if (some && gap) return false;
  }
  return true;
}

bool Matcher::treats_alike(char32_t a, char32_t b) const {
  for (uint32_t s : stacks_) {
    if (s == kNone) continue;
    const CharClass& c = g_->classes[g_->code[nodes_[s].pos].arg];
    if (c.contains(a) != c.contains(b)) return false;
  }
  return true;
}

void Matcher::ascii_candidates(uint64_t out[2]) const {
  out[0] = out[1] = 0;
  for (uint32_t s : stacks_) {
    if (s == kNone) continue;
    const CharClass& c = g_->classes[g_->code[nodes_[s].pos].arg];
    out[0] |= c.ascii[0], out[1] |= c.ascii[1];
  }
}

void Matcher::ascii_class_of(uint8_t b, uint64_t out[2]) const {
  out[0] = out[1] = ~uint64_t{0};
  const size_t w = b >> 6;
  const uint64_t bit = uint64_t{1} << (b & 63);
  for (uint32_t s : stacks_) {
    if (s == kNone) continue;
    const CharClass& c = g_->classes[g_->code[nodes_[s].pos].arg];
    if (c.ascii[w] & bit) {
      out[0] &= c.ascii[0], out[1] &= c.ascii[1];
    } else {
      out[0] &= ~c.ascii[0], out[1] &= ~c.ascii[1];
    }
  }
}

bool Matcher::accept_byte(uint8_t b) {
  if (partial_.need == 0) {
    if (b < 0x80) return advance_code_point(b);
    Partial p;
    if (b >= 0xC2 && b <= 0xDF) {
      p.need = 1, p.cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
      p.need = 2, p.cp = b & 0x0F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      p.need = 3, p.cp = b & 0x07;
    } else {
      return false;
    }
    p.lead = b;
    const unsigned shift = 6u * p.need;
    char32_t lo = p.cp << shift, hi = lo | ((1u << shift) - 1);
    if (b == 0xE0) lo = 0x800;
    if (b == 0xED) hi = 0xD7FF;
    if (b == 0xF0) lo = 0x10000;
    if (b == 0xF4) hi = 0x10FFFF;
    if (!any_top_intersects(lo, hi)) return false;
    partial_ = p;
    return true;
  }
  if ((b & 0xC0) != 0x80) return false;
  if (partial_.seen == 0) {
    const uint8_t l = partial_.lead;
    if ((l == 0xE0 && b < 0xA0) || (l == 0xED && b > 0x9F) || (l == 0xF0 && b < 0x90) ||
        (l == 0xF4 && b > 0x8F))
      return false;
  }
  Partial p = partial_;
  p.cp = (p.cp << 6) | (b & 0x3F);
  --p.need;
  ++p.seen;
  if (p.need == 0) {
    if (!advance_code_point(p.cp)) return false;
    partial_ = {};
    return true;
  }
  const unsigned shift = 6u * p.need;
  const char32_t lo = p.cp << shift, hi = lo | ((1u << shift) - 1);
  if (!any_top_intersects(lo, hi)) return false;
  partial_ = p;
  return true;
}

size_t Matcher::accept(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (!accept_byte(static_cast<uint8_t>(bytes[i]))) return i;
    if (nodes_.size() > compact_at_) compact();
  }
  return bytes.size();
}

bool Matcher::is_complete() const {
  return partial_.need == 0 && !stacks_.empty() && stacks_.back() == kNone;
}

bool Matcher::is_finished() const {
  return is_complete() && stacks_.size() == 1;
}

void Matcher::save(Snapshot& s) const {
  s.stacks.assign(stacks_.begin(), stacks_.end());
  s.partial = partial_;
  s.n_nodes = nodes_.size();
}

void Matcher::restore(const Snapshot& s) {
  stacks_.assign(s.stacks.begin(), s.stacks.end());
  partial_ = s.partial;
  nodes_.resize(s.n_nodes);
}

void Matcher::watch(size_t max_frames, std::vector<uint8_t>& flags) {
  flags.assign(nodes_.size(), 0);
  for (uint32_t s : stacks_) {
    size_t k = 0;
    for (uint32_t n = s; n != kNone && k < max_frames; n = nodes_[n].parent, ++k) flags[n] = 1;
  }
  watch_limit_ = static_cast<uint32_t>(nodes_.size());
  watch_flags_ = flags.data();
  watch_hit_ = false;
}

void Matcher::partial_range(char32_t& lo, char32_t& hi) const {
  const unsigned shift = 6u * partial_.need;
  lo = partial_.cp << shift, hi = lo | ((1u << shift) - 1);
  if (partial_.seen == 0) {
    if (partial_.lead == 0xE0) lo = 0x800;
    if (partial_.lead == 0xED) hi = 0xD7FF;
    if (partial_.lead == 0xF0) lo = 0x10000;
    if (partial_.lead == 0xF4) hi = 0x10FFFF;
  }
}

uint32_t Matcher::partial_word(bool canonical) const {
  const bool lead_matters = partial_.seen == 0 && (partial_.lead == 0xE0 || partial_.lead == 0xED ||
                                                   partial_.lead == 0xF0 || partial_.lead == 0xF4);
  return uint32_t{partial_.need} |
         uint32_t{canonical && !lead_matters ? uint8_t{0} : partial_.lead} << 8 |
         uint32_t{partial_.seen} << 16;
}

void Matcher::state_key(std::vector<uint32_t>& out) const {
  out.clear();
  if (partial_.need == 0) {  // the common case: no character partly received
    out.push_back(0);
    out.push_back(0);
    out.insert(out.end(), stacks_.begin(), stacks_.end());
    return;
  }
  // The partial character as signature() canonicalises it; stack ids are
  // sorted and unique, so each id's membership bit follows it.
  char32_t lo = 0, hi = 0;
  partial_range(lo, hi);
  bool canonical = true;
  for (uint32_t s : stacks_) {
    if (s == kNone) continue;
    const CharClass& c = g_->classes[g_->code[nodes_[s].pos].arg];
    if (c.intersects_gap(lo, hi) && c.intersects(lo, hi)) {
      canonical = false;
      break;
    }
  }
  out.push_back(canonical ? 0xFFFFFFFFu : partial_.cp);
  out.push_back(partial_word(canonical));
  for (uint32_t s : stacks_) {
    out.push_back(s);
    if (canonical)
      out.push_back(s != kNone && !g_->classes[g_->code[nodes_[s].pos].arg].intersects_gap(lo, hi));
  }
}

void Matcher::signature(std::vector<uint32_t>& out, size_t max_frames) const {
  // A partial character whose possible code points each top class holds
  // entirely or not at all behaves like any other such prefix with the same
  // byte constraints: drop its value and keep one membership bit per stack,
  // so the thousands of 3-byte prefixes inside free text share one form.
  bool canonical = partial_.need > 0;
  char32_t lo = 0, hi = 0;
  if (canonical) partial_range(lo, hi);
  sig_flat_.clear();
  sig_spans_.clear();
  for (uint32_t s : stacks_) {
    const auto begin = static_cast<uint32_t>(sig_flat_.size());
    uint32_t member = 0;
    if (partial_.need > 0 && s != kNone) {
      const CharClass& c = g_->classes[g_->code[nodes_[s].pos].arg];
      if (!c.intersects_gap(lo, hi))
        member = 1;
      else if (c.intersects(lo, hi))
        canonical = false;
    }
    sig_flat_.push_back(member);
    size_t k = 0;
    uint32_t n = s;
    for (; n != kNone && k < max_frames; n = nodes_[n].parent, ++k)
      sig_flat_.push_back(nodes_[n].pos);
    if (n != kNone) sig_flat_.push_back(kNone);  // cut here: more frames lie below
    sig_spans_.push_back({begin, static_cast<uint32_t>(sig_flat_.size())});
  }
  std::sort(sig_spans_.begin(), sig_spans_.end(), [&](const auto& a, const auto& b) {
    return std::lexicographical_compare(sig_flat_.begin() + a.first, sig_flat_.begin() + a.second,
                                        sig_flat_.begin() + b.first, sig_flat_.begin() + b.second);
  });
  out.clear();
  out.push_back(canonical ? 0xFFFFFFFFu : partial_.cp);
  out.push_back(partial_word(canonical));
  const uint32_t skip = canonical ? 0 : 1;  // membership bits only in the canonical form
  for (const auto& [b, e] : sig_spans_) {
    out.push_back(e - b - skip);  // length first: the form stays unambiguous
    out.insert(out.end(), sig_flat_.begin() + b + skip, sig_flat_.begin() + e);
  }
}

void Matcher::load(const Snapshot& s) {
  stacks_.assign(s.stacks.begin(), s.stacks.end());
  partial_ = s.partial;
}

void Matcher::compact() {
  // Parents always precede children in the arena, so one backward pass marks
  // everything reachable and one forward pass renumbers it.
  std::vector<uint32_t> remap(nodes_.size(), 0);
  for (uint32_t s : stacks_)
    if (s != kNone) remap[s] = 1;
  for (size_t i = nodes_.size(); i-- > 0;)
    if (remap[i] && nodes_[i].parent != kNone) remap[nodes_[i].parent] = 1;
  uint32_t live = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (!remap[i]) continue;
    Node n = nodes_[i];
    if (n.parent != kNone) n.parent = remap[n.parent];
    remap[i] = live;
    nodes_[live++] = n;
  }
  nodes_.resize(live);
  for (uint32_t& s : stacks_)
    if (s != kNone) s = remap[s];
  std::sort(stacks_.begin(), stacks_.end());
  rebuild_index();
  compact_at_ = std::max<size_t>(1u << 16, 4 * size_t{live});
}

}  // namespace slm::grammar
