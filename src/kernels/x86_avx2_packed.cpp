// AVX2 tiles over packed Q4_0 / Q5_0 / Q4_K groups (layout in internal.h), for
// x86-64 CPUs without AVX-512 (most laptops). A 256-bit register holds half
// a group's word vector: lanes are rows 8h..8h+7. VPMADDUBSW multiplies a
// lane's 4 unsigned quants with 4 broadcast activation bytes and adds them in
// pairs to int16; the words of a block are summed in int16 (bounds below) and
// widened once with VPMADDWD, so a 32-element block costs 8 VPMADDUBSW per
// half and token with no horizontal sums. The integer sums are exact and the float steps
// those of the scalar oracle, so results are bit-identical to it.
//
// Q8_0, Q6_K and F16 stay on the plain kernels here: Q8_0's unsigned quants
// (up to 255) times activations (up to 127) would saturate VPMADDUBSW's int16
// pairs, and a Q6_K tile (6-bit levels, at most two words per int16 sum)
// measured slower than the plain kernel when decoding (12-22 vs 16-32 GB/s).
#include <immintrin.h>

#include <cstring>

#include "kernels/blocks.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

constexpr int kScaleBytes = kPackRows * 2;
constexpr int kHalfRows = kPackRows / 2;
// Tokens per pass over a group (each pass keeps kNt accumulators, 8 weight
// vectors and a few temporaries in AVX2's 16 registers).
constexpr int kMaxNt = 4;

inline __m256i bcast_word(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

inline void store_rows(float* y, __m256 v, int nr) {
  if (nr >= kHalfRows) {
    _mm256_storeu_ps(y, v);
    return;
  }
  alignas(32) float tmp[kHalfRows];
  _mm256_store_ps(tmp, v);
  for (int r = 0; r < nr; ++r) y[r] = tmp[r];
}

// Rows 8h..8h+7 of a group for kNt tokens. Q4_0 sums all 8 words of a block
// in int16 (|sum| <= 8 * 2 * 15 * 127 = 30480); Q5_0 two runs of 4 words
// (4 * 2 * 31 * 127 = 31496).
template <DType kType, int kNt>
void tile_half(int64_t nb, const uint8_t* group, int h, const PackedAct* act, float* y, int64_t ldy,
               int nr) {
  constexpr int64_t kQhBytes = kType == DType::Q5_0 ? kPackRows * 4 : 0;
  constexpr int64_t kQsOffset = kScaleBytes + kQhBytes;
  constexpr int64_t kBlockBytes = kQsOffset + kPackRows * 16;
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[kNt];
  for (int t = 0; t < kNt; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = group + b * kBlockBytes;
    const __m256 dw =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2 * kHalfRows * h)));
    // w[k] pairs with activation bytes 4k.. (k < 4) or 16 + 4(k - 4)..
    __m256i w[8];
    for (int k = 0; k < 4; ++k) {
      const __m256i v =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQsOffset + 64 * k + 32 * h));
      w[k] = _mm256_and_si256(v, low4);
      w[k + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    }
    if constexpr (kType == DType::Q5_0) {
      // Bit k of each byte of qh is the fifth bit of word k (packed.cpp).
      const __m256i qh =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kScaleBytes + 32 * h));
      const __m256i bit4 = _mm256_set1_epi8(0x10);
      for (int k = 0; k < 8; ++k) {
        const __m256i hi = k < 4 ? _mm256_slli_epi32(qh, 4 - k) : _mm256_srli_epi32(qh, k - 4);
        w[k] = _mm256_or_si256(w[k], _mm256_and_si256(hi, bit4));
      }
    }
    for (int t = 0; t < kNt; ++t) {
      const int8_t* q = static_cast<const BlockQ8_0*>(act[t].q)[b].qs;
      __m256i lo16 = _mm256_maddubs_epi16(w[0], bcast_word(q));
      __m256i hi16 = _mm256_maddubs_epi16(w[4], bcast_word(q + 16));
      for (int k = 1; k < 4; ++k) {
        lo16 = _mm256_add_epi16(lo16, _mm256_maddubs_epi16(w[k], bcast_word(q + 4 * k)));
        hi16 = _mm256_add_epi16(hi16, _mm256_maddubs_epi16(w[k + 4], bcast_word(q + 16 + 4 * k)));
      }
      __m256i isum;
      if constexpr (kType == DType::Q4_0)
        isum = _mm256_madd_epi16(_mm256_add_epi16(lo16, hi16), ones);
      else
        isum = _mm256_add_epi32(_mm256_madd_epi16(lo16, ones), _mm256_madd_epi16(hi16, ones));
      isum = _mm256_add_epi32(isum, _mm256_set1_epi32(act[t].corr[b]));
      const __m256 sum = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), dw);
      acc[t] = _mm256_fmadd_ps(sum, _mm256_set1_ps(act[t].d[b]), acc[t]);
    }
  }
  for (int t = 0; t < kNt; ++t) store_rows(y + t * ldy, acc[t], nr);
}

