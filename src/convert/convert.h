// `slm convert`: a Hugging Face checkpoint folder (config.json, safetensors,
// tokenizer.json, tokenizer_config.json, generation_config.json) to a GGUF
// laid out as llama.cpp's convert_hf_to_gguf.py writes it: the family's
// tensor names (model/arch.h), q/k rows permuted back to interleaved RoPE
// pairs for llama-style models, Gemma norms as 1 + w, no output.weight when
// embeddings are tied, and the tokenizer.ggml.* metadata. Tensors are
// converted one at a time from the memory-mapped shards, so memory stays near
// the largest tensor; the output appears atomically (temporary file + rename).
#pragma once

#include <cstdint>
#include <string>

#include "base/dtype.h"

namespace slm::convert {

struct ConvertOptions {
  // Matrices and embeddings: F32, F16, BF16 or Q8_0 (rows not a multiple of
  // 32 fall back to F16, as llama.cpp does). Norms, biases and routers stay F32.
  DType type = DType::F16;
  std::string name;  // general.name; the folder's name when empty
};

struct ConvertResult {
  std::string arch;  // general.architecture written
  int64_t n_tensors = 0;
  uint64_t bytes = 0;  // size of the written file
};

// Throws slm::Error naming the file and the tensor or key; on error no output
// file is left behind.
ConvertResult convert_hf(const std::string& hf_dir, const std::string& out_path, const ConvertOptions& options);

// The Hugging Face row that GGUF row `row` of a q_proj / k_proj matrix with
// n_rows rows and n_head heads comes from: llama.cpp's permute (reshape
// [n_head, 2, head_dim / 2, n_in], swap axes 1 and 2) undoes Hugging Face's
// rotate-half order. n_rows must be a multiple of 2 * n_head.
int64_t permuted_qk_row(int64_t row, int64_t n_rows, int64_t n_head);

}  // namespace slm::convert
