#include "model/imatrix.h"

#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/mapped_file.h"
#include "gguf/gguf.h"

namespace slm::model {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian

// Bounds-checked reads of the legacy format; errors say which entry.
class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}
  size_t remaining() const { return bytes_.size() - pos_; }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(name_ + ": " + what + " (at byte " + std::to_string(pos_) + ")");
  }
  const uint8_t* take(size_t n, const std::string& what) {
    if (n > remaining()) fail("truncated imatrix: " + what + " runs past the end");
    const uint8_t* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  int32_t i32(const std::string& what) {
    int32_t v;
    std::memcpy(&v, take(4, what), 4);
    return v;
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& name_;
  size_t pos_ = 0;
};

void check_values(const std::vector<float>& v, const std::string& file, const std::string& entry) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]) || v[i] < 0)
      throw Error(file + ": imatrix entry '" + entry + "': value " + std::to_string(i) +
                  " is not a finite non-negative number");
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

Imatrix Imatrix::load(const std::string& path) {
  const MappedFile file(path);
  return parse(file.bytes(), path);
}

Imatrix Imatrix::parse(std::span<const uint8_t> bytes, const std::string& name) {
  uint32_t magic = 0;
  if (bytes.size() >= 4) std::memcpy(&magic, bytes.data(), 4);
  return magic == kGgufMagic ? parse_gguf(bytes, name) : parse_legacy(bytes, name);
}

const std::vector<float>* Imatrix::find(std::string_view tensor) const {
  const auto it = entries_.find(tensor);
  return it == entries_.end() ? nullptr : &it->second;
}

Imatrix Imatrix::parse_legacy(std::span<const uint8_t> bytes, const std::string& name) {
  Imatrix m;
  m.name_ = name;
  Reader r(bytes, name);
  const int32_t n_entries = r.i32("the entry count");
  if (n_entries < 1) r.fail("imatrix has no entries (count " + std::to_string(n_entries) + ")");
  // Each entry takes at least 16 bytes: a hostile count fails here, not after a huge loop.
  if (static_cast<uint64_t>(n_entries) * 16 > r.remaining())
    r.fail("truncated imatrix: " + std::to_string(n_entries) + " entries cannot fit in " +
           std::to_string(r.remaining()) + " bytes");
  for (int32_t e = 0; e < n_entries; ++e) {
    const std::string which = "entry " + std::to_string(e);
    const int32_t len = r.i32(which + " name length");
    if (len < 1 || static_cast<size_t>(len) > r.remaining())
      r.fail(which + ": bad name length " + std::to_string(len));
    const uint8_t* p = r.take(static_cast<size_t>(len), which + " name");
    std::string entry(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
    const std::string where = which + " '" + entry + "'";
    const int32_t ncall = r.i32(where + " call count");
    const int32_t nval = r.i32(where + " value count");
    if (ncall < 0) r.fail(where + ": negative call count " + std::to_string(ncall));
    if (nval < 1) r.fail(where + ": bad value count " + std::to_string(nval));
    const uint8_t* v = r.take(static_cast<size_t>(nval) * 4, where + " values");
    std::vector<float> values(static_cast<size_t>(nval));
    std::memcpy(values.data(), v, values.size() * 4);
    if (ncall > 0)
      for (float& x : values) x /= static_cast<float>(ncall);
    check_values(values, name, entry);
    if (!m.entries_.emplace(entry, std::move(values)).second) r.fail(where + ": duplicate entry");
  }
  // Newer files end with the last call number and the dataset's name.
  if (r.remaining() > 0) {
    r.i32("the trailer's call number");
    const int32_t len = r.i32("the trailer's dataset name length");
    if (len < 0 || static_cast<size_t>(len) != r.remaining())
      r.fail("bad trailer: dataset name length " + std::to_string(len) + " with " +
             std::to_string(r.remaining()) + " bytes left");
  }
  return m;
}

Imatrix Imatrix::parse_gguf(std::span<const uint8_t> bytes, const std::string& name) {
  const auto file = gguf::File::parse(bytes, name);
  Imatrix m;
  m.name_ = name;
  struct Pair {
    const gguf::TensorInfo* sums = nullptr;
    const gguf::TensorInfo* counts = nullptr;
  };
  std::map<std::string, Pair> pairs;
  for (const gguf::TensorInfo& t : file->tensors()) {
    if (ends_with(t.name, ".in_sum2"))
      pairs[std::string(t.name.substr(0, t.name.size() - 8))].sums = &t;
    else if (ends_with(t.name, ".counts"))
      pairs[std::string(t.name.substr(0, t.name.size() - 7))].counts = &t;
  }
  if (pairs.empty()) throw Error(name + ": no imatrix entries (no *.in_sum2 / *.counts tensors)");
  for (const auto& [entry, p] : pairs) {
    const std::string where = name + ": imatrix entry '" + entry + "'";
    if (p.sums == nullptr || p.counts == nullptr)
      throw Error(where + ": has sums or counts but not both");
    if (p.sums->type != DType::F32 || p.counts->type != DType::F32)
      throw Error(where + ": sums and counts must be F32");
    const int64_t ne0 = p.sums->ne[0];
    const int64_t n_mat = p.sums->n_elements() / ne0;
    if (p.counts->n_elements() != n_mat)
      throw Error(where + ": " + std::to_string(p.counts->n_elements()) + " counts for " +
                  std::to_string(n_mat) + " matrices");
    std::vector<float> values(static_cast<size_t>(ne0 * n_mat));
    for (int64_t j = 0; j < n_mat; ++j) {
      float count;
      std::memcpy(&count, p.counts->data + j * 4, 4);
      if (!std::isfinite(count) || count < 0)
        throw Error(where + ": count " + std::to_string(j) + " is invalid");
      for (int64_t i = 0; i < ne0; ++i) {
        float sum;
        std::memcpy(&sum, p.sums->data + (j * ne0 + i) * 4, 4);
        values[j * ne0 + i] = count > 0 ? sum / count : 1.0f;  // a matrix that never saw input
      }
    }
    check_values(values, name, entry);
    m.entries_.emplace(entry, std::move(values));
  }
  return m;
}

}  // namespace slm::model
