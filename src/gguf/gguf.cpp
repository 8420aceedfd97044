#include "gguf/gguf.h"

#include <cstring>
#include <limits>
#include <unordered_set>

#include "base/error.h"

namespace slm::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxDims = 4;
// Sanity caps far above any real model; they keep a hostile header from
// making us reserve memory before the per-item bounds checks run.
constexpr uint64_t kMaxArrayDepth = 4;

// A bounds-checked little-endian cursor over the file bytes.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(name_ + ": " + what + " (at byte " + std::to_string(pos_) + ")");
  }

  const uint8_t* take(uint64_t n, const char* what) {
    if (n > remaining()) fail(std::string("truncated file: ") + what + " runs past the end");
    const uint8_t* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }

  template <typename T>
  T read(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }

  std::string_view read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      fail(std::string(what) + ": string length " + std::to_string(len) + " runs past the end");
    const uint8_t* p = take(len, what);
    return {reinterpret_cast<const char*>(p), static_cast<size_t>(len)};
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

uint64_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::BOOL:
      return 1;
    case ValueType::U16:
    case ValueType::I16:
      return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32:
      return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64:
      return 8;
    default:
      return 0;
  }
}

bool known_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::F64); }

// Reads one scalar of type t from p (already bounds-checked) into v.
void decode_scalar(ValueType t, const uint8_t* p, Value& v) {
  auto load = [&](auto x) {
    std::memcpy(&x, p, sizeof(x));
    return x;
  };
  switch (t) {
    case ValueType::U8: v.u = load(uint8_t{}); break;
    case ValueType::U16: v.u = load(uint16_t{}); break;
    case ValueType::U32: v.u = load(uint32_t{}); break;
    case ValueType::U64: v.u = load(uint64_t{}); break;
    case ValueType::BOOL: v.u = load(uint8_t{}); break;
    case ValueType::I8: v.i = load(int8_t{}); break;
    case ValueType::I16: v.i = load(int16_t{}); break;
    case ValueType::I32: v.i = load(int32_t{}); break;
    case ValueType::I64: v.i = load(int64_t{}); break;
    case ValueType::F32: v.f = load(float{}); break;
    case ValueType::F64: v.f = load(double{}); break;
    default: break;
  }
  switch (t) {
    case ValueType::U8:
    case ValueType::U16:
    case ValueType::U32:
    case ValueType::U64:
    case ValueType::BOOL:
      v.i = v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
                ? std::numeric_limits<int64_t>::max()
                : static_cast<int64_t>(v.u);
      v.f = static_cast<double>(v.u);
      break;
    case ValueType::I8:
    case ValueType::I16:
    case ValueType::I32:
    case ValueType::I64:
      v.u = v.i < 0 ? 0 : static_cast<uint64_t>(v.i);
      v.f = static_cast<double>(v.i);
      break;
    default:
      break;
  }
}

Value read_value(Cursor& c, ValueType type, const std::string& key, uint64_t depth) {
  Value v;
  v.type = type;
  if (type == ValueType::STRING) {
    v.str = c.read_string(("value of key '" + key + "'").c_str());
    return v;
  }
  if (type != ValueType::ARRAY) {
    const uint64_t n = scalar_size(type);
    decode_scalar(type, c.take(n, ("value of key '" + key + "'").c_str()), v);
    return v;
  }
  if (depth >= kMaxArrayDepth) c.fail("key '" + key + "': arrays nested too deeply");
  const uint32_t et = c.read<uint32_t>("array element type");
  if (!known_type(et))
    c.fail("key '" + key + "': unknown array element type " + std::to_string(et));
  v.elem_type = static_cast<ValueType>(et);
  v.count = c.read<uint64_t>("array length");
  // Every element takes at least one byte (strings and arrays at least 8), so
  // a count above the remaining bytes is a lie; checking first keeps a
  // hostile count from driving a huge reserve().
  const uint64_t min_elem = v.elem_type == ValueType::STRING || v.elem_type == ValueType::ARRAY
                                ? 8
                                : scalar_size(v.elem_type);
  if (v.count > c.remaining() / min_elem)
    c.fail("key '" + key + "': array of " + std::to_string(v.count) +
           " elements runs past the end of the file");
  if (v.elem_type == ValueType::STRING) {
    v.strs.reserve(v.count);
    for (uint64_t i = 0; i < v.count; ++i)
      v.strs.push_back(c.read_string(("element of array '" + key + "'").c_str()));
  } else if (v.elem_type == ValueType::ARRAY) {
    v.items.reserve(v.count);
    for (uint64_t i = 0; i < v.count; ++i)
      v.items.push_back(read_value(c, ValueType::ARRAY, key, depth + 1));
  } else {
    v.elems = c.take(v.count * min_elem, "array data");
  }
  return v;
}