// Decoding (one token): both halves in one pass, so the group streams from
// memory once; the words go straight into the int16 sums.
template <DType kType>
void tile_one_token(int64_t nb, const uint8_t* group, const PackedAct& act, float* y, int nr) {
  constexpr int64_t kQhBytes = kType == DType::Q5_0 ? kPackRows * 4 : 0;
  constexpr int64_t kQsOffset = kScaleBytes + kQhBytes;
  constexpr int64_t kBlockBytes = kQsOffset + kPackRows * 16;
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1),
                bit4 = _mm256_set1_epi8(0x10);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = group + b * kBlockBytes;
    const int8_t* q = static_cast<const BlockQ8_0*>(act.q)[b].qs;
    __m256i lo16[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    __m256i hi16[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    __m256i qh[2] = {};
    if constexpr (kType == DType::Q5_0)
      for (int h = 0; h < 2; ++h)
        qh[h] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kScaleBytes + 32 * h));
    for (int k = 0; k < 4; ++k) {
      const __m256i qlo = bcast_word(q + 4 * k), qhi = bcast_word(q + 16 + 4 * k);
      for (int h = 0; h < 2; ++h) {
        const __m256i v =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQsOffset + 64 * k + 32 * h));
        __m256i wlo = _mm256_and_si256(v, low4),
                whi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        if constexpr (kType == DType::Q5_0) {
          // Bits k and k + 4 of each qh byte are the fifth bits of words k and k + 4.
          wlo = _mm256_or_si256(wlo, _mm256_and_si256(_mm256_slli_epi32(qh[h], 4 - k), bit4));
          whi = _mm256_or_si256(whi, _mm256_and_si256(_mm256_srli_epi32(qh[h], k), bit4));
        }
        lo16[h] = _mm256_add_epi16(lo16[h], _mm256_maddubs_epi16(wlo, qlo));
        hi16[h] = _mm256_add_epi16(hi16[h], _mm256_maddubs_epi16(whi, qhi));
      }
    }
    const __m256 dy = _mm256_set1_ps(act.d[b]);
    const __m256i corr = _mm256_set1_epi32(act.corr[b]);
    for (int h = 0; h < 2; ++h) {
      __m256i isum;
      if constexpr (kType == DType::Q4_0)
        isum = _mm256_madd_epi16(_mm256_add_epi16(lo16[h], hi16[h]), ones);
      else
        isum = _mm256_add_epi32(_mm256_madd_epi16(lo16[h], ones), _mm256_madd_epi16(hi16[h], ones));
      isum = _mm256_add_epi32(isum, corr);
      const __m256 dw = _mm256_cvtph_ps(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2 * kHalfRows * h)));
      acc[h] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), dw), dy, acc[h]);
    }
  }
  for (int h = 0; h < 2 && kHalfRows * h < nr; ++h)
    store_rows(y + kHalfRows * h, acc[h], nr - kHalfRows * h);
}

template <DType kType>
void tile_any(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y, int64_t ldy,
              int nr) {
  if (nt == 1) return tile_one_token<kType>(nb, group, act[0], y, nr);
  // Prompts: half 0 streams the group from memory; half 1 finds it in L1 / L2.
  for (int h = 0; h < 2 && kHalfRows * h < nr; ++h) {
    float* yh = y + kHalfRows * h;
    const int nrh = nr - kHalfRows * h;
    in_token_passes<kMaxNt>(nt, [&](int t0, auto count) {
      tile_half<kType, decltype(count)::value>(nb, group, h, act + t0, yh + t0 * ldy, ldy, nrh);
    });
  }
}

