#include "base/dtype.h"

#include <array>
#include <cctype>
#include <string>

namespace slm {
namespace {

struct Entry {
  DType type;
  DTypeInfo info;
};

constexpr int64_t kQK = 256;  // super-block size of the K-quants
constexpr std::array<Entry, 17> kTable = {{
    {DType::F32, {"F32", 1, 4, true}},
    {DType::F16, {"F16", 1, 2, true}},
    {DType::Q4_0, {"Q4_0", 32, 18, true}},
    {DType::Q4_1, {"Q4_1", 32, 20, true}},
    {DType::Q6_0, {"Q6_0", 32, 26, false}},
    {DType::Q5_0, {"Q5_0", 32, 22, true}},
    {DType::Q5_1, {"Q5_1", 32, 24, true}},
    {DType::Q8_0, {"Q8_0", 32, 34, true}},
    {DType::Q8_1, {"Q8_1", 32, 36, false}},
    {DType::Q2_K, {"Q2_K", kQK, 84, true}},
    {DType::Q3_K, {"Q3_K", kQK, 110, true}},
    {DType::Q4_K, {"Q4_K", kQK, 144, true}},
    {DType::Q5_K, {"Q5_K", kQK, 176, true}},
    {DType::Q6_K, {"Q6_K", kQK, 210, true}},
    {DType::Q8_K, {"Q8_K", kQK, 292, false}},
    {DType::IQ4_NL, {"IQ4_NL", 32, 18, true}},
    {DType::BF16, {"BF16", 1, 2, true}},
}};

}  // namespace

std::optional<DTypeInfo> dtype_info(uint32_t id) {
  for (const Entry& e : kTable)
    if (static_cast<uint32_t>(e.type) == id) return e.info;
  return std::nullopt;
}

const DTypeInfo& dtype_info(DType t) {
  for (const Entry& e : kTable)
    if (e.type == t) return e.info;
  return kTable[0].info;  // unreachable for valid enum values
}

std::string_view dtype_name(DType t) { return dtype_info(t).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string up(name);
  for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Entry& e : kTable)
    if (e.info.name == up) return e.type;
  return std::nullopt;
}

}  // namespace slm
