// The one error type of slm's loading, parsing and request paths (style.md §8).
// Front ends catch it and print what() as a single line; nothing below them
// exits or aborts on bad input. Kernels never throw.
#pragma once

#include <stdexcept>
#include <string>

namespace slm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace slm
