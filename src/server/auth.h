// API-key authentication. The key is never compared directly: both the
// configured key and the presented one are hashed with SHA-256 and the two
// digests compared with CRYPTO_memcmp, so the time taken depends on neither
// the key's length nor how many leading bytes match (a timing leak in vLLM's
// comparison exposed keys).
//
// Thread-safety: immutable after construction; check() may run concurrently.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace slm::server {

class ApiKeyCheck {
 public:
  // An empty key turns authentication off. Throws slm::Error if hashing fails.
  explicit ApiKeyCheck(std::string_view key);
  bool enabled() const { return enabled_; }
  // authorization: the Authorization header ("Bearer KEY"; the scheme is
  // case-insensitive). True when authentication is off or the key matches.
  bool check(std::string_view authorization) const;

 private:
  bool enabled_ = false;
  std::array<unsigned char, 32> digest_{};
};

// Reads a key file: the first line, surrounding white space removed. Throws
// slm::Error naming the file when it cannot be read or holds no key.
std::string read_key_file(const std::string& path);

// SHA-256 of data (exposed for tests).
std::array<unsigned char, 32> sha256(std::string_view data);

}  // namespace slm::server
