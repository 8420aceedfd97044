// checkpoint.h: GGUF-backed training checkpoints.
#include "train/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "base/error.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"

namespace slm::train {

namespace {
constexpr const char* kSettingPrefix = "checkpoint.setting.";
constexpr size_t kMaxName = 200;
}  // namespace

uint64_t fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

std::string hex64(uint64_t v) {
  static const char* digits = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = digits[v & 15];
  return s;
}

std::string model_fingerprint(const gguf::File& file) {
  uint64_t h = fnv1a("slm-model", 9);
  for (const gguf::TensorInfo& t : file.tensors()) {
    h = fnv1a(t.name.data(), t.name.size(), h);
    const int32_t type = static_cast<int32_t>(t.type);
    h = fnv1a(&type, sizeof type, h);
    h = fnv1a(t.ne, sizeof t.ne, h);
    const size_t sample = static_cast<size_t>(std::min<uint64_t>(t.n_bytes, 256));
    h = fnv1a(t.data, sample, h);
    h = fnv1a(t.data + (t.n_bytes - sample), sample, h);
  }
  return hex64(h);
}

void save_checkpoint(const std::string& path, const CheckpointInfo& info,
                     std::span<const NamedSpan> tensors) {
  gguf::Writer w;
  w.add_string("general.type", "checkpoint");
  w.add_u32("checkpoint.version", kCheckpointVersion);
  w.add_u64("checkpoint.step", info.step);
  w.add_u64("checkpoint.adam_steps", info.adam_steps);
  w.add_u64("checkpoint.epoch", info.epoch);
  w.add_string("checkpoint.model", info.model);
  uint64_t sum = fnv1a(nullptr, 0);
  for (const NamedSpan& t : tensors) sum = fnv1a(t.data.data(), t.data.size_bytes(), sum);
  w.add_string("checkpoint.checksum", hex64(sum));
  for (const auto& [k, v] : info.settings) w.add_string(kSettingPrefix + k, v);
  // Lazy tensors: the bytes go from the spans to the file without a copy of
  // the whole state in memory (full training saves three model-sized sets).
  for (const NamedSpan& t : tensors) {
    if (t.name.empty() || t.name.size() > kMaxName)
      throw Error("internal: checkpoint tensor name '" + t.name + "' is empty or too long");
    const std::span<float> d = t.data;
    w.add_tensor_lazy(t.name, DType::F32, {static_cast<int64_t>(d.size())},
                      [d](uint8_t* dst) { std::memcpy(dst, d.data(), d.size_bytes()); });
  }
  w.write(path);
}

CheckpointInfo load_checkpoint(const std::string& path, const std::string& model,
                               const std::map<std::string, std::string>& settings,
                               std::span<const NamedSpan> tensors) {
  const auto f = gguf::File::open(path);
  const auto fail = [&](const std::string& what) { return Error(path + ": " + what); };
  if (f->get_string("general.type") != std::optional<std::string_view>("checkpoint"))
    throw fail("not a training checkpoint (general.type is not 'checkpoint')");
  const auto version = f->get_uint("checkpoint.version");
  if (!version) throw fail("key 'checkpoint.version' is missing");
  if (*version != kCheckpointVersion)
    throw fail("checkpoint version " + std::to_string(*version) +
               " is not supported (this slm reads " + std::to_string(kCheckpointVersion) + ")");
  CheckpointInfo info;
  const auto need_uint = [&](const char* key) {
    const auto v = f->get_uint(key);
    if (!v) throw fail(std::string("key '") + key + "' is missing");
    return *v;
  };
  const auto need_string = [&](const char* key) {
    const auto v = f->get_string(key);
    if (!v) throw fail(std::string("key '") + key + "' is missing");
    return std::string(*v);
  };
  info.step = need_uint("checkpoint.step");
  info.adam_steps = need_uint("checkpoint.adam_steps");
  info.epoch = need_uint("checkpoint.epoch");
  info.model = need_string("checkpoint.model");
  const std::string checksum = need_string("checkpoint.checksum");
  if (info.model != model)
    throw fail("it was made from another base model (fingerprint " + info.model +
               ", this model's is " + model + ")");
  const std::string_view prefix = kSettingPrefix;
  for (const gguf::KeyValue& kv : f->metadata())
    if (kv.key.substr(0, prefix.size()) == prefix) {
      const std::string key(kv.key.substr(prefix.size()));
      const auto v = f->get_string(kv.key);
      if (!v) throw fail("key '" + std::string(kv.key) + "' must be a string");
      info.settings[key] = std::string(*v);
    }
  // Every differing setting in one message.
  std::string diffs;
  for (const auto& [k, v] : settings) {
    const auto it = info.settings.find(k);
    if (it == info.settings.end()) throw fail("setting '" + k + "' is missing");
    if (it->second != v)
      diffs += (diffs.empty() ? "" : "; ") + ("setting '" + k + "' differs: the checkpoint has " +
                                              it->second + ", this run " + v);
  }
  if (!diffs.empty()) throw fail(diffs);
  for (const auto& [k, v] : info.settings)
    if (settings.find(k) == settings.end())
      throw fail("setting '" + k + "' is unknown to this run");
  // Check every tensor before touching a span.
  std::vector<const gguf::TensorInfo*> found;
  std::set<std::string_view> wanted;
  uint64_t sum = fnv1a(nullptr, 0);
  for (const NamedSpan& t : tensors) {
    const gguf::TensorInfo* ti = f->find_tensor(t.name);
    if (ti == nullptr) throw fail("tensor '" + t.name + "' is missing");
    if (ti->type != DType::F32 || ti->n_dims != 1 || ti->n_bytes != t.data.size_bytes())
      throw fail("tensor '" + t.name + "' has another type or size (" +
                 std::to_string(ti->n_elements()) + " values; this run has " +
                 std::to_string(t.data.size()) + ")");
    sum = fnv1a(ti->data, static_cast<size_t>(ti->n_bytes), sum);
    found.push_back(ti);
    wanted.insert(t.name);
  }
  for (const gguf::TensorInfo& ti : f->tensors())
    if (wanted.find(ti.name) == wanted.end())
      throw fail("tensor '" + std::string(ti.name) + "' is not part of this run's state");
  if (hex64(sum) != checksum) throw fail("checksum mismatch: the file is corrupted");
  for (size_t i = 0; i < found.size(); ++i)
    std::memcpy(tensors[i].data.data(), found[i]->data, static_cast<size_t>(found[i]->n_bytes));
  return info;
}

std::vector<NamedSpan> optimizer_spans(const std::vector<std::string>& names,
                                       std::span<const std::span<float>> params,
                                       std::vector<std::vector<float>>& mv) {
  if (names.size() != params.size())
    throw Error("internal: parameter names and tensors differ in number");
  if (mv.empty())
    for (const std::span<float> p : params) {
      mv.emplace_back(p.size(), 0.0f);
      mv.emplace_back(p.size(), 0.0f);
    }
  if (mv.size() != 2 * params.size())
    throw Error("internal: optimizer moments do not match the parameters");
  std::vector<NamedSpan> out;
  for (size_t i = 0; i < params.size(); ++i) out.push_back({names[i], params[i]});
  for (size_t i = 0; i < params.size(); ++i) {
    out.push_back({"adam_m." + names[i], mv[2 * i]});
    out.push_back({"adam_v." + names[i], mv[2 * i + 1]});
  }
  return out;
}

}  // namespace slm::train
