#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fp16.h"

namespace slm::formats {
namespace {

using Json = nlohmann::json;

struct DTypeRow {
  StDType type;
  std::string_view name;
  int64_t size;
};
constexpr DTypeRow kDTypes[] = {
    {StDType::kF64, "F64", 8}, {StDType::kF32, "F32", 4}, {StDType::kF16, "F16", 2},
    {StDType::kBF16, "BF16", 2}, {StDType::kI64, "I64", 8}, {StDType::kI32, "I32", 4},
    {StDType::kI16, "I16", 2}, {StDType::kI8, "I8", 1}, {StDType::kU8, "U8", 1},
    {StDType::kBool, "BOOL", 1},
};

// A header larger than this is not a model's (real ones are a few MB at most)
// and would only make the JSON parser allocate.
constexpr uint64_t kMaxHeader = uint64_t{100} << 20;
constexpr size_t kMaxDims = 8;

[[noreturn]] void fail_at(const std::string& file, const std::string& what) { throw Error(file + ": " + what); }

}  // namespace

std::optional<StDType> st_dtype_from_name(std::string_view name) {
  for (const DTypeRow& r : kDTypes)
    if (r.name == name) return r.type;
  return std::nullopt;
}

std::string_view st_dtype_name(StDType t) {
  for (const DTypeRow& r : kDTypes)
    if (r.type == t) return r.name;
  return "?";
}

int64_t st_dtype_size(StDType t) {
  for (const DTypeRow& r : kDTypes)
    if (r.type == t) return r.size;
  return 0;
}

bool st_is_float(StDType t) { return t == StDType::kF32 || t == StDType::kF16 || t == StDType::kBF16; }

std::unique_ptr<Safetensors> Safetensors::open(const std::string& path) {
  std::unique_ptr<Safetensors> f(new Safetensors());
  f->name_ = path;
  f->map_ = std::make_unique<MappedFile>(path);
  f->bytes_ = f->map_->bytes();
  f->parse_all();
  return f;
}

std::unique_ptr<Safetensors> Safetensors::parse(std::span<const uint8_t> bytes, const std::string& name) {
  std::unique_ptr<Safetensors> f(new Safetensors());
  f->name_ = name;
  f->bytes_ = bytes;
  f->parse_all();
  return f;
}

const StTensor* Safetensors::find(std::string_view tensor) const {
  for (const StTensor& t : tensors_)
    if (t.name == tensor) return &t;
  return nullptr;
}

void Safetensors::parse_all() {
  if (bytes_.size() < 8) fail_at(name_, "too short for a safetensors file (" + std::to_string(bytes_.size()) + " bytes)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | bytes_[static_cast<size_t>(i)];
  const uint64_t avail = bytes_.size() - 8;
  if (header_len > avail || header_len > kMaxHeader)
    fail_at(name_, "header length " + std::to_string(header_len) + " exceeds the file (" + std::to_string(avail) +
         " bytes after the length)");
  const char* text = reinterpret_cast<const char*>(bytes_.data() + 8);
  const std::span<const uint8_t> data = bytes_.subspan(8 + header_len);
  Json root;
  try {
    // nlohmann keeps the last of duplicate keys; a tensor named twice is refused instead.
    std::vector<std::string> keys;
    root = Json::parse(text, text + header_len, [&](int depth, Json::parse_event_t event, Json& parsed) {
      if (depth == 1 && event == Json::parse_event_t::key) keys.push_back(parsed.get<std::string>());
      return true;
    });
    std::sort(keys.begin(), keys.end());
    if (const auto dup = std::adjacent_find(keys.begin(), keys.end()); dup != keys.end())
      fail_at(name_, "tensor '" + *dup + "' is listed twice");
  } catch (const Json::exception& e) {
    fail_at(name_, std::string("header is not valid JSON: ") + e.what());
  }
  if (!root.is_object()) fail_at(name_, "header is not a JSON object");

  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  try {
    for (auto it = root.begin(); it != root.end(); ++it) {
      const std::string& key = it.key();
      const Json& v = it.value();
      if (key == "__metadata__") {
        if (!v.is_object()) fail_at(name_, "__metadata__ is not an object");
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string()) fail_at(name_, "__metadata__." + m.key() + " is not a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const std::string where = "tensor '" + key + "': ";
      if (!v.is_object()) fail_at(name_, where + "entry is not an object");
      const auto dt = v.find("dtype");
      if (dt == v.end() || !dt->is_string()) fail_at(name_, where + "'dtype' is missing or not a string");
      const auto type = st_dtype_from_name(dt->get<std::string>());
      if (!type) fail_at(name_, where + "unknown dtype '" + dt->get<std::string>() + "'");
      const auto sh = v.find("shape");
      if (sh == v.end() || !sh->is_array()) fail_at(name_, where + "'shape' is missing or not an array");
      if (sh->size() > kMaxDims) fail_at(name_, where + "more than " + std::to_string(kMaxDims) + " dimensions");
      StTensor t;
      t.name = key;
      t.dtype = *type;
      uint64_t n = 1;
      for (const Json& d : *sh) {
        if (!d.is_number_unsigned()) fail_at(name_, where + "shape holds a value that is not a non-negative integer");
        const uint64_t dim = d.get<uint64_t>();
        if (dim > static_cast<uint64_t>(INT64_MAX) || (dim != 0 && n > static_cast<uint64_t>(INT64_MAX) / dim))
          fail_at(name_, where + "shape overflows");
        n *= dim;
        t.shape.push_back(static_cast<int64_t>(dim));
      }
      const uint64_t esize = static_cast<uint64_t>(st_dtype_size(*type));
      if (n > static_cast<uint64_t>(INT64_MAX) / esize) fail_at(name_, where + "byte size overflows");
      t.n_elements = static_cast<int64_t>(n);
      const auto off = v.find("data_offsets");
      if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
          !(*off)[1].is_number_unsigned())
        fail_at(name_, where + "'data_offsets' must be [begin, end] with non-negative integers");
      const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
      if (begin > end) fail_at(name_, where + "data_offsets begin " + std::to_string(begin) + " is after end " + std::to_string(end));
      if (end > data.size())
        fail_at(name_, where + "data_offsets end " + std::to_string(end) + " is beyond the data section (" +
             std::to_string(data.size()) + " bytes; is the file truncated?)");
      if (end - begin != n * esize)
        fail_at(name_, where + "byte range holds " + std::to_string(end - begin) + " bytes, shape and dtype need " +
             std::to_string(n * esize));
      t.data = data.subspan(begin, end - begin);
      ranges.push_back({begin, end, tensors_.size()});
      tensors_.push_back(std::move(t));
    }
  } catch (const Json::exception& e) {
    fail_at(name_, std::string("malformed header: ") + e.what());
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      fail_at(name_, "tensor '" + tensors_[ranges[i].index].name + "' overlaps tensor '" + tensors_[ranges[i - 1].index].name +
           "'");
  // File order, so a converter reads the mapping front to back.
  std::vector<StTensor> ordered;
  ordered.reserve(tensors_.size());
  for (const Range& r : ranges) ordered.push_back(std::move(tensors_[r.index]));
  tensors_ = std::move(ordered);
}

void st_to_float(const StTensor& t, int64_t first, int64_t n, float* dst) {
  const uint8_t* src = t.data.data();
  switch (t.dtype) {
    case StDType::kF32: std::memcpy(dst, src + first * 4, static_cast<size_t>(n) * 4); return;
    case StDType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + (first + i) * 2, 2);
        dst[i] = fp16_to_f32(h);
      }
      return;
    case StDType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + (first + i) * 2, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    default: return;  // callers check st_is_float
  }
}

}  // namespace slm::formats