bool checked_mul(uint64_t a, uint64_t b, uint64_t& out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

}  // namespace

std::string_view value_type_name(ValueType t) {
  static constexpr std::string_view kNames[] = {"u8",  "i8",     "u16",   "i16", "u32",
                                                "i32", "f32",    "bool",  "string",
                                                "array", "u64",  "i64",   "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

bool Value::is_integer() const {
  switch (type) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::U16:
    case ValueType::I16:
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::U64:
    case ValueType::I64:
      return true;
    default:
      return false;
  }
}

double Value::number_at(uint64_t idx) const {
  Value e;
  decode_scalar(elem_type, elems + idx * scalar_size(elem_type), e);
  return e.f;
}

int64_t Value::integer_at(uint64_t idx) const {
  Value e;
  decode_scalar(elem_type, elems + idx * scalar_size(elem_type), e);
  if (elem_type == ValueType::F32 || elem_type == ValueType::F64) return static_cast<int64_t>(e.f);
  return e.i;
}

std::unique_ptr<File> File::open(const std::string& path) {
  auto map = std::make_unique<MappedFile>(path);
  std::unique_ptr<File> f(new File());
  f->name_ = path;
  f->bytes_ = map->bytes();
  f->map_ = std::move(map);
  f->parse_all();
  return f;
}

std::unique_ptr<File> File::parse(std::span<const uint8_t> bytes, const std::string& name) {
  std::unique_ptr<File> f(new File());
  f->name_ = name;
  f->bytes_ = bytes;
  f->parse_all();
  return f;
}

void File::parse_all() {
  Cursor c(bytes_, name_);
  if (bytes_.size() < 4 || c.read<uint32_t>("magic") != kMagic)
    throw Error(name_ + ": not a GGUF file (bad magic)");
  version_ = c.read<uint32_t>("version");
  if (version_ == 1) c.fail("GGUF version 1 is not supported (only 2 and 3)");
  if (version_ < 2 || version_ > 3)
    c.fail("unsupported GGUF version " + std::to_string(version_) + " (only 2 and 3)");
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A key-value pair takes at least 8+4+1 bytes, a tensor info at least 8+4+8+4+8.
  if (n_kv > c.remaining() / 13)
    c.fail("truncated file or corrupt metadata count " + std::to_string(n_kv) +
           ": larger than the file can hold");
  if (n_tensors > c.remaining() / 32)
    c.fail("truncated file or corrupt tensor count " + std::to_string(n_tensors) +
           ": larger than the file can hold");

  std::unordered_set<std::string_view> keys;
  kvs_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string_view key = c.read_string("metadata key");
    const std::string key_s(key);
    if (!keys.insert(key).second) c.fail("duplicate metadata key '" + key_s + "'");
    const uint32_t t = c.read<uint32_t>("value type");
    if (!known_type(t)) c.fail("key '" + key_s + "': unknown value type " + std::to_string(t));
    kvs_.push_back({key, read_value(c, static_cast<ValueType>(t), key_s, 0)});
  }

  if (const Value* a = find("general.alignment")) {
    if (!a->is_integer() || a->i <= 0 || (a->u & (a->u - 1)) != 0 || a->u > (1u << 30))
      c.fail("general.alignment must be a power of two, got " +
             (a->is_integer() ? std::to_string(a->i) : std::string(value_type_name(a->type))));
    alignment_ = a->u;
  }

  std::unordered_set<std::string_view> names;
  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo ti;
    ti.name = c.read_string("tensor name");
    const std::string name_s(ti.name);
    if (!names.insert(ti.name).second) c.fail("duplicate tensor name '" + name_s + "'");
    const uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      c.fail("tensor '" + name_s + "': " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
    ti.n_dims = static_cast<int>(n_dims);
    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>("tensor shape");
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          !checked_mul(n_elem, ne, n_elem) ||
          n_elem > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        c.fail("tensor '" + name_s + "': shape overflows or has a zero dimension");
      ti.ne[d] = static_cast<int64_t>(ne);
    }
    const uint32_t type_id = c.read<uint32_t>("tensor type");
    const std::optional<DTypeInfo> info = dtype_info(type_id);
    if (!info || !info->weight_type)
      c.fail("tensor '" + name_s + "': unsupported tensor type " + std::to_string(type_id) +
             (info ? " (" + std::string(info->name) + ")" : ""));
    ti.type = static_cast<DType>(type_id);
    if (ti.ne[0] % info->block_size != 0)
      c.fail("tensor '" + name_s + "': row length " + std::to_string(ti.ne[0]) +
             " is not a multiple of the " + std::string(info->name) + " block size " +
             std::to_string(info->block_size));
    uint64_t n_bytes = 0;
    if (!checked_mul(n_elem / info->block_size, info->block_bytes, n_bytes))
      c.fail("tensor '" + name_s + "': byte size overflows");
    ti.n_bytes = n_bytes;
    ti.offset = c.read<uint64_t>("tensor offset");
    if (ti.offset % alignment_ != 0)
      c.fail("tensor '" + name_s + "': data offset " + std::to_string(ti.offset) +
             " is not a multiple of the alignment " + std::to_string(alignment_));
    tensors_.push_back(ti);
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t header_end = c.pos();
  data_offset_ = (header_end + alignment_ - 1) / alignment_ * alignment_;
  if (data_offset_ > bytes_.size() && !tensors_.empty())
    throw Error(name_ + ": truncated file: the tensor data section is missing");
  const uint64_t data_size = data_offset_ <= bytes_.size() ? bytes_.size() - data_offset_ : 0;
  for (TensorInfo& ti : tensors_) {
    if (ti.offset > data_size || ti.n_bytes > data_size - ti.offset)
      throw Error(name_ + ": tensor '" + std::string(ti.name) + "': data (offset " +
                  std::to_string(ti.offset) + ", " + std::to_string(ti.n_bytes) +
                  " bytes) runs past the end of the file");
    ti.data = bytes_.data() + data_offset_ + ti.offset;
  }
}

