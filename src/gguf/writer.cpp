#include "gguf/writer.h"

#include <cstdio>
#include <cstring>

#include "base/error.h"

namespace slm::gguf {
namespace {

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

}  // namespace

void Writer::set_alignment(uint64_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    throw Error("gguf writer: alignment must be a power of two");
  alignment_ = alignment;
  add_u32("general.alignment", static_cast<uint32_t>(alignment));
}

void Writer::begin_kv(const std::string& key, ValueType type) {
  put_string(kv_bytes_, key);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(type));
  ++n_kv_;
}

void Writer::add_string(const std::string& key, const std::string& v) {
  begin_kv(key, ValueType::STRING);
  put_string(kv_bytes_, v);
}
void Writer::add_bool(const std::string& key, bool v) {
  begin_kv(key, ValueType::BOOL);
  put<uint8_t>(kv_bytes_, v ? 1 : 0);
}
void Writer::add_u32(const std::string& key, uint32_t v) {
  begin_kv(key, ValueType::U32);
  put<uint32_t>(kv_bytes_, v);
}
void Writer::add_i32(const std::string& key, int32_t v) {
  begin_kv(key, ValueType::I32);
  put<int32_t>(kv_bytes_, v);
}
void Writer::add_u64(const std::string& key, uint64_t v) {
  begin_kv(key, ValueType::U64);
  put<uint64_t>(kv_bytes_, v);
}
void Writer::add_f32(const std::string& key, float v) {
  begin_kv(key, ValueType::F32);
  put<float>(kv_bytes_, v);
}
void Writer::add_strings(const std::string& key, const std::vector<std::string>& v) {
  begin_kv(key, ValueType::ARRAY);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(ValueType::STRING));
  put<uint64_t>(kv_bytes_, v.size());
  for (const std::string& s : v) put_string(kv_bytes_, s);
}
void Writer::add_f32s(const std::string& key, const std::vector<float>& v) {
  begin_kv(key, ValueType::ARRAY);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(ValueType::F32));
  put<uint64_t>(kv_bytes_, v.size());
  for (float x : v) put<float>(kv_bytes_, x);
}
void Writer::add_i32s(const std::string& key, const std::vector<int32_t>& v) {
  begin_kv(key, ValueType::ARRAY);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(ValueType::I32));
  put<uint64_t>(kv_bytes_, v.size());
  for (int32_t x : v) put<int32_t>(kv_bytes_, x);
}

void Writer::add_value(const std::string& key, const Value& v) {
  begin_kv(key, v.type);
  put_value_body(v, v.type);
}

void Writer::put_value_body(const Value& v, ValueType type) {
  switch (type) {
    case ValueType::U8:
    case ValueType::BOOL:
      put<uint8_t>(kv_bytes_, static_cast<uint8_t>(v.u));
      break;
    case ValueType::U16:
      put<uint16_t>(kv_bytes_, static_cast<uint16_t>(v.u));
      break;
    case ValueType::U32:
      put<uint32_t>(kv_bytes_, static_cast<uint32_t>(v.u));
      break;
    case ValueType::U64:
      put<uint64_t>(kv_bytes_, v.u);
      break;
    case ValueType::I8:
      put<int8_t>(kv_bytes_, static_cast<int8_t>(v.i));
      break;
    case ValueType::I16:
      put<int16_t>(kv_bytes_, static_cast<int16_t>(v.i));
      break;
    case ValueType::I32:
      put<int32_t>(kv_bytes_, static_cast<int32_t>(v.i));
      break;
    case ValueType::I64:
      put<int64_t>(kv_bytes_, v.i);
      break;
    case ValueType::F32:
      put<float>(kv_bytes_, static_cast<float>(v.f));
      break;
    case ValueType::F64:
      put<double>(kv_bytes_, v.f);
      break;
    case ValueType::STRING:
      put_string(kv_bytes_, std::string(v.str));
      break;
    case ValueType::ARRAY: {
      put<uint32_t>(kv_bytes_, static_cast<uint32_t>(v.elem_type));
      put<uint64_t>(kv_bytes_, v.count);
      if (v.elem_type == ValueType::STRING) {
        for (std::string_view s : v.strs) put_string(kv_bytes_, std::string(s));
      } else if (v.elem_type == ValueType::ARRAY) {
        for (const Value& item : v.items) put_value_body(item, ValueType::ARRAY);
      } else if (v.count > 0) {
        // Numeric elements stay as the file had them (little-endian).
        uint64_t size = 8;
        switch (v.elem_type) {
          case ValueType::U8:
          case ValueType::I8:
          case ValueType::BOOL:
            size = 1;
            break;
          case ValueType::U16:
          case ValueType::I16:
            size = 2;
            break;
          case ValueType::U32:
          case ValueType::I32:
          case ValueType::F32:
            size = 4;
            break;
          default:
            break;
        }
        kv_bytes_.insert(kv_bytes_.end(), v.elems, v.elems + v.count * size);
      }
      break;
    }
  }
}

