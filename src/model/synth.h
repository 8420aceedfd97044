// Synthetic models: GGUF files with the exact tensor shapes, metadata and
// quantization mix of real checkpoints and random weights, so slm and
// llama.cpp can time the same file and a user can ask "how fast would this
// model run here?" before downloading gigabytes. The vocabulary is a
// synthetic SentencePiece one of the real size (byte pieces, specials, and
// made-up words), which llama.cpp also loads.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "gguf/writer.h"

namespace slm {
class ThreadPool;
}

namespace slm::model {

// Llama 3.x RoPE frequency scaling, as metadata keys or (as llama.cpp's
// converter writes it) as a rope_freqs.weight tensor of divisors.
struct SynthRopeScaling {
  std::string type;  // "": none; "linear" or "llama3"
  float factor = 1, low_freq = 1, high_freq = 4;
  int64_t orig_ctx = 8192;
  bool as_tensor = false;
};

// The shape of a model to synthesise. The tensors are those its family's
// table (arch.h) requires; output.weight unless tied.
struct SynthShape {
  std::string name;       // "qwen2.5-0.5b"
  std::string arch;       // GGUF architecture
  int64_t n_layer, n_embd, n_head, n_head_kv;
  int64_t head_dim;       // 0: n_embd / n_head, and no key_length key is written
  int64_t n_ff, n_vocab, n_ctx;
  float rope_base, norm_eps;
  bool tied;              // output shares token_embd
  int64_t n_expert = 0, n_expert_used = 0, n_ff_expert = 0;
  SynthRopeScaling rope_scaling = {};
  int64_t n_swa = 0;          // attention.sliding_window (0: none)
  float attn_softcap = 0.0f;  // attn_logit_softcapping (0: none)
  float final_softcap = 0.0f; // final_logit_softcapping (0: none)
};

const std::vector<SynthShape>& synth_shapes();
// Throws slm::Error listing the known names.
const SynthShape& find_synth_shape(const std::string& name);

// Quantization mixes (model/quant_mix.h): a plain type or a llama.cpp mix
// such as Q4_K_M, with the same per-tensor types as `slm quantize` gives.
std::vector<std::string> synth_mixes();

// Writes the file; weights are random (deterministic for seed; each tensor
// initialised as its table entry's Init says), quantized with slm's
// quantizers in parallel on pool. Returns the file size.
uint64_t write_synth(const SynthShape& shape, const std::string& mix, const std::string& path,
                     uint64_t seed, ThreadPool& pool, const gguf::Writer::Progress& on_tensor = {});
// The size write_synth would give the file (no weights are made).
uint64_t synth_file_size(const SynthShape& shape, const std::string& mix);

// The same file in memory. on_values, when set, sees every tensor's float
// values (row-major [ne1][ne0]) before quantization: the tests' float64
// forward pass runs on them.
using SynthValues = std::function<void(const std::string& name, std::span<const float> values)>;
std::vector<uint8_t> synth_bytes(const SynthShape& shape, const std::string& mix, uint64_t seed, ThreadPool& pool,
                                 const SynthValues& on_values = {});

}  // namespace slm::model