// ------------------------------------------------------------------ K-quants
// Q4_K one token at a time (the unpacked weights of a super-block do not fit
// AVX2's registers for several tokens; prompts re-read the group from L1 / L2
// per token), both halves in one pass over the group so decoding streams it
// once (two passes measured ~15% slower).
inline __m256i load_bytes8_u(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load_half8(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256i load256(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// Q4_K: a 32-element sub-block is 8 words, summed in int16 (<= 30480) and
// widened once, times its 6-bit scale; the mins term from the activation's
// sub-block sums.
void tile_q4_k_token(int64_t nb, const uint8_t* group, const PackedAct& act, float* y, int nr) {
  constexpr int64_t kSc = 2 * kScaleBytes, kM = kSc + 8 * kPackRows, kQs = kM + 8 * kPackRows;
  constexpr int64_t kBlockBytes = kQs + kPackRows * 128;
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = group + b * kBlockBytes;
    const int8_t* qb = static_cast<const BlockQ8_K*>(act.q)[b].qs;
    __m256i isum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int c = 0; c < 4; ++c) {
      const int8_t* q = qb + 64 * c;
      __m256i lo16[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
      __m256i hi16[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
      for (int k = 0; k < 8; ++k) {
        const __m256i qlo = bcast_word(q + 4 * k), qhi = bcast_word(q + 32 + 4 * k);
        for (int h = 0; h < 2; ++h) {
          const __m256i v = load256(blk + kQs + 64 * (8 * c + k) + 32 * h);
          lo16[h] = _mm256_add_epi16(lo16[h], _mm256_maddubs_epi16(_mm256_and_si256(v, low4), qlo));
          hi16[h] = _mm256_add_epi16(
              hi16[h], _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), qhi));
        }
      }
      for (int h = 0; h < 2; ++h) {
        const __m256i sc_lo = load_bytes8_u(blk + kSc + 16 * (2 * c) + 8 * h);
        const __m256i sc_hi = load_bytes8_u(blk + kSc + 16 * (2 * c + 1) + 8 * h);
        isum[h] = _mm256_add_epi32(
            isum[h], _mm256_add_epi32(_mm256_mullo_epi32(_mm256_madd_epi16(lo16[h], ones), sc_lo),
                                      _mm256_mullo_epi32(_mm256_madd_epi16(hi16[h], ones), sc_hi)));
      }
    }
    const int32_t* corr = act.corr + kKCorr * b;
    const __m256 dy = _mm256_set1_ps(act.d[b]);
    for (int h = 0; h < 2; ++h) {
      __m256i minsum = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j)
        minsum =
            _mm256_add_epi32(minsum, _mm256_mullo_epi32(load_bytes8_u(blk + kM + 16 * j + 8 * h),
                                                        _mm256_set1_epi32(corr[j])));
      acc[h] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum[h]), load_half8(blk + 16 * h)),
                               dy, acc[h]);
      acc[h] = _mm256_fnmadd_ps(
          _mm256_mul_ps(_mm256_cvtepi32_ps(minsum), load_half8(blk + kScaleBytes + 16 * h)), dy,
          acc[h]);
    }
  }
  for (int h = 0; h < 2 && kHalfRows * h < nr; ++h)
    store_rows(y + kHalfRows * h, acc[h], nr - kHalfRows * h);
}

template <void (*kToken)(int64_t, const uint8_t*, const PackedAct&, float*, int)>
void tile_any_k(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y,
                int64_t ldy, int nr) {
  for (int t = 0; t < nt; ++t) kToken(nb, group, act[t], y + t * ldy, nr);
}

}  // namespace

void fill_avx2_packed(TypeTable& table) {
  static_assert(kPackRows == 16, "tiles are written for 16-row groups");
  table.packed_tile[static_cast<int>(DType::Q4_0)] = tile_any<DType::Q4_0>;
  table.packed_tile[static_cast<int>(DType::Q5_0)] = tile_any<DType::Q5_0>;
  table.packed_tile[static_cast<int>(DType::Q4_K)] = tile_any_k<tile_q4_k_token>;
  for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q4_K})
    table.packed_native[static_cast<int>(t)] = true;
}

}  // namespace slm::kernels
