// Packed layouts of Q4_1, Q5_1 and IQ4_NL (internal.h): packing one block of
// one row, reading a row back, and the scalar oracle tiles. The oracles take
// the steps of the type's own scalar vec_dot (scalar_legacy.cpp) with the
// packed quants: the same exact integer sums, then per block
//   Q4_1 / Q5_1  acc += float(isum) * (d * dy) + float(sum qy) * (m * dy)
//   IQ4_NL       acc += float(isum) * (d * dy)
// so a packed product gives the bits of the plain scalar matmul.
#include <cstring>

#include "base/check.h"
#include "base/fp16.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

constexpr int64_t kScaleBytes = kPackRows * 2;  // fp16 d (or m) of the group's rows

// Sections of a packed block (internal.h): d[16], then m[16] for the min
// types, then Q5_1's reordered qh[16], then the nibble words qs[4][16].
constexpr int64_t kMinAt = kScaleBytes;
int64_t qh_at(DType t) {
  return packed_has_min(t) ? 2 * kScaleBytes : kScaleBytes;
}
int64_t qs_at(DType t) {
  return qh_at(t) + (t == DType::Q5_1 ? kPackRows * 4 : 0);
}

// Q5_1's fifth bits in Q5_0's order (packed.cpp's q5_bit_position): the bit
// of element e at 8 * (e % 4) + word(e), word(e) = e / 4 for e < 16 and
// 4 + (e - 16) / 4, so word k's high bits are bit k of each byte.
int q5_bit(int e) {
  const int word = e < 16 ? e / 4 : 4 + (e - 16) / 4;
  return 8 * (e % 4) + word;
}

// Row r's fp16 at byte offset `at` of a packed block, as float.
float row_half(const uint8_t* block, int64_t at, int r) {
  uint16_t h;
  std::memcpy(&h, block + at + 2 * r, 2);
  return fp16_to_f32(h);
}

// The stored (unsigned) quant of element e < 32 of row r: the 4- or 5-bit
// level; IQ4_NL's nibble (its table index).
int stored_quant(DType t, const uint8_t* block, int r, int e) {
  const uint8_t byte = block[qs_at(t) + ((e % 16) / 4 * kPackRows + r) * 4 + e % 4];
  const int nibble = e < 16 ? byte & 0xF : byte >> 4;
  if (t != DType::Q5_1) return nibble;
  uint32_t qh;
  std::memcpy(&qh, block + qh_at(t) + 4 * r, 4);
  return nibble | static_cast<int>((qh >> q5_bit(e)) & 1u) << 4;
}

// The integer the block's d multiplies (IQ4_NL: the code book value).
int level(DType t, const uint8_t* block, int r, int e) {
  const int q = stored_quant(t, block, r, e);
  return t == DType::IQ4_NL ? kIq4nlValues[q] : q;
}

template <DType kType>
void tile_scalar(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y,
                 int64_t ldy, int nr) {
  constexpr bool kMin = packed_has_min(kType);
  const int64_t block_bytes = packed_block_bytes(kType);
  for (int t = 0; t < nt; ++t)
    for (int r = 0; r < nr; ++r) {
      const auto* q8 = static_cast<const BlockQ8_0*>(act[t].q);
      float acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* block = group + b * block_bytes;
        // The levels signed as vec_dot sees them (IQ4_NL's corr, -128 *
        // sum qy, is for the SIMD tiles' code book + 128 and unused here).
        int32_t isum = 0;
        for (int e = 0; e < kQK32; ++e) isum += level(kType, block, r, e) * q8[b].qs[e];
        const float dy = act[t].d[b];
        const float dot = static_cast<float>(isum) * (row_half(block, 0, r) * dy);
        if constexpr (kMin)
          acc += dot + static_cast<float>(act[t].corr[b]) * (row_half(block, kMinAt, r) * dy);
        else
          acc += dot;
      }
      y[t * ldy + r] = acc;
    }
}

}  // namespace

int64_t packed_legacy2_block_bytes(DType t) {
  switch (t) {
    case DType::Q4_1:
      return 2 * kScaleBytes + kPackRows * kQK32 / 2;
    case DType::Q5_1:
      return 2 * kScaleBytes + kPackRows * (4 + kQK32 / 2);
    case DType::IQ4_NL:
      return kScaleBytes + kPackRows * kQK32 / 2;
    default:
      return 0;
  }
}

void pack_legacy2(DType t, const uint8_t* row, int64_t b, int r, uint8_t* out) {
  SLM_DCHECK(packed_is_legacy2(t));
  const uint8_t* qs = nullptr;
  if (t == DType::IQ4_NL) {
    const auto& blk = reinterpret_cast<const BlockIq4Nl*>(row)[b];
    std::memcpy(out + 2 * r, &blk.d, 2);
    qs = blk.qs;
  } else if (t == DType::Q4_1) {
    const auto& blk = reinterpret_cast<const BlockQ4_1*>(row)[b];
    std::memcpy(out + 2 * r, &blk.d, 2);
    std::memcpy(out + kMinAt + 2 * r, &blk.m, 2);
    qs = blk.qs;
  } else {
    const auto& blk = reinterpret_cast<const BlockQ5_1*>(row)[b];
    std::memcpy(out + 2 * r, &blk.d, 2);
    std::memcpy(out + kMinAt + 2 * r, &blk.m, 2);
    uint32_t qh, reordered = 0;
    std::memcpy(&qh, blk.qh, 4);
    for (int e = 0; e < kQK32; ++e) reordered |= ((qh >> e) & 1u) << q5_bit(e);
    std::memcpy(out + qh_at(t) + 4 * r, &reordered, 4);
    qs = blk.qs;
  }
  for (int k = 0; k < kQK32 / 8; ++k)
    std::memcpy(out + qs_at(t) + (k * kPackRows + r) * 4, qs + 4 * k, 4);
}

void dequantize_legacy2(DType t, const uint8_t* block, int r, float* dst) {
  // The scalar dequantizer's steps: float(level) * d (+ m).
  const float d = row_half(block, 0, r);
  if (packed_has_min(t)) {
    const float m = row_half(block, kMinAt, r);
    for (int e = 0; e < kQK32; ++e) dst[e] = static_cast<float>(level(t, block, r, e)) * d + m;
  } else {
    for (int e = 0; e < kQK32; ++e) dst[e] = static_cast<float>(level(t, block, r, e)) * d;
  }
}

void fill_scalar_packed_legacy2(TypeTable& table) {
  table.packed_tile[static_cast<int>(DType::Q4_1)] = tile_scalar<DType::Q4_1>;
  table.packed_tile[static_cast<int>(DType::Q5_1)] = tile_scalar<DType::Q5_1>;
  table.packed_tile[static_cast<int>(DType::IQ4_NL)] = tile_scalar<DType::IQ4_NL>;
}

}  // namespace slm::kernels
