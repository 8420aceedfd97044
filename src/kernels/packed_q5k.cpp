// Packed Q5_K (layout in internal.h, offsets in packed_q5k): one row of a
// file super-block into a 16-row group, the scalar tile that is the oracle for
// the SIMD ones, and a packed row back to floats (dequantize_stripe).
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

using namespace packed_q5k;

float row_half(const uint8_t* block, int64_t at, int r) {
  uint16_t h;
  std::memcpy(&h, block + at + 2 * r, 2);
  return fp16_to_f32(h);
}

// Level (0..31) of element e of row r: nibble as Q4_K's (chunk e / 64, word
// (e % 32) / 4, high nibbles for odd sub-blocks), fifth bit e / 32 of the
// row's qh byte e % 32.
int level(const uint8_t* block, int r, int e) {
  const int c = e / 64, l = e % 32, k = l / 4, i = l % 4;
  const uint8_t byte = block[kQs + ((c * 8 + k) * kPackRows + r) * 4 + i];
  const int nibble = (e / 32) % 2 == 0 ? byte & 0xF : byte >> 4;
  const int high = (block[kQh + (k * kPackRows + r) * 4 + i] >> (e / 32)) & 1;
  return nibble | high << 4;
}

int scale(const uint8_t* block, int r, int j) {
  return block[kSc + j * kPackRows + r];
}
int min_of(const uint8_t* block, int r, int j) {
  return block[kM + ((j / 2) * kPackRows + r) * 2 + j % 2];
}

}  // namespace

void pack_q5_k(const BlockQ5_K& blk, int r, uint8_t* out) {
  std::memcpy(out + kD + 2 * r, &blk.d, 2);
  std::memcpy(out + kDmin + 2 * r, &blk.dmin, 2);
  for (int j = 0; j < 8; ++j)
    unpack_scale_min_k4(j, blk.scales, out + kSc + j * kPackRows + r,
                        out + kM + ((j / 2) * kPackRows + r) * 2 + j % 2);
  for (int k = 0; k < 8; ++k) std::memcpy(out + kQh + (k * kPackRows + r) * 4, blk.qh + 4 * k, 4);
  for (int c = 0; c < 4; ++c)
    for (int k = 0; k < 8; ++k)
      std::memcpy(out + kQs + ((c * 8 + k) * kPackRows + r) * 4, blk.qs + 32 * c + 4 * k, 4);
}

// Q4_K's oracle steps (packed.cpp tile_scalar_k) over levels 0..31: per
// 32-wide sub-block an exact integer dot times its scale, the mins against
// the activation's sub-block sums (corr), then two fused multiply-adds with
// the token's scale, the second subtracting the mins term.
void tile_scalar_q5_k(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y,
                      int64_t ldy, int nr) {
  for (int t = 0; t < nt; ++t)
    for (int r = 0; r < nr; ++r) {
      float acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* block = group + b * kBytes;
        const int8_t* q8 = static_cast<const BlockQ8_K*>(act[t].q)[b].qs;
        const int32_t* corr = act[t].corr + kKCorr * b;
        int32_t isum = 0, minsum = 0;
        for (int j = 0; j < 8; ++j) {
          int32_t dot = 0;
          for (int e = 32 * j; e < 32 * (j + 1); ++e) dot += level(block, r, e) * q8[e];
          isum += scale(block, r, j) * dot;
          minsum += min_of(block, r, j) * corr[j];
        }
        const float dy = act[t].d[b];
        acc = std::fma(static_cast<float>(isum) * row_half(block, kD, r), dy, acc);
        acc = std::fma(-(static_cast<float>(minsum) * row_half(block, kDmin, r)), dy, acc);
      }
      y[t * ldy + r] = acc;
    }
}

void dequantize_packed_q5_k(const uint8_t* block, int r, float* dst) {
  const float d = row_half(block, kD, r), dmin = row_half(block, kDmin, r);
  for (int e = 0; e < kQKK; ++e) {
    const int j = e / 32;
    dst[e] = d * static_cast<float>(scale(block, r, j)) * static_cast<float>(level(block, r, e)) -
             dmin * static_cast<float>(min_of(block, r, j));
  }
}

}  // namespace slm::kernels
