// Training checkpoints: everything a run needs to continue the same loss
// curve bit for bit after a stop: the trainable tensors and the optimizer's
// moments (a list of named float spans, so LoRA and full-weight training
// share it), the step counters, the run's settings and the base model's
// identity.
//
// Format: a GGUF file (the reader is bounds-checked against hostile input)
// with general.type = "checkpoint" and
//   checkpoint.version     u32, kCheckpointVersion
//   checkpoint.step        u64, optimizer steps done (the schedule position:
//                          the next step's learning rate is lr_at(step))
//   checkpoint.adam_steps  u64, AdamW's bias-correction counter
//   checkpoint.epoch       u64, the epoch (0-based) of the next step, for
//                          messages (the step index fixes the data order)
//   checkpoint.model       string, model_fingerprint() of the base
//   checkpoint.checksum    string, FNV-1a 64 of every tensor's bytes in order
//   checkpoint.setting.K   string, one per run setting that must match on
//                          resume (method, rank, lr, seed, data hash, ...)
// and one F32 tensor [n] per named span. Written through a temporary file
// renamed into place, so a crash never leaves a half-written checkpoint.
//
// Thread-safety: free functions; one caller per file.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace slm::gguf {
class File;
}

namespace slm::train {

inline constexpr uint32_t kCheckpointVersion = 1;

struct NamedSpan {
  std::string name;       // unique; at most 200 bytes
  std::span<float> data;  // saved from / restored into; its size must match on restore
};

struct CheckpointInfo {
  uint64_t step = 0;
  uint64_t adam_steps = 0;
  uint64_t epoch = 0;
  std::string model;                            // model_fingerprint()
  std::map<std::string, std::string> settings;  // key -> value, compared on resume
};

// A hash of the tensor names, types and shapes of a GGUF file and a sample of
// the bytes of each tensor (its first and last 256 bytes), as 16 hex digits:
// cheap on a multi-gigabyte file, and different for any other model.
std::string model_fingerprint(const gguf::File& file);

// FNV-1a 64 over bytes, continuing from h.
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull);
std::string hex64(uint64_t v);

// Writes info and tensors to path atomically. Throws slm::Error on I/O errors.
void save_checkpoint(const std::string& path, const CheckpointInfo& info,
                     std::span<const NamedSpan> tensors);

// Reads path, checks it against the current run and fills every span of
// tensors from it. Throws slm::Error "PATH: ..." naming the problem (not a
// checkpoint, version, checksum, a setting or the model that differs, a
// tensor missing or of another size, an extra tensor) and leaves the spans
// untouched on any error. Returns the checkpoint's info.
CheckpointInfo load_checkpoint(const std::string& path, const std::string& model,
                               const std::map<std::string, std::string>& settings,
                               std::span<const NamedSpan> tensors);

// The spans of an optimizer state: params[i] under names[i], then AdamW's
// moments m and v (mv[2 i], mv[2 i + 1], resized to the params' sizes when
// empty) under "adam_m." / "adam_v." + names[i].
std::vector<NamedSpan> optimizer_spans(const std::vector<std::string>& names,
                                       std::span<const std::span<float>> params,
                                       std::vector<std::vector<float>>& mv);

}  // namespace slm::train
