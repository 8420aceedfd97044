// GGUF v2/v3 reader. The file is untrusted (style.md §7): every count, length,
// offset and dimension is checked against the bytes that remain, with 64-bit
// overflow checks; errors (slm::Error) name the file and the key or tensor.
//
// Ownership: a gguf::File owns its MappedFile (or borrows caller memory for
// from_memory); every string_view / pointer it hands out points into that
// memory and is valid while the File lives. Thread-safety: immutable after
// construction.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/dtype.h"
#include "base/mapped_file.h"

namespace slm::gguf {

enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
std::string_view value_type_name(ValueType t);

// One metadata value. Scalars are widened on read; arrays of numbers stay in
// the file (little-endian, possibly unaligned) and are read element by element.
struct Value {
  ValueType type = ValueType::U8;
  // scalars
  uint64_t u = 0;  // U8..U64 and BOOL
  int64_t i = 0;   // I8..I64 (also set for unsigned values that fit)
  double f = 0;    // F32/F64 (also set for every integer type)
  std::string_view str;  // STRING
  // arrays
  ValueType elem_type = ValueType::U8;
  uint64_t count = 0;
  const uint8_t* elems = nullptr;       // numeric arrays: raw element bytes
  std::vector<std::string_view> strs;   // string arrays
  std::vector<Value> items;             // arrays of arrays

  bool is_integer() const;
  bool is_float() const { return type == ValueType::F32 || type == ValueType::F64; }
  bool is_number() const { return is_integer() || is_float(); }
  // Element i of a numeric array widened to double / int64 (i < count).
  double number_at(uint64_t i) const;
  int64_t integer_at(uint64_t i) const;
};

struct KeyValue {
  std::string_view key;
  Value value;
};

struct TensorInfo {
  std::string_view name;
  DType type = DType::F32;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension
  uint64_t offset = 0;           // relative to the data section
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class File {
 public:
  // Maps and parses path. Throws slm::Error "PATH: ..." on any problem.
  static std::unique_ptr<File> open(const std::string& path);
  // Parses caller-owned bytes (tests, fuzzing); they must outlive the File.
  static std::unique_ptr<File> parse(std::span<const uint8_t> bytes, const std::string& name);

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t file_size() const { return bytes_.size(); }
  uint64_t data_offset() const { return data_offset_; }

  const std::vector<KeyValue>& metadata() const { return kvs_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const Value* find(std::string_view key) const;
  const TensorInfo* find_tensor(std::string_view name) const;

  // Typed getters. They return nullopt when the key is absent and throw
  // slm::Error naming the key when it is present with an unusable type or a
  // value out of range (a negative count, say).
  std::optional<std::string_view> get_string(std::string_view key) const;
  std::optional<uint64_t> get_uint(std::string_view key) const;  // any non-negative integer
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;  // any number
  std::optional<bool> get_bool(std::string_view key) const;
  // Arrays; element type must match (strings) or be numeric.
  std::optional<std::vector<std::string_view>> get_strings(std::string_view key) const;
  std::optional<std::vector<float>> get_floats(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_ints(std::string_view key) const;

 private:
  File() = default;
  void parse_all();

  std::string name_;
  std::unique_ptr<MappedFile> map_;
  std::span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<KeyValue> kvs_;
  std::vector<TensorInfo> tensors_;
};

}  // namespace slm::gguf
