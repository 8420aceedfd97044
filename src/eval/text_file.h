// Reading evaluation text: a plain file, or a bzip2-compressed one (detected
// by its "BZh" magic, so hellaswag_val_full.txt.bz2 is read in place).
// Errors throw slm::Error naming the file.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace slm::eval {

// Decompressed output is capped at max_bytes (a bzip2 bomb is refused).
inline constexpr size_t kMaxTextBytes = size_t{1} << 30;

// The whole content of path, decompressed when it is bzip2.
std::string read_text_file(const std::string& path, size_t max_bytes = kMaxTextBytes);

// Decompresses bzip2 data held in memory (one or more concatenated streams).
// name labels errors.
std::string bunzip2(std::string_view data, const std::string& name,
                    size_t max_bytes = kMaxTextBytes);

}  // namespace slm::eval
