#include "model/calibrate.h"

#include <cmath>
#include <vector>

#include "base/error.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/session.h"

namespace slm::model {
namespace {

// log2 range [-40, 24) in 64 steps per octave.
constexpr int kMinExp = -40, kMaxExp = 24, kPerOctave = 64;
constexpr int kBins = (kMaxExp - kMinExp) * kPerOctave + 2;  // + zero bin + overflow bin

// Every tapped activation of every step, binned by magnitude per layer and tap.
class Collector final : public ActivationTap {
 public:
  // One histogram per layer and tap, then the head's (Tap::kHeadIn).
  Collector(int64_t n_layer, backend::Activation act)
      : hist_(static_cast<size_t>(n_layer * kNumTaps + 1)), n_layer_(n_layer), act_(act) {}
  void on_activation(int64_t layer, Tap t, const float* x, int64_t n_rows, int64_t width) override {
    MagnitudeHistogram& h = hist(layer, t);
    for (int64_t i = 0; i < n_rows * width; ++i)
      h.add(std::fabs(t == Tap::kGate ? gate_activation(act_, x[i]) : x[i]));
  }
  MagnitudeHistogram& hist(int64_t layer, Tap t) {
    if (t == Tap::kHeadIn) return hist_.back();
    return hist_[static_cast<size_t>(layer * kNumTaps + static_cast<int>(t))];
  }
  MagnitudeHistogram& head() { return hist(n_layer_, Tap::kHeadIn); }

 private:
  std::vector<MagnitudeHistogram> hist_;  // [layer][tap], then the head's
  int64_t n_layer_;
  backend::Activation act_;
};

}  // namespace

MagnitudeHistogram::MagnitudeHistogram() : bins_(kBins, 0) {}

void MagnitudeHistogram::add(float m) {
  ++total_;
  if (!(m > 0)) {  // zero (and NaN, which no threshold can cut)
    ++bins_[0];
    return;
  }
  const double b = (std::log2(static_cast<double>(m)) - kMinExp) * kPerOctave;
  if (b < 0) {
    ++bins_[0];
    return;
  }
  const size_t i = b >= kBins - 2 ? kBins - 1 : static_cast<size_t>(b) + 1;
  ++bins_[i];
}

double MagnitudeHistogram::quantile(double q) const {
  // The threshold t such that a share q of the values is below t: the upper
  // edge of the bin where the cumulative count reaches q * total.
  if (total_ == 0 || q <= 0) return 0;
  const double want = q * static_cast<double>(total_);
  double cum = 0;
  for (size_t i = 0; i < bins_.size(); ++i) {
    cum += static_cast<double>(bins_[i]);
    if (cum >= want) {
      if (i == 0) return 0;  // most values are exact zeros: nothing to cut above them
      const double upper = static_cast<double>(i) / kPerOctave + kMinExp;
      return std::exp2(upper);
    }
  }
  return std::exp2(static_cast<double>(kMaxExp));
}

Sparsity calibrate(const Model& model, std::span<const int32_t> tokens, const CalibrateOptions& o,
                   ThreadPool& pool) {
  const ModelConfig& c = model.config();
  if (tokens.empty()) throw Error("calibration text has no tokens");
  if (!(o.sparsity >= 0 && o.sparsity < 1)) throw Error("sparsity must be in [0, 1)");
  if (!(o.head_sparsity >= 0 && o.head_sparsity < 1))
    throw Error("head sparsity must be in [0, 1)");
  if (model.prune().sparsity) throw Error("internal: calibrate a model without a sparsity file");
  Collector col(c.n_layer, c.ffn_act);
  SessionOptions so;
  const bool cap = c.n_ctx_train > 0 && !o.allow_beyond_train_ctx;
  so.n_ctx = std::max<int64_t>(2, cap ? std::min<int64_t>(o.n_ctx, c.n_ctx_train) : o.n_ctx);
  so.allow_beyond_train_ctx = o.allow_beyond_train_ctx;
  so.n_batch = std::min<int64_t>(so.n_ctx, 256);
  Session session(model, so);
  Scratch scratch(c, so.n_batch);
  scratch.set_tap(&col);
  for (size_t at = 0; at < tokens.size();) {
    session.reset();
    const size_t end = std::min(tokens.size(), at + static_cast<size_t>(so.n_ctx));
    for (size_t p = at; p < end;) {
      const size_t m = std::min(end - p, static_cast<size_t>(so.n_batch));
      const std::span<const int32_t> part = tokens.subspan(p, m);
      session.check_tokens(part);
      const SeqChunk chunk{&session, part, nullptr, false, nullptr, nullptr};
      forward(model, std::span<const SeqChunk>(&chunk, 1), scratch, pool);
      p += m;
    }
    at = end;
  }
  Sparsity s;
  s.level = o.sparsity;
  s.ffn_rule = o.ffn_rule;
  s.base_hash = weights_hash(model.file());
  s.thresholds.resize(static_cast<size_t>(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l)
    for (int k = 0; k < kNumTaps; ++k) {
      const Tap t = static_cast<Tap>(k);
      const MagnitudeHistogram& h = col.hist(l, t);
      // MoE layers have no dense FFN: their FFN taps stay 0 (never pruned).
      s.thresholds[static_cast<size_t>(l)][static_cast<size_t>(k)] =
          h.count() == 0 ? 0.0f : static_cast<float>(h.quantile(o.sparsity));
    }
  if (o.head_sparsity > 0)
    s.head_threshold = static_cast<float>(col.head().quantile(o.head_sparsity));
  return s;
}

}  // namespace slm::model
