// Calibration of activation-pruning thresholds (model/sparsity.h): run the
// model over a text and record, per layer and tap, the magnitude below which
// the requested share of activations falls (TEAL: the |x| quantile; CATS: the
// |act(gate)| quantile). Lives beside the forward pass and sees it only
// through its ActivationTap; kernels are not involved.
#pragma once

#include <cstdint>
#include <span>

#include "model/sparsity.h"

namespace slm {
class ThreadPool;
}

namespace slm::model {

class Model;

struct CalibrateOptions {
  float sparsity = 0.5f;  // share of activations to zero, in [0, 1)
  FfnRule ffn_rule = FfnRule::kTeal;
  // Share of the output matrix's inputs (final-norm output) to zero, in
  // [0, 1); 0 leaves the head dense (Sparsity::head_threshold = 0).
  float head_sparsity = 0;
  int64_t n_ctx = 512;  // tokens per chunk; each chunk starts a fresh context
  // Without it, n_ctx is capped at the model's training context (the
  // positions the model will be used at); with it, n_ctx is used as given.
  bool allow_beyond_train_ctx = false;
};

// Thresholds of model over tokens (at least one). Quantiles come from
// log-spaced histograms (64 bins per octave: about 1% relative error in a
// threshold), so memory does not grow with the text.
Sparsity calibrate(const Model& model, std::span<const int32_t> tokens,
                   const CalibrateOptions& options, ThreadPool& pool);

// The value below which a share q of the magnitudes counted in hist falls,
// hist as calibrate() bins them (exposed for tests).
class MagnitudeHistogram {
 public:
  MagnitudeHistogram();
  void add(float magnitude);
  double quantile(double q) const;
  uint64_t count() const { return total_; }

 private:
  std::vector<uint64_t> bins_;  // [0]: exact zeros and below the range; then log-spaced
  uint64_t total_ = 0;
};

}  // namespace slm::model
