// Packed layouts of Q3_K and Q2_K (internal.h): repacking one row's
// super-block into a 16-row group, reading a row back as floats, and the
// scalar oracle tiles that the SIMD tiles (x86_avx512_packed_k23.cpp) must
// match bit for bit. The oracles take the steps of the types' own scalar
// vec_dot (scalar_kquants.cpp): exact integer sums per 16-wide sub-block
// times the sub-block scale (Q2_K: and the mins times the activation's
// sub-block sums), then packed.cpp's float steps for K-quant tiles.
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

constexpr int64_t kHalfs = kPackRows * 2;  // fp16 d (or dmin) of the group's rows

// Q3_K sections: d[16], sc[16][16] int8, qs words [2][8][16], hm words [8][16].
constexpr int64_t kQ3Sc = kHalfs;
constexpr int64_t kQ3Qs = kQ3Sc + 16 * kPackRows;
constexpr int64_t kQ3Hm = kQ3Qs + kPackRows * kQKK / 4;
constexpr int64_t kQ3Bytes = kQ3Hm + kPackRows * kQKK / 8;
static_assert(kQ3Bytes == kPackRows * 114);

// Byte i of word w (w counts 16-row words from `at`) of row r.
uint8_t word_byte(const uint8_t* block, int64_t at, int w, int r, int i) {
  return block[at + (w * kPackRows + r) * 4 + i];
}

// Level (0..7) of element e = 128h + 32j + 4k + i of row r.
int q3_level(const uint8_t* block, int r, int e) {
  const int h = e / 128, j = (e % 128) / 32, k = (e % 32) / 4, i = e % 4;
  const int low = (word_byte(block, kQ3Qs, 8 * h + k, r, i) >> (2 * j)) & 3;
  const int high = (word_byte(block, kQ3Hm, k, r, i) >> (4 * h + j)) & 1;
  return low | high << 2;
}

int q3_scale(const uint8_t* block, int r, int s) {
  return static_cast<int8_t>(block[kQ3Sc + s * kPackRows + r]);
}

void pack_q3_k(const BlockQ3_K& blk, int r, uint8_t* out) {
  std::memcpy(out + 2 * r, &blk.d, 2);
  for (int s = 0; s < 16; ++s)
    out[kQ3Sc + s * kPackRows + r] = static_cast<uint8_t>(q3k_scale(blk.scales, s));
  for (int w = 0; w < 16; ++w)
    std::memcpy(out + kQ3Qs + (w * kPackRows + r) * 4, blk.qs + 4 * w, 4);
  for (int k = 0; k < 8; ++k)
    std::memcpy(out + kQ3Hm + (k * kPackRows + r) * 4, blk.hmask + 4 * k, 4);
}

// Q2_K sections: d[16], dmin[16], sc[8][16][2] (pairs of the file's scale
// bytes), qs words [2][8][16] as Q3_K's.
constexpr int64_t kQ2Sc = 2 * kHalfs;
constexpr int64_t kQ2Qs = kQ2Sc + 16 * kPackRows;
constexpr int64_t kQ2Bytes = kQ2Qs + kPackRows * kQKK / 4;
static_assert(kQ2Bytes == kPackRows * 84);

// Level (0..3) of element e = 128h + 32j + 4k + i of row r.
int q2_level(const uint8_t* block, int r, int e) {
  const int h = e / 128, j = (e % 128) / 32, k = (e % 32) / 4, i = e % 4;
  return (word_byte(block, kQ2Qs, 8 * h + k, r, i) >> (2 * j)) & 3;
}

// Sub-block s's scale byte of row r (low nibble scale, high nibble min).
uint8_t q2_scale_byte(const uint8_t* block, int r, int s) {
  return block[kQ2Sc + ((s / 2) * kPackRows + r) * 2 + s % 2];
}

void pack_q2_k(const BlockQ2_K& blk, int r, uint8_t* out) {
  std::memcpy(out + 2 * r, &blk.d, 2);
  std::memcpy(out + kHalfs + 2 * r, &blk.dmin, 2);
  for (int p = 0; p < 8; ++p)
    std::memcpy(out + kQ2Sc + (p * kPackRows + r) * 2, blk.scales + 2 * p, 2);
  for (int w = 0; w < 16; ++w)
    std::memcpy(out + kQ2Qs + (w * kPackRows + r) * 4, blk.qs + 4 * w, 4);
}

float row_half(const uint8_t* block, int64_t at, int r) {
  uint16_t h;
  std::memcpy(&h, block + at + 2 * r, 2);
  return fp16_to_f32(h);
}

