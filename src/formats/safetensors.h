// Reader of Hugging Face safetensors files: an 8-byte little-endian header
// length, a JSON header {"NAME": {"dtype", "shape", "data_offsets": [begin,
// end]}, "__metadata__": {string: string}}, then the tensor bytes. The file is
// untrusted (style.md §7): the header length is bounded by the file, every
// dtype must be known, shape product * element size must equal the byte
// range, ranges must lie inside the data section and must not overlap, and all
// arithmetic is overflow-checked. Errors are slm::Error naming the file and
// the tensor. Used by `slm convert` (and adapter import).
// Thread-safety: immutable after construction.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/mapped_file.h"

namespace slm::formats {

enum class StDType : uint8_t { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32" -> kF32; nullopt for a name the format does not define (or slm does not know).
std::optional<StDType> st_dtype_from_name(std::string_view name);
std::string_view st_dtype_name(StDType t);
int64_t st_dtype_size(StDType t);  // bytes per element
// F32, F16 and BF16: the types a model's weights come in.
bool st_is_float(StDType t);

struct StTensor {
  std::string name;
  StDType dtype = StDType::kF32;
  std::vector<int64_t> shape;  // row-major, as PyTorch: shape.back() varies fastest
  int64_t n_elements = 0;
  std::span<const uint8_t> data;  // view into the file (or the parsed bytes)
};

class Safetensors {
 public:
  // Maps and parses path. Throws slm::Error "PATH: ..." on any problem.
  static std::unique_ptr<Safetensors> open(const std::string& path);
  // Parses caller-owned bytes (tests, fuzzing); they must outlive the result.
  static std::unique_ptr<Safetensors> parse(std::span<const uint8_t> bytes, const std::string& name);

  const std::string& name() const { return name_; }
  // In file order (by data offset).
  const std::vector<StTensor>& tensors() const { return tensors_; }
  const StTensor* find(std::string_view tensor) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  Safetensors() = default;
  void parse_all();

  std::string name_;
  std::unique_ptr<MappedFile> map_;
  std::span<const uint8_t> bytes_;
  std::vector<StTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Converts n elements of a float tensor (F32, F16 or BF16) starting at element
// `first` to float. The caller checks st_is_float and the range.
void st_to_float(const StTensor& t, int64_t first, int64_t n, float* dst);

}  // namespace slm::formats
