// Merging LoRA adapters into a base model (`slm merge`): every adapted matrix
// becomes W + sum over adapters of s * (alpha / r) * B A, computed in double
// from the adapter's F16 factors (exactly the delta run-time --lora applies),
// added to the dequantized weight in float and quantized again, to its own type or to one type
// for every merged matrix; every other tensor is copied byte for byte, and the
// metadata is copied (general.file_type follows an explicit type). Fused
// tensors (Phi-3's attn_qkv) take each part's delta at its rows, expert
// stacks (*_exps) each expert's delta at its slice. The output
// appears only when complete (temporary file renamed into place).
//
// Thread-safety: reads the immutable model and adapter; rows are spread over
// the pool.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/dtype.h"

namespace slm {
class ThreadPool;
}

namespace slm::model {

class Model;
class LoraAdapter;

struct MergeOptions {
  std::optional<DType> type;  // the type of every merged matrix; default: each keeps its own
};

struct MergeResult {
  int64_t n_tensors = 0;  // in the output
  int64_t n_merged = 0;   // tensors that took a delta
};

// Writes base + adapter to out_path. Throws slm::Error naming the tensor when
// a merged matrix cannot be read or written in the type asked for (out_path
// is then untouched).
MergeResult merge_lora(const Model& base, const LoraAdapter& adapter, const std::string& out_path,
                       const MergeOptions& options, ThreadPool& pool);

}  // namespace slm::model
