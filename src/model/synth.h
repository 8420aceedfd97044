// Synthetic models: GGUF files with the exact tensor shapes, metadata and
// quantization mix of real checkpoints and random weights, so slm and
// llama.cpp can time the same file and a user can ask "how fast would this
// model run here?" before downloading gigabytes. The vocabulary is a
// synthetic SentencePiece one of the real size (byte pieces, specials, and
// made-up words), which llama.cpp also loads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/dtype.h"

namespace slm {
class ThreadPool;
}

namespace slm::model {

struct SynthShape {
  std::string name;       // "qwen2.5-0.5b"
  std::string arch;       // GGUF architecture
  int64_t n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
  float rope_base, norm_eps;
  bool tied;              // output shares token_embd
  int64_t n_expert = 0, n_expert_used = 0, n_ff_expert = 0;
  bool llama3_rope = false;  // Llama 3.x frequency scaling (written as rope_freqs.weight)
};

const std::vector<SynthShape>& synth_shapes();
// Throws slm::Error listing the known names.
const SynthShape& find_synth_shape(const std::string& name);

// "Mixes" name a quantization recipe: a plain type (every matrix of that type)
// or Q4_K_M / Q5_K_M / Q3_K_M (K-quants with some tensors one step up, as
// llama.cpp's quantize does).
std::vector<std::string> synth_mixes();

// The type a tensor gets under mix (name as in the GGUF, layer index or -1).
// K-quants need rows of a multiple of 256; narrower rows (Qwen2.5-0.5B's 896)
// fall back to a 32-block type of similar size, as llama.cpp's quantize does.
DType mix_type(const std::string& mix, const std::string& tensor, int64_t layer, int64_t n_layer,
               int64_t row_len);

// Writes the file; weights are random (deterministic for seed), quantized
// with slm's quantizers in parallel on pool. Returns the file size.
uint64_t write_synth(const SynthShape& shape, const std::string& mix, const std::string& path,
                     uint64_t seed, ThreadPool& pool);

}  // namespace slm::model
