// Dynamic activation pruning (TEAL, CATS): per layer and per projection input,
// a magnitude threshold below which an activation is zeroed for that token,
// so the weight columns it multiplies need not be read. Thresholds come from
// calibration (model/calibrate.h) and live in a small GGUF that names its
// base model by a hash of the weights; loading refuses any other model.
//
// File layout (general.type = "sparsity"):
//   sparsity.level      f32   the share of activations calibrated to be zeroed
//   sparsity.ffn_rule   str   "teal" (threshold the down-proj input) or "cats"
//                             (cut FFN rows by |act(gate)|: decoding skips
//                             down's weights for them; gate and up are
//                             computed for every row, see forward.cpp)
//   sparsity.base_hash  str   weights_hash() of the base model
//   sparsity.n_layer    u32
//   sparsity.thresholds F32 tensor [kNumTaps, n_layer]: row l = layer l's taps
//   sparsity.head_threshold f32 (optional) the threshold of the output
//                             matrix's input (the final norm's output); files
//                             without it (older ones) leave the head dense
// Thread-safety: immutable after load, shared by every session.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"

namespace slm::gguf {
class File;
}

namespace slm::model {

class Model;

// The tapped inputs of a layer: attention input (of q/k/v), o-proj input, FFN
// input (of gate/up), down-proj input, and the gate's activation |act(gate)|;
// then the model's one tap after the layers, the output matrix's input
// (kHeadIn, seen with layer = n_layer; not one of a layer's kNumTaps).
enum class Tap : uint8_t { kAttnIn, kOIn, kFfnIn, kDownIn, kGate, kHeadIn };
constexpr int kNumTaps = 5;        // per layer
std::string_view tap_name(Tap t);  // "attn_in", "o_in", "ffn_in", "down_in", "gate", "head_in"

enum class FfnRule : uint8_t { kTeal, kCats };

struct Sparsity {
  float level = 0;
  FfnRule ffn_rule = FfnRule::kTeal;
  std::string base_hash;
  std::vector<std::array<float, kNumTaps>> thresholds;  // [n_layer][tap], each >= 0
  // The output matrix's input (final-norm output [n_embd]); 0: not pruned.
  float head_threshold = 0;

  float threshold(int64_t layer, Tap t) const {
    return thresholds[static_cast<size_t>(layer)][static_cast<size_t>(t)];
  }

  // Parses a sparsity file held in bytes (name for messages). Throws
  // slm::Error "NAME: ..." naming the key or tensor on any problem.
  static Sparsity parse(std::span<const uint8_t> bytes, const std::string& name);
  static Sparsity load(const std::string& path);
  // Throws slm::Error when this file was calibrated for another model
  // (hash or layer count differs).
  void check_base(const Model& model, const std::string& name) const;
  // Writes the file atomically (temporary file renamed into place).
  void save(const std::string& path) const;
  std::vector<uint8_t> to_bytes() const;
};

// act(g) of one gate value, in scalar form (the fused backend::gated op's
// math): CATS compares |act(gate)| with its threshold.
float gate_activation(backend::Activation act, float g);

// CATS's test |act(g)| < thr decided on the pre-activation g by compares,
// not an exp per gate: SiLU and tanh-GELU rise through 0 for g > 0 and dip
// to one minimum m < 0 at g* < 0, so the cut gates are
//   (lo, hi) u (-inf, below)   with act(hi) = thr, -act(lo) = -act(below) = thr
// (lo = below = -inf when thr > -m: every negative g is cut). The ends are
// found once per threshold by bisection on gate_activation; a g within a
// band around an end (or not finite) is decided by gate_activation itself,
// so cut(g) == (|gate_activation(act, g)| < thr) for every float g.
// Immutable; thr >= 0 (0: nothing is cut).
class GateCut {
 public:
  GateCut() = default;
  GateCut(backend::Activation act, float thr);
  bool cut(float g) const {
    // Bitwise ors of 0/1 ints, not ||: no branch per test (clang warns on | of bools).
    const int near = int(!(std::fabs(g - hi_) > band_hi_)) | int(!(std::fabs(g - lo_) > band_lo_)) |
                     int(!(std::fabs(g - below_) > band_below_)) | int(!(std::fabs(g) <= kFloatMax));
    if (exact_ || near) [[unlikely]]
      return std::fabs(gate_activation(act_, g)) < thr_;
    return ((int(g > lo_) & int(g < hi_)) | int(g < below_)) != 0;
  }

 private:
  static constexpr float kFloatMax = 3.40282347e38f;
  backend::Activation act_ = backend::Activation::kSilu;
  float thr_ = 0;
  // thr 0: nothing cut (lo = hi = 0, below = -inf).
  float lo_ = 0, hi_ = 0, below_ = -kFloatMax * 2;
  float band_lo_ = 0, band_hi_ = 0, band_below_ = 0;  // about 1e-3 of each end
  bool exact_ = false;  // thr too close to -m for the bands: every g exactly
};

// The identity of a model's weights: FNV-1a 64 over every tensor's name,
// type and shape and up to 4 KiB sampled from its bytes (start, middle, end),
// as 16 hex digits. Cheap on multi-GB files; two files that differ only in
// unsampled bytes collide, which calibration mismatches rarely do.
std::string weights_hash(const gguf::File& file);

}  // namespace slm::model
