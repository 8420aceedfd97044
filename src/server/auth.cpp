#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <fstream>

#include "base/error.h"

namespace slm::server {

std::array<unsigned char, 32> sha256(std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &n, EVP_sha256(), nullptr) != 1 ||
      n != out.size())
    throw Error("SHA-256 is not available from OpenSSL");
  return out;
}

ApiKeyCheck::ApiKeyCheck(std::string_view key) : enabled_(!key.empty()) {
  if (enabled_) digest_ = sha256(key);
}

bool ApiKeyCheck::check(std::string_view authorization) const {
  if (!enabled_) return true;
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() < kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = authorization[i];
    if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) != kScheme[i]) return false;
  }
  std::string_view presented = authorization.substr(kScheme.size());
  while (!presented.empty() && presented.front() == ' ') presented.remove_prefix(1);
  while (!presented.empty() && presented.back() == ' ') presented.remove_suffix(1);
  const std::array<unsigned char, 32> got = sha256(presented);
  return CRYPTO_memcmp(got.data(), digest_.data(), got.size()) == 0;
}

std::string read_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot read the API key file " + path);
  std::string line;
  std::getline(in, line);
  const size_t b = line.find_first_not_of(" \t\r\n");
  const size_t e = line.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) throw Error("the API key file " + path + " is empty");
  return line.substr(b, e - b + 1);
}

}  // namespace slm::server
