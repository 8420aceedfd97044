// GGUF v3 writer: metadata and tensors in insertion order, data aligned to
// general.alignment (32 unless set). Used by quantize, synth and tests.
// Not thread-safe; the writer owns copies of everything added.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "gguf/gguf.h"

namespace slm::gguf {

class Writer {
 public:
  void set_alignment(uint64_t alignment);  // power of two; also written as general.alignment

  void add_string(const std::string& key, const std::string& v);
  void add_bool(const std::string& key, bool v);
  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_u64(const std::string& key, uint64_t v);
  void add_f32(const std::string& key, float v);
  void add_strings(const std::string& key, const std::vector<std::string>& v);
  void add_f32s(const std::string& key, const std::vector<float>& v);
  void add_i32s(const std::string& key, const std::vector<int32_t>& v);
  // A value read from another file, of any type (arrays of arrays included),
  // written as it was read: lets quantize copy metadata it does not know.
  void add_value(const std::string& key, const Value& v);

  // shape: ne[0] (row length) first. data.size() must equal the type's byte size.
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape,
                  std::span<const uint8_t> data);

  // A tensor whose bytes are produced only when written, by fill(dst) with
  // dst of exactly the tensor's byte size: lets synth stream files larger
  // than memory.
  void add_tensor_lazy(const std::string& name, DType type, const std::vector<int64_t>& shape,
                       std::function<void(uint8_t* dst)> fill);

  std::vector<uint8_t> to_bytes() const;
  // Writes to path through a temporary file (path + ".tmp") renamed into
  // place: on any error, an exception from a lazy tensor's fill included, the
  // temporary file is removed and path is left as it was.
  // on_tensor, when set, is told (tensors written, total, bytes written) after each tensor.
  using Progress = std::function<void(size_t done, size_t total, uint64_t bytes)>;
  void write(const std::string& path, const Progress& on_tensor = {}) const;
  // The size write() gives the file, without producing any tensor.
  uint64_t file_size() const;

 private:
  struct Tensor {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
    uint64_t n_bytes = 0;
    std::function<void(uint8_t*)> fill;  // set for lazy tensors
  };
  std::vector<uint8_t> header_bytes(std::vector<uint64_t>& offsets) const;
  uint64_t aligned(uint64_t n) const { return (n + alignment_ - 1) / alignment_ * alignment_; }
  void begin_kv(const std::string& key, ValueType type);
  void put_value_body(const Value& v, ValueType type);
  void write_file(std::FILE* f, bool& ok, const Progress& on_tensor) const;
  uint64_t alignment_ = 32;
  uint64_t n_kv_ = 0;
  std::vector<uint8_t> kv_bytes_;  // serialized key-value pairs
  std::vector<Tensor> tensors_;
};

}  // namespace slm::gguf
