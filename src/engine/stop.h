// Stop strings over streamed text. Decoded pieces arrive one token at a
// time and a stop string may straddle several of them, so the matcher holds
// back any tail that could still become a stop and releases text only once it
// can no longer start one. When a stop string completes, the text before it
// is released and the stop string and everything after it are dropped.
//
// Matching is on bytes, so multi-byte UTF-8 stops work whatever the token
// boundaries. The released text also never ends inside a UTF-8 character (an
// incomplete trailing sequence, as utf8::incomplete_tail defines it, waits for
// its continuation bytes), so a stream can be written to a terminal or an SSE
// event piece by piece.
//
// Ownership / thread-safety: a StopMatcher owns its buffers and belongs to one
// sequence; the string_views it returns point into it and stay valid until
// the next call.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace slm::engine {

class StopMatcher {
 public:
  // Empty strings in stops are ignored (they would match everywhere).
  explicit StopMatcher(std::vector<std::string> stops = {});

  // Appends a decoded piece; returns the text that is now safe to emit.
  // After a stop has matched, returns "" for every further piece.
  std::string_view feed(std::string_view piece);
  // End of generation without a stop (end-of-sequence token, length limit):
  // releases whatever is held back. Returns "" once stopped.
  std::string_view finish();

  bool stopped() const { return stopped_; }
  // The stop string that matched; empty while not stopped.
  const std::string& matched() const { return matched_; }
  const std::vector<std::string>& stops() const { return stops_; }
  // Forgets the held text and the stop, for a new generation.
  void reset();

 private:
  // Length of the longest tail of pending_ that is a proper prefix of a stop.
  size_t partial_match_tail() const;

  std::vector<std::string> stops_;
  size_t max_stop_ = 0;
  std::string pending_;  // received, not yet emitted
  std::string out_;      // what the last call released
  std::string matched_;
  bool stopped_ = false;
};

}  // namespace slm::engine
