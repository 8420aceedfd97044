// Quantizing a GGUF model file (`slm quantize`): every tensor is read from
// the memory-mapped input, converted to the type its quantization mix gives
// it (model/quant_mix.h, llama.cpp's rules) and streamed to the output one
// tensor at a time, rows split over a thread pool. Metadata is copied with
// general.file_type set to the mix's llama_ftype and
// general.quantization_version = 2; tensor order and alignment are kept. The
// output appears only when complete (temporary file renamed into place).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/dtype.h"

namespace slm {
class ThreadPool;
}
namespace slm::gguf {
class File;
}

namespace slm::model {

class Imatrix;

struct QuantizeOptions {
  std::string type;                  // a mix name (quant_mix.h): "Q4_K_M", "Q8_0", "F16"...
  bool pure = false;                 // every matrix of the base type (llama-quantize --pure)
  bool allow_requantize = false;     // quantized inputs may be dequantized and quantized again
  const Imatrix* imatrix = nullptr;  // importance weights for the quantizers that take them
  const std::atomic<bool>* cancel = nullptr;  // when it turns true the run stops and throws
};

// What happens to one tensor, in file order.
struct QuantizeStep {
  std::string name;
  std::vector<int64_t> shape;  // ne[0] first
  DType from = DType::F32, to = DType::F32;
  const std::vector<float>* importance = nullptr;  // imatrix weights used (ne0 * n_mat), or null
  uint64_t bytes_in = 0, bytes_out = 0;
};

// The steps for in under options: throws slm::Error for an unknown type, a
// quantized tensor to convert without allow_requantize, a type slm cannot
// read or write, or imatrix weights of the wrong size (naming the tensor).
std::vector<QuantizeStep> plan_quantize(const gguf::File& in, const QuantizeOptions& options);

struct QuantizeResult {
  uint64_t bytes_in = 0, bytes_out = 0;  // file sizes
  int64_t n_tensors = 0, n_converted = 0, n_weighted = 0;
};

// Quantizes in_path into out_path. on_step sees each step once its tensor is
// converted (index, count). Throws slm::Error; out_path is then untouched.
using QuantizeProgress =
    std::function<void(int64_t index, int64_t count, const QuantizeStep& step)>;
QuantizeResult quantize_file(const std::string& in_path, const std::string& out_path,
                             const QuantizeOptions& options, ThreadPool& pool,
                             const QuantizeProgress& on_step = {});

}  // namespace slm::model