// The tile frame of packed.cpp's oracles: tokens x rows x blocks, one float
// accumulator, step(act, r, b, block, acc) per block.
template <typename Step>
void walk(int64_t nb, int64_t block_bytes, const uint8_t* group, const PackedAct* act, int nt,
          float* y, int64_t ldy, int nr, const Step& step) {
  for (int t = 0; t < nt; ++t)
    for (int r = 0; r < nr; ++r) {
      float acc = 0;
      for (int64_t b = 0; b < nb; ++b) step(act[t], r, b, group + b * block_bytes, acc);
      y[t * ldy + r] = acc;
    }
}

// Q3_K: per sub-block s, corr[s] (= -4 x the activation's sum over s, the
// level offset) plus sum(level * q), times the signed scale; then
// fma(float(isum) * d, dy, acc) as every SIMD tile does.
void tile_q3_k(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y,
               int64_t ldy, int nr) {
  walk(nb, kQ3Bytes, group, act, nt, y, ldy, nr,
       [](const PackedAct& a, int r, int64_t b, const uint8_t* block, float& acc) {
         const int8_t* q8 = static_cast<const BlockQ8_K*>(a.q)[b].qs;
         const int32_t* corr = a.corr + kKCorr * b;
         int32_t isum = 0;
         for (int s = 0; s < 16; ++s) {
           int32_t dot = corr[s];
           for (int e = 16 * s; e < 16 * (s + 1); ++e) dot += q3_level(block, r, e) * q8[e];
           isum += q3_scale(block, r, s) * dot;
         }
         acc = std::fma(static_cast<float>(isum) * row_half(block, 0, r), a.d[b], acc);
       });
}

// Q2_K: per sub-block s, sum(level * q) times the 4-bit scale, and the 4-bit
// min times corr[s] (the activation's sum over s); then the two fused
// multiply-adds of packed.cpp's Q4_K oracle, the mins' one minus.
void tile_q2_k(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y,
               int64_t ldy, int nr) {
  walk(nb, kQ2Bytes, group, act, nt, y, ldy, nr,
       [](const PackedAct& a, int r, int64_t b, const uint8_t* block, float& acc) {
         const int8_t* q8 = static_cast<const BlockQ8_K*>(a.q)[b].qs;
         const int32_t* corr = a.corr + kKCorr * b;
         int32_t isum = 0, minsum = 0;
         for (int s = 0; s < 16; ++s) {
           int32_t dot = 0;
           for (int e = 16 * s; e < 16 * (s + 1); ++e) dot += q2_level(block, r, e) * q8[e];
           const uint8_t sc = q2_scale_byte(block, r, s);
           isum += (sc & 0xF) * dot;
           minsum += (sc >> 4) * corr[s];
         }
         acc = std::fma(static_cast<float>(isum) * row_half(block, 0, r), a.d[b], acc);
         acc = std::fma(-(static_cast<float>(minsum) * row_half(block, kHalfs, r)), a.d[b], acc);
       });
}

}  // namespace

int64_t packed_k23_block_bytes(DType t) {
  return t == DType::Q3_K ? kQ3Bytes : t == DType::Q2_K ? kQ2Bytes : 0;
}

void pack_k23(DType t, const uint8_t* src_block, int r, uint8_t* out) {
  if (t == DType::Q3_K) pack_q3_k(*reinterpret_cast<const BlockQ3_K*>(src_block), r, out);
  if (t == DType::Q2_K) pack_q2_k(*reinterpret_cast<const BlockQ2_K*>(src_block), r, out);
}

// As scalar_kquants.cpp's dequantize_unpacked: d * scale * q - dmin * min,
// in that order (Q3_K: q = level - 4, no min), so the bits match.
void dequantize_k23(DType t, const uint8_t* block, int r, float* dst) {
  if (t == DType::Q3_K) {
    const float d = row_half(block, 0, r), dmin = 0;
    for (int e = 0; e < kQKK; ++e)
      dst[e] = d * static_cast<float>(q3_scale(block, r, e / 16)) *
                   static_cast<float>(q3_level(block, r, e) - 4) -
               dmin * 0.0f;
  } else if (t == DType::Q2_K) {
    const float d = row_half(block, 0, r), dmin = row_half(block, kHalfs, r);
    for (int e = 0; e < kQKK; ++e) {
      const uint8_t sc = q2_scale_byte(block, r, e / 16);
      dst[e] = d * static_cast<float>(sc & 0xF) * static_cast<float>(q2_level(block, r, e)) -
               dmin * static_cast<float>(sc >> 4);
    }
  }
}

void fill_scalar_packed_k23(TypeTable& table) {
  table.packed_tile[static_cast<int>(DType::Q3_K)] = tile_q3_k;
  table.packed_tile[static_cast<int>(DType::Q2_K)] = tile_q2_k;
}

}  // namespace slm::kernels
