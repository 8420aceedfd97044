#include "engine/stop.h"

#include <algorithm>

#include "base/utf8.h"

namespace slm::engine {

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
  const size_t hold = std::max(partial_match_tail(), utf8::incomplete_tail(pending_));
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
