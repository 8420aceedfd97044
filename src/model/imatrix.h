// Importance matrices: llama.cpp's llama-imatrix output, the mean squared
// activation each weight column sees on calibration text. The quantizers
// that take importance weights (kernels::quantize_row_weighted) fit each row
// to minimise the error those columns cause.
//
// Two file formats, told apart by the GGUF magic:
//  - legacy .dat: int32 n_entries, then per entry int32 name_len, the name,
//    int32 ncall, int32 nval, float[nval] (sums over ncall calls); an optional
//    trailer int32 last_call, int32 dataset_len, the dataset name;
//  - GGUF: per tensor NAME an F32 NAME.in_sum2 [ne0, n_mat] and NAME.counts
//    [1, n_mat] (n_mat: experts of a 3-D tensor, else 1).
// Either way a tensor's weights are sum / count per column (1 for a matrix
// that never saw input), ne0 * n_mat floats. The files are untrusted: every
// length is checked against the bytes left and every value must be finite and
// non-negative; errors name the file and the entry.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace slm::model {

class Imatrix {
 public:
  // Reads path (either format). Throws slm::Error "PATH: ..." on any problem.
  static Imatrix load(const std::string& path);
  // Parses bytes of either format; name is used in messages.
  static Imatrix parse(std::span<const uint8_t> bytes, const std::string& name);

  // Weights of tensor name (ne0 * n_mat floats), or nullptr when absent.
  const std::vector<float>* find(std::string_view tensor) const;
  size_t size() const { return entries_.size(); }
  const std::string& name() const { return name_; }

 private:
  static Imatrix parse_legacy(std::span<const uint8_t> bytes, const std::string& name);
  static Imatrix parse_gguf(std::span<const uint8_t> bytes, const std::string& name);
  std::string name_;
  std::map<std::string, std::vector<float>, std::less<>> entries_;
};

}  // namespace slm::model