namespace {

int64_t tensor_bytes(const std::string& name, DType type, const std::vector<int64_t>& shape) {
  if (shape.empty() || shape.size() > 4)
    throw Error("gguf writer: tensor '" + name + "' needs 1 to 4 dimensions");
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d <= 0) throw Error("gguf writer: tensor '" + name + "' has a non-positive dimension");
    n *= d;
  }
  if (!row_fits(type, shape[0]))
    throw Error("gguf writer: tensor '" + name +
                "': row length is not a multiple of the block size");
  return row_bytes(type, shape[0]) * (n / shape[0]);
}

}  // namespace

void Writer::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape,
                        std::span<const uint8_t> data) {
  const int64_t expect = tensor_bytes(name, type, shape);
  if (static_cast<int64_t>(data.size()) != expect)
    throw Error("gguf writer: tensor '" + name + "': " + std::to_string(data.size()) +
                " bytes given, " + std::to_string(expect) + " expected");
  Tensor t{name, type, shape, std::vector<uint8_t>(data.begin(), data.end()), data.size(), {}};
  tensors_.push_back(std::move(t));
}

void Writer::add_tensor_lazy(const std::string& name, DType type, const std::vector<int64_t>& shape,
                             std::function<void(uint8_t* dst)> fill) {
  const int64_t n = tensor_bytes(name, type, shape);
  tensors_.push_back({name, type, shape, {}, static_cast<uint64_t>(n), std::move(fill)});
}

std::vector<uint8_t> Writer::header_bytes(std::vector<uint64_t>& offsets) const {
  std::vector<uint8_t> out;
  put<uint32_t>(out, 0x46554747);
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, n_kv_);
  out.insert(out.end(), kv_bytes_.begin(), kv_bytes_.end());
  uint64_t offset = 0;
  offsets.clear();
  for (const Tensor& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) put<uint64_t>(out, static_cast<uint64_t>(d));
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, offset);
    offsets.push_back(offset);
    offset += aligned(t.n_bytes);
  }
  out.resize(aligned(out.size()), 0);
  return out;
}

std::vector<uint8_t> Writer::to_bytes() const {
  std::vector<uint64_t> offsets;
  std::vector<uint8_t> out = header_bytes(offsets);
  const size_t base = out.size();
  uint64_t total = 0;
  for (const Tensor& t : tensors_) total += aligned(t.n_bytes);
  out.resize(base + total, 0);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    uint8_t* dst = out.data() + base + offsets[i];
    if (t.fill)
      t.fill(dst);
    else
      std::memcpy(dst, t.data.data(), t.data.size());
  }
  return out;
}

uint64_t Writer::file_size() const {
  std::vector<uint64_t> offsets;
  uint64_t total = header_bytes(offsets).size();
  for (const Tensor& t : tensors_) total += aligned(t.n_bytes);
  return total;
}

void Writer::write_file(std::FILE* f, bool& ok, const Progress& on_tensor) const {
  std::vector<uint64_t> offsets;
  const std::vector<uint8_t> header = header_bytes(offsets);
  ok = std::fwrite(header.data(), 1, header.size(), f) == header.size();
  uint64_t written = header.size();
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < tensors_.size() && ok; ++i) {
    const Tensor& t = tensors_[i];
    // Tensors are written one at a time, so only the largest is ever in memory.
    buf.assign(aligned(t.n_bytes), 0);
    if (t.fill)
      t.fill(buf.data());
    else
      std::memcpy(buf.data(), t.data.data(), t.data.size());
    ok = std::fwrite(buf.data(), 1, buf.size(), f) == buf.size();
    written += buf.size();
    if (on_tensor) on_tensor(i + 1, tensors_.size(), written);
  }
}

void Writer::write(const std::string& path, const Progress& on_tensor) const {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error(path + ": cannot create file");
  bool ok = false;
  try {
    write_file(f, ok, on_tensor);
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    throw Error(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot rename temporary file into place");
  }
}

}  // namespace slm::gguf
