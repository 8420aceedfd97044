// GGUF / ggml block layouts, byte for byte. Each struct is packed and its size
// is checked against ggml's (and against base/dtype.h's table) so a block read
// from a model file can be viewed in place.
//
// Conventions shared by the formats (ggml's):
// - "d" is the block scale, stored as IEEE half (uint16_t bits) except Q8_K.
// - 32-element blocks store element j in the low nibble of qs[j] and element
//   j + 16 in the high nibble (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL).
// - K-quants group 256 elements into a super-block with per-sub-block scales
//   quantized against the super-block scale.
#pragma once

#include <cstdint>

namespace slm::kernels {

constexpr int kQK32 = 32;         // elements per block of the legacy types and IQ4_NL
constexpr int kQKK = 256;         // elements per K-quant super-block
constexpr int kKScaleBytes = 12;  // packed 6-bit scales and mins of Q4_K / Q5_K

// x = d * (q - 8), q in [0, 16)
struct __attribute__((packed)) BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK32 / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// x = d * q + m, q in [0, 16)
struct __attribute__((packed)) BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK32 / 2];
};
static_assert(sizeof(BlockQ4_1) == 20);

// x = d * (q - 16), q in [0, 32); bit 4 of element j is bit j of qh (LE u32)
struct __attribute__((packed)) BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK32 / 2];
};
static_assert(sizeof(BlockQ5_0) == 22);

// x = d * q + m, q in [0, 32)
struct __attribute__((packed)) BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK32 / 2];
};
static_assert(sizeof(BlockQ5_1) == 24);

// x = d * q, q in [-127, 127]
struct __attribute__((packed)) BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK32];
};
static_assert(sizeof(BlockQ8_0) == 34);

// Q8_0 plus s = d * sum(qs); listed for completeness (slm has no kernels for it).
struct __attribute__((packed)) BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK32];
};
static_assert(sizeof(BlockQ8_1) == 36);

// x = d * kIq4nlValues[q], q in [0, 16)
struct __attribute__((packed)) BlockIq4Nl {
  uint16_t d;
  uint8_t qs[kQK32 / 2];
};
static_assert(sizeof(BlockIq4Nl) == 18);

// 16 sub-blocks of 16: x = d * (scales[s] & 15) * q - dmin * (scales[s] >> 4),
// q in [0, 4). Element e (e < 256) sits in qs[32 * (e / 128) + e % 32] at bit
// 2 * ((e % 128) / 32).
struct __attribute__((packed)) BlockQ2_K {
  uint8_t scales[kQKK / 16];
  uint8_t qs[kQKK / 4];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(BlockQ2_K) == 84);

// 16 sub-blocks of 16: x = d * (scale6[s] - 32) * (q - 4), q in [0, 8). Low two
// bits as in Q2_K; bit 2 is bit (e / 32) of hmask[e % 32]. The 6-bit scales are
// packed: low nibbles in scales[0..8), high pairs in scales[8..12).
struct __attribute__((packed)) BlockQ3_K {
  uint8_t hmask[kQKK / 8];
  uint8_t qs[kQKK / 4];
  uint8_t scales[12];
  uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110);

// 8 sub-blocks of 32: x = d * sc[s] * q - dmin * m[s], q in [0, 16), sc and m
// 6-bit (see unpack_scale_min_k4). Each 64 elements share 32 bytes of qs: the
// first 32 elements in the low nibbles, the next 32 in the high nibbles.
struct __attribute__((packed)) BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

// Q4_K plus a fifth bit: element e's bit 4 is bit (e / 32) of qh[e % 32].
struct __attribute__((packed)) BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

// 16 sub-blocks of 16: x = d * scales[s] * (q - 32), q in [0, 64). Per half of
// 128 (h): ql[64h + l] holds elements l (low) and l + 64 (high nibble),
// ql[64h + 32 + l] elements l + 32 and l + 96; qh[32h + l] holds their top two
// bits at shifts 0, 2, 4, 6 for elements l, l + 32, l + 64, l + 96.
struct __attribute__((packed)) BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// Activation format for K-quant dot products: x = d * q, q in [-127, 127];
// bsums[s] = sum of qs over sub-block s of 16 (lets kernels apply mins and
// offsets per sub-block without touching qs again).
struct __attribute__((packed)) BlockQ8_K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};
static_assert(sizeof(BlockQ8_K) == 292);

// The IQ4_NL code book (non-uniform 4-bit levels).
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// Scale and min of sub-block j (j < 8) from the 12 packed bytes of Q4_K/Q5_K:
// sub-blocks 0..3 keep 6 bits in bytes j and j + 4; sub-blocks 4..7 keep the low
// nibbles in byte j + 4 and their top two bits in the spare bits 6..7 of bytes
// j - 4 (scale) and j (min).
inline void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Signed 6-bit scale of sub-block j (j < 16) of Q3_K, already minus 32.
inline int q3k_scale(const uint8_t* scales, int j) {
  const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

}  // namespace slm::kernels
