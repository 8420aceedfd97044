#include "model/sparsity.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "base/error.h"
#include "base/mapped_file.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "model/model.h"

namespace slm::model {
namespace {

constexpr const char* kThresholds = "sparsity.thresholds";
constexpr const char* kHeadThreshold = "sparsity.head_threshold";
constexpr int64_t kMaxLayers = 1 << 16;

struct Fnv {
  uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
  void add_u64(uint64_t v) { add(&v, sizeof v); }
};

}  // namespace

std::string_view tap_name(Tap t) {
  switch (t) {
    case Tap::kAttnIn:
      return "attn_in";
    case Tap::kOIn:
      return "o_in";
    case Tap::kFfnIn:
      return "ffn_in";
    case Tap::kDownIn:
      return "down_in";
    case Tap::kGate:
      return "gate";
    case Tap::kHeadIn:
      return "head_in";
  }
  return "?";
}

float gate_activation(backend::Activation act, float g) {
  if (act == backend::Activation::kSilu) return g / (1.0f + std::exp(-g));
  constexpr float kC = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * g * (1.0f + std::tanh(kC * (g + 0.044715f * g * g * g)));
}

GateCut::GateCut(backend::Activation act, float thr) : act_(act), thr_(thr) {
  if (!(thr > 0)) return;
  const double t = thr;
  auto f = [&](double g) {
    return static_cast<double>(gate_activation(act, static_cast<float>(g)));
  };
  auto cut_at = [&](double g) { return std::fabs(f(g)) < t; };
  // The boundary between a (where holds) and b (where it does not), to the
  // last double bisection step.
  auto edge = [](double a, double b, auto holds) {
    for (int i = 0; i < 200; ++i) {
      const double m = 0.5 * (a + b);
      if (m == a || m == b) break;
      (holds(m) ? a : b) = m;
    }
    return 0.5 * (a + b);
  };
  // hi: act rises through thr for g > 0 (act(g) > g - 0.3, so above thr at thr + 1).
  const double hi = edge(0.0, t + 1.0, cut_at);
  // The negative dip's bottom g* (SiLU -0.278 at -1.28, tanh-GELU -0.170 at
  // -0.75) by ternary search: act falls, then rises, on [-5, 0].
  double a = -5, b = 0;
  for (int i = 0; i < 200; ++i) {
    const double m1 = a + (b - a) / 3, m2 = b - (b - a) / 3;
    if (f(m1) < f(m2))
      b = m2;
    else
      a = m1;
  }
  const double g_star = 0.5 * (a + b), depth = -f(g_star);
  auto band = [](double e) { return static_cast<float>(1e-3 * std::fabs(e)); };
  hi_ = static_cast<float>(hi);
  band_hi_ = band(hi);
  if (thr >= depth * (1 + 1e-3)) {  // every negative g is cut
    lo_ = -kFloatMax * 2;
    return;
  }
  if (thr > depth * (1 - 1e-3)) {  // the ends meet at g*, where act is flat
    exact_ = true;
    return;
  }
  // |act| falls below thr again toward 0 (lo) and toward -inf (below); act is
  // exactly 0 far enough down (exp overflows, tanh saturates).
  const double lo = edge(g_star, 0.0, [&](double g) { return !cut_at(g); });
  const double below = edge(g_star, -200.0, [&](double g) { return !cut_at(g); });
  lo_ = static_cast<float>(lo);
  below_ = static_cast<float>(below);
  band_lo_ = band(lo);
  band_below_ = band(below);
}

std::string weights_hash(const gguf::File& file) {
  Fnv f;
  constexpr uint64_t kSample = 1024;
  for (const gguf::TensorInfo& t : file.tensors()) {
    f.add(t.name.data(), t.name.size());
    f.add_u64(static_cast<uint64_t>(t.type));
    for (const int64_t d : t.ne) f.add_u64(static_cast<uint64_t>(d));
    if (t.data == nullptr || t.n_bytes == 0) continue;
    // Start, middle and end of the tensor's bytes (n_bytes is checked against
    // the file by the GGUF parser).
    const uint64_t n = std::min(kSample, t.n_bytes);
    f.add(t.data, n);
    f.add(t.data + (t.n_bytes - n) / 2, n);
    f.add(t.data + t.n_bytes - n, n);
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(f.h));
  return buf;
}

Sparsity Sparsity::parse(std::span<const uint8_t> bytes, const std::string& name) {
  const auto file = gguf::File::parse(bytes, name);
  auto fail = [&](const std::string& what) -> Error { return Error(name + ": " + what); };
  const auto type = file->get_string("general.type");
  if (!type || *type != "sparsity")
    throw fail(
        "not a sparsity file (general.type is not \"sparsity\"; make one with `slm prune "
        "calibrate`)");
  Sparsity s;
  const auto level = file->get_float("sparsity.level");
  if (!level || !(*level >= 0 && *level < 1))
    throw fail("key 'sparsity.level' must be a number in [0, 1)");
  s.level = static_cast<float>(*level);
  const auto rule = file->get_string("sparsity.ffn_rule");
  if (!rule || (*rule != "teal" && *rule != "cats"))
    throw fail("key 'sparsity.ffn_rule' must be \"teal\" or \"cats\"");
  s.ffn_rule = *rule == "cats" ? FfnRule::kCats : FfnRule::kTeal;
  const auto hash = file->get_string("sparsity.base_hash");
  if (!hash || hash->size() != 16) throw fail("key 'sparsity.base_hash' must be 16 hex digits");
  s.base_hash = std::string(*hash);
  const auto n_layer = file->get_uint("sparsity.n_layer");
  if (!n_layer || *n_layer == 0 || *n_layer > static_cast<uint64_t>(kMaxLayers))
    throw fail("key 'sparsity.n_layer' must be in [1, " + std::to_string(kMaxLayers) + "]");
  const gguf::TensorInfo* t = file->find_tensor(kThresholds);
  if (t == nullptr) throw fail(std::string("tensor '") + kThresholds + "' is missing");
  if (t->type != DType::F32 || t->n_dims != 2 || t->ne[0] != kNumTaps ||
      t->ne[1] != static_cast<int64_t>(*n_layer))
    throw fail(std::string("tensor '") + kThresholds + "' must be F32 [" +
               std::to_string(kNumTaps) + ", " + std::to_string(*n_layer) + "]");
  if (t->data == nullptr ||
      t->n_bytes != static_cast<uint64_t>(kNumTaps) * *n_layer * sizeof(float))
    throw fail(std::string("tensor '") + kThresholds + "' has the wrong byte size");
  s.thresholds.resize(*n_layer);
  std::memcpy(s.thresholds.data(), t->data, t->n_bytes);
  for (size_t l = 0; l < s.thresholds.size(); ++l)
    for (int k = 0; k < kNumTaps; ++k) {
      const float v = s.thresholds[l][static_cast<size_t>(k)];
      if (!std::isfinite(v) || v < 0)
        throw fail(std::string("tensor '") + kThresholds + "': layer " + std::to_string(l) +
                   " tap " + std::string(tap_name(static_cast<Tap>(k))) +
                   " is not a finite non-negative number");
    }
  // Optional (files calibrated before head pruning have no such key).
  if (const auto head = file->get_float(kHeadThreshold)) {
    if (!std::isfinite(*head) || *head < 0 || *head > std::numeric_limits<float>::max())
      throw fail(std::string("key '") + kHeadThreshold + "' must be a finite non-negative number");
    s.head_threshold = static_cast<float>(*head);
  }
  return s;
}

Sparsity Sparsity::load(const std::string& path) {
  const MappedFile file(path);
  return parse(file.bytes(), path);
}

void Sparsity::check_base(const Model& model, const std::string& name) const {
  if (static_cast<int64_t>(thresholds.size()) != model.config().n_layer)
    throw Error(name + ": calibrated for " + std::to_string(thresholds.size()) +
                " layers, the model has " + std::to_string(model.config().n_layer));
  const std::string h = weights_hash(model.file());
  if (h != base_hash)
    throw Error(name + ": calibrated for another model (weights hash " + base_hash + ", " +
                model.file().name() + " has " + h + "); calibrate it with `slm prune calibrate`");
}

// The file's writer: keys, then the thresholds tensor.
static gguf::Writer writer(const Sparsity& s) {
  gguf::Writer w;
  w.add_string("general.type", "sparsity");
  w.add_f32("sparsity.level", s.level);
  w.add_string("sparsity.ffn_rule", s.ffn_rule == FfnRule::kCats ? "cats" : "teal");
  w.add_string("sparsity.base_hash", s.base_hash);
  w.add_u32("sparsity.n_layer", static_cast<uint32_t>(s.thresholds.size()));
  // Written only when set, so a file without head pruning reads as before.
  if (s.head_threshold > 0) w.add_f32(kHeadThreshold, s.head_threshold);
  const auto* p = reinterpret_cast<const uint8_t*>(s.thresholds.data());
  w.add_tensor(kThresholds, DType::F32, {kNumTaps, static_cast<int64_t>(s.thresholds.size())},
               std::span<const uint8_t>(p, s.thresholds.size() * sizeof(s.thresholds[0])));
  return w;
}

std::vector<uint8_t> Sparsity::to_bytes() const {
  return writer(*this).to_bytes();
}

// Atomic: the writer goes through a temporary file renamed into place.
void Sparsity::save(const std::string& path) const {
  writer(*this).write(path);
}

}  // namespace slm::model
