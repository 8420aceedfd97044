// LoRA adapters at inference: W x + scale * B (A x) for the matrices an
// adapter names, per sequence, without touching (or copying) the base
// weights. The files are GGUF in llama.cpp's LoRA layout:
//   general.type = "adapter", adapter.type = "lora", adapter.lora.alpha (f32),
//   general.architecture equal to the base's, and for each adapted matrix
//   "<name>.weight.lora_a" ne [n_in, r] and "<name>.weight.lora_b" ne [r, n_out];
//   for a mixture-of-experts stack "blk.N.ffn_{gate,up,down}_exps.weight"
//   (ne [n_in, n_out, n_expert]) a pair per expert stacked the same way:
//   lora_a ne [n_in, r, n_expert], lora_b ne [r, n_out, n_expert] (what
//   llama.cpp's mul_mat_id path applies to *_exps tensors).
// Several files (each with its own user scale) load into one LoraAdapter: per
// matrix their A rows are stacked and their B columns concatenated with the
// scale s * alpha / r folded in, so any number of adapters costs two small
// products per matrix.
//
// Ownership: a LoraAdapter owns its F16 copies of A and B and refers to
// the base Model's Linear objects by address (a Model is immutable after
// load), so it must not outlive the model. Thread-safety: immutable, shared
// by every sequence that uses it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"

namespace slm::model {

class Model;

struct LoraFile {
  std::string path;
  float scale = 1.0f;  // the user's multiplier (llama.cpp's --lora-scaled)
};

// "PATH" or "PATH:SCALE" (the last ':' when what follows is a number).
LoraFile parse_lora_argument(const std::string& arg);

// The low-rank pair of one base matrix is a backend::LoraFactors: delta
// y [n][n_out] = B (A x), kept in F16 with B transposed so the expand step
// runs along y's rows (backend lora()).

class LoraAdapter {
 public:
  // Reads, validates against base and combines files. Throws slm::Error
  // naming the file and the key or tensor: wrong type or architecture, a
  // tensor without its pair, shapes that disagree with the base matrix, a
  // target slm cannot adapt (embeddings, output), non-finite values.
  // type: how the factors are kept (backend::LoraType): F16 (the default;
  // the delta is the file's up to F16 rounding) or 8-bit groups with a float
  // scale each (kernels.h LoraQ8Kernels: half the bytes, which is most of a
  // decoding step's extra time with several adapters, for about 0.5% rms
  // error on each factor value).
  static std::shared_ptr<const LoraAdapter> load(const Model& base,
                                                 const std::vector<LoraFile>& files,
                                                 backend::LoraType type = backend::LoraType::kF16);
  // Builds from pairs already in memory: name -> (A [r][n_in], B [n_out][r]),
  // scale folded into nothing (tests, adapter import).
  struct Tensors {
    std::string name;  // base matrix name, e.g. "blk.0.attn_q.weight"
    int64_t rank = 0;
    std::vector<float> a, b;  // [rank][n_in], [n_out][rank] (each n_expert times for a stack)
    float scale = 1.0f;       // multiplies b
    // 0: one matrix. Else an expert stack "blk.N.ffn_*_exps.weight" (the
    // GGUF lora_a ne [n_in, r, n_expert], lora_b ne [r, n_out, n_expert]):
    // a and b hold n_expert pairs one after the other.
    int64_t n_expert = 0;
  };
  static std::shared_ptr<const LoraAdapter> from_tensors(
      const Model& base, std::vector<Tensors> tensors, std::string label,
      backend::LoraType type = backend::LoraType::kF16);

  // The factors for a base matrix, or nullptr when this adapter leaves it alone.
  const backend::LoraFactors* find(const backend::Linear* w) const {
    const auto it = pairs_.find(w);
    return it == pairs_.end() ? nullptr : &it->second.f;
  }
  // Distinct for every adapter made in this process: the KV-cache key of the
  // sequences that use it (prefixes are never shared across adapters).
  uint64_t id() const { return id_; }
  const std::string& label() const { return label_; }
  int64_t max_rank() const { return max_rank_; }
  int64_t max_rows() const { return max_rows_; }
  size_t n_matrices() const { return pairs_.size(); }
  // Every adapted base matrix with its factors, in no particular order
  // (merging reads the F16 values, which are exactly what the run-time delta
  // applies).
  std::vector<std::pair<const backend::Linear*, const backend::LoraFactors*>> matrices() const {
    std::vector<std::pair<const backend::Linear*, const backend::LoraFactors*>> out;
    for (const auto& [w, o] : pairs_) out.emplace_back(w, &o.f);
    return out;
  }

 private:
  struct Owned {
    std::vector<uint16_t> a, bt;  // F16 [r][n_in] and B^T in column blocks, rows normalised
    std::vector<float> scale;     // [r]
    std::vector<int8_t> a8, bt8;  // or 8-bit (LoraType::kQ8), the same layouts
    std::vector<float> a8_scale, bt8_scale;  // their groups' scales
    backend::LoraFactors f;                  // views of the three
  };
  LoraAdapter() = default;
  static std::shared_ptr<const LoraAdapter> build(const Model& base, std::vector<Tensors> tensors,
                                                  std::string label, backend::LoraType type);

  std::unordered_map<const backend::Linear*, Owned> pairs_;
  uint64_t id_ = 0;
  std::string label_;
  int64_t max_rank_ = 0, max_rows_ = 0;
};

}  // namespace slm::model
