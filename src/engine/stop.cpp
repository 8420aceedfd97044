#include "engine/stop.h"

#include <algorithm>

namespace slm::engine {

size_t incomplete_utf8_tail(std::string_view text) {
  // Walk back over at most three continuation bytes to the lead byte.
  const size_t n = text.size();
  size_t cont = 0;
  while (cont < 3 && cont < n && (static_cast<unsigned char>(text[n - 1 - cont]) & 0xC0) == 0x80)
    ++cont;
  if (cont == n) return 0;  // no lead byte in reach
  const auto lead = static_cast<unsigned char>(text[n - 1 - cont]);
  size_t need = 0;  // continuation bytes the lead byte announces
  if ((lead & 0xE0) == 0xC0) need = 1;
  else if ((lead & 0xF0) == 0xE0) need = 2;
  else if ((lead & 0xF8) == 0xF0) need = 3;
  else return 0;  // ASCII or an invalid lead: nothing to wait for
  return cont < need ? cont + 1 : 0;
}

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (std::string& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
  for (const std::string& s : stops_) max_stop_ = std::max(max_stop_, s.size());
  pending_.reserve(2 * max_stop_ + 64);
  out_.reserve(2 * max_stop_ + 64);
}

void StopMatcher::reset() {
  pending_.clear();
  out_.clear();
  matched_.clear();
  stopped_ = false;
}

size_t StopMatcher::partial_match_tail() const {
  size_t best = 0;
  for (const std::string& s : stops_) {
    const size_t longest = std::min(s.size() - 1, pending_.size());
    for (size_t k = longest; k > best; --k) {
      if (std::string_view(pending_).substr(pending_.size() - k) == std::string_view(s).substr(0, k)) {
        best = k;
        break;
      }
    }
  }
  return best;
}

std::string_view StopMatcher::feed(std::string_view piece) {
  out_.clear();
  if (stopped_) return {};
  pending_.append(piece);

  // The earliest stop wins: text after its start is never emitted, even if
  // another stop ends sooner further on.
  size_t first = std::string::npos;
  const std::string* which = nullptr;
  for (const std::string& s : stops_) {
    const size_t pos = pending_.find(s);
    if (pos < first || (pos == first && pos != std::string::npos && s.size() > which->size())) {
      first = pos;
      which = &s;
    }
  }
  if (which != nullptr) {
    out_.assign(pending_, 0, first);
    matched_ = *which;
    stopped_ = true;
    pending_.clear();
    return out_;
  }

  // Hold back a tail that could still grow into a stop, and any incomplete
  // UTF-8 character; release the rest.
  const size_t hold = std::max(partial_match_tail(), incomplete_utf8_tail(pending_));
  const size_t release = pending_.size() - hold;
  out_.assign(pending_, 0, release);
  pending_.erase(0, release);
  return out_;
}

std::string_view StopMatcher::finish() {
  out_.clear();
  if (stopped_) return {};
  out_.swap(pending_);
  return out_;
}

}  // namespace slm::engine
