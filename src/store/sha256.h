// Incremental SHA-256 over OpenSSL's EVP interface, for checking downloads
// against the digest the hub publishes.
// Ownership: owns its EVP context. Thread-safety: one thread per object.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace slm::store {

class Sha256 {
 public:
  Sha256();  // throws slm::Error if OpenSSL cannot provide SHA-256
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t n);
  // Lower-case hex digest of everything fed so far; the object is then reset.
  std::string hex_digest();
  void reset();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// SHA-256 of a whole file, lower-case hex. Throws slm::Error naming the path.
std::string sha256_file(const std::string& path);
// True for exactly 64 hex digits (either case).
bool is_sha256_hex(std::string_view s);

}  // namespace slm::store