const Value* File::find(std::string_view key) const {
  for (const KeyValue& kv : kvs_)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  for (const TensorInfo& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

namespace {
[[noreturn]] void bad_type(const std::string& file, std::string_view key, const Value& v,
                           const char* want) {
  throw Error(file + ": metadata key '" + std::string(key) + "' has type " +
              std::string(value_type_name(v.type)) + ", expected " + want);
}

// The array of numbers (any numeric element type but bool) at key, read
// element by element with number(v, i); nullopt when the key is absent.
template <class T, class Number>
std::optional<std::vector<T>> number_array(const File& f, const std::string& file,
                                           std::string_view key, Number number) {
  const Value* v = f.find(key);
  if (!v) return std::nullopt;
  if (v->type != ValueType::ARRAY || scalar_size(v->elem_type) == 0 ||
      v->elem_type == ValueType::BOOL)
    bad_type(file, key, *v, "an array of numbers");
  std::vector<T> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) out[i] = number(*v, i);
  return out;
}
}  // namespace

std::optional<std::string_view> File::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != ValueType::STRING) bad_type(name_, key, *v, "string");
  return v->str;
}

std::optional<uint64_t> File::get_uint(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_integer()) bad_type(name_, key, *v, "an integer");
  const bool is_signed = v->type == ValueType::I8 || v->type == ValueType::I16 ||
                         v->type == ValueType::I32 || v->type == ValueType::I64;
  if (is_signed && v->i < 0)
    throw Error(name_ + ": metadata key '" + std::string(key) + "' is negative (" +
                std::to_string(v->i) + ")");
  return v->u;
}

std::optional<int64_t> File::get_int(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_integer()) bad_type(name_, key, *v, "an integer");
  if (v->type == ValueType::U64 && v->u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    throw Error(name_ + ": metadata key '" + std::string(key) + "' is out of range");
  return v->i;
}

std::optional<double> File::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad_type(name_, key, *v, "a number");
  return v->f;
}

std::optional<bool> File::get_bool(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != ValueType::BOOL && !v->is_integer()) bad_type(name_, key, *v, "a bool");
  return v->u != 0;
}

std::optional<std::vector<std::string_view>> File::get_strings(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != ValueType::ARRAY || v->elem_type != ValueType::STRING)
    bad_type(name_, key, *v, "an array of strings");
  return v->strs;
}

std::optional<std::vector<float>> File::get_floats(std::string_view key) const {
  return number_array<float>(*this, name_, key, [](const Value& v, uint64_t i) {
    return static_cast<float>(v.number_at(i));
  });
}

std::optional<std::vector<int64_t>> File::get_ints(std::string_view key) const {
  return number_array<int64_t>(*this, name_, key,
                               [](const Value& v, uint64_t i) { return v.integer_at(i); });
}

}  // namespace slm::gguf
