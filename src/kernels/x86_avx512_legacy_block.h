// A packed Q4_0 / Q5_0 / Q8_0 group block (packed.cpp) as the AVX-512 tiles
// (x86_avx512_packed.cpp) and the AMX tiles (x86_amx.cpp) read it: kPackRows
// F16 scales, Q5_0's high bits, then the quants word by word. Include only
// from files built with AVX-512 (BW) enabled.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "base/dtype.h"
#include "kernels/internal.h"

namespace slm::kernels::avx512_legacy {

constexpr int kScaleBytes = kPackRows * 2;

template <DType kType>
struct Block {
  static constexpr int64_t kQhBytes = kType == DType::Q5_0 ? kPackRows * 4 : 0;
  static constexpr int64_t kQsOffset = kScaleBytes + kQhBytes;
  static constexpr int64_t kBytes =
      kQsOffset + (kType == DType::Q8_0 ? kPackRows * 32 : kPackRows * 16);
};

// Q5_0 / Q5_1: ORs bit k of the block's reordered high bits (packed.cpp's
// q5_bit_position, one dword per row at qh) into word k as bit 4, after
// unpack_nibble_words (or legacy2's weight_words) made the nibble words.
[[gnu::always_inline]] inline void or_fifth_bits(const uint8_t* qh_words, __m512i w[8]) {
  const __m512i qh = _mm512_loadu_si512(qh_words);
  const __m512i bit4 = _mm512_set1_epi8(0x10);
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) {
    const __m512i hi = k < 4 ? _mm512_slli_epi32(qh, 4 - k) : _mm512_srli_epi32(qh, k - 4);
    w[k] = _mm512_ternarylogic_epi32(w[k], hi, bit4, 0xF8);  // w | (hi & bit4), one op
  }
}

// Q4_0 / Q5_0: the block's 4 loaded nibble words as 8 words of unsigned
// weights [8][64 bytes]: word k's low nibbles are elements 4k.. (w[k]), its
// high nibbles 16 + 4k.. (w[4 + k]); Q5_0 ORs bit k of qh's bytes in as
// bit 4 (packed.cpp).
template <DType kType>
inline __attribute__((always_inline)) void unpack_nibble_words(const uint8_t* blk, __m512i w[8]) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    const __m512i v = _mm512_loadu_si512(blk + Block<kType>::kQsOffset + 64 * k);
    w[k] = _mm512_and_si512(v, low4);
    w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
  }
  if constexpr (kType == DType::Q5_0) or_fifth_bits(blk + kScaleBytes, w);
}

// Any of the three types' block as 8 words of unsigned weights in
// unpack_nibble_words' order (Q8_0's quants stored biased, as they are).
template <DType kType>
inline __attribute__((always_inline)) void weight_words(const uint8_t* blk, __m512i w[8]) {
  if constexpr (kType == DType::Q8_0) {
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) w[k] = _mm512_loadu_si512(blk + Block<kType>::kQsOffset + 64 * k);
  } else {
    unpack_nibble_words<kType>(blk, w);
  }
}

}  // namespace slm::kernels::avx512_legacy
