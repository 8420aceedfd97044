// PackedMatrix: load-time repacking of Q4_0 / Q5_0 / Q8_0 / Q4_K / Q6_K / F16
// weights (Q3_K and Q2_K: packed_k23.cpp;
// Q5_K: packed_q5k.cpp) into 16-row interleaved groups
// (layout in internal.h), and the scalar tile kernels that are the oracle
// for the SIMD ones. The matmul driver over packed matrices is
// packed_matmul.cpp. Q4_1 / Q5_1 / IQ4_NL blocks and oracles live in
// packed_legacy2.cpp.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "base/check.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

constexpr int64_t kScaleBytes = kPackRows * 2;  // fp16 d of the group's rows

// Words of 4 quant bytes per row and block.
int words_of(DType t) {
  return t == DType::Q8_0 ? kQK32 / 4 : kQK32 / 8;
}

// Q5_0's 32 high bits per row, reordered so that the bit of element e sits
// at 8 * (e % 4) + word(e), word(e) = e / 4 for e < 16 and 4 + (e - 16) / 4:
// then word k's four high bits are bit k of each byte, one shift and mask
// away from bit 4 of the bytes of the nibble word.
int q5_bit_position(int e) {
  const int word = e < 16 ? e / 4 : 4 + (e - 16) / 4;
  return 8 * (e % 4) + word;
}
int64_t qs_offset(DType t) {
  return kScaleBytes + (t == DType::Q5_0 ? kPackRows * 4 : 0);
}

// Q4_K super-block sections (internal.h).
constexpr int64_t kK4Sc = 2 * kScaleBytes;       // sc[8][16]
constexpr int64_t kK4M = kK4Sc + 8 * kPackRows;  // m[8][16]
constexpr int64_t kK4Qs = kK4M + 8 * kPackRows;  // qs[4][8][16] words

// Q6_K super-block sections (internal.h).
constexpr int64_t kK6Sc = kScaleBytes;            // sc[16][16]
constexpr int64_t kK6W = kK6Sc + 16 * kPackRows;  // words [2][8][3][16]

void pack_q6_k(const BlockQ6_K& blk, int r, uint8_t* out) {
  std::memcpy(out + 2 * r, &blk.d, 2);
  for (int sb = 0; sb < 16; ++sb)
    out[kK6Sc + sb * kPackRows + r] = static_cast<uint8_t>(blk.scales[sb]);
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 8; ++k) {
      const uint8_t* src[3] = {blk.ql + 64 * h + 4 * k, blk.ql + 64 * h + 32 + 4 * k,
                               blk.qh + 32 * h + 4 * k};
      for (int part = 0; part < 3; ++part)
        std::memcpy(out + kK6W + (((h * 8 + k) * 3 + part) * kPackRows + r) * 4, src[part], 4);
    }
}

// Level (0..63) of element e of row r in a packed Q6_K super-block.
int q6_level(const uint8_t* block, int r, int e) {
  const int h = e / 128, m = e % 128, quarter = m / 32, l = m % 32, k = l / 4, i = l % 4;
  auto byte = [&](int part) {
    return block[kK6W + (((h * 8 + k) * 3 + part) * kPackRows + r) * 4 + i];
  };
  const int a = byte(0), b = byte(1), c = byte(2);
  const int nibble = quarter == 0   ? a & 0xF
                     : quarter == 1 ? b & 0xF
                     : quarter == 2 ? a >> 4
                                    : b >> 4;
  return nibble | ((c >> (2 * quarter)) & 3) << 4;
}

// Level (0..15) of element e of row r in a packed Q4_K super-block: chunk
// e / 64, word (e % 32) / 4, the high nibbles for the odd sub-blocks.
int q4k_level(const uint8_t* block, int r, int e) {
  const int c = e / 64, l = e % 32;
  const uint8_t byte = block[kK4Qs + ((c * 8 + l / 4) * kPackRows + r) * 4 + l % 4];
  return (e / 32) % 2 == 0 ? byte & 0xF : byte >> 4;
}

void pack_q4_k(const BlockQ4_K& blk, int r, uint8_t* out) {
  std::memcpy(out + 2 * r, &blk.d, 2);
  std::memcpy(out + kScaleBytes + 2 * r, &blk.dmin, 2);
  for (int j = 0; j < 8; ++j)
    unpack_scale_min_k4(j, blk.scales, out + kK4Sc + j * kPackRows + r,
                        out + kK4M + j * kPackRows + r);
  for (int c = 0; c < 4; ++c)
    for (int k = 0; k < 8; ++k)
      std::memcpy(out + kK4Qs + ((c * 8 + k) * kPackRows + r) * 4, blk.qs + 32 * c + 4 * k, 4);
}

// F16: block b of row r, its 32 halfs spread over the block's columns.
void pack_f16(const uint16_t* row, int64_t b, int r, uint8_t* out) {
  for (int c = 0; c < kQK32; ++c)
    std::memcpy(out + (c * kPackRows + r) * 2, row + b * kQK32 + c, 2);
}

}  // namespace

// Bytes of a transparent huge page (x86-64 and the usual aarch64 kernels).
constexpr size_t kHugePage = size_t{2} << 20;

// Storage for `size` bytes of a streamed weight (packed tiles, column
// copies), 64-byte aligned, freed with std::free. A matrix of at least one
// huge page is 2 MiB aligned and asks the kernel for huge pages: decoding
// streams every byte once per token, and with 4 KiB pages an Intel core
// (Xeon family 6 model 167) restarts its L2 streamer and walks the page table
// every 4 KiB, which held one thread to ~10 GB/s of packed Q4_0 against ~13
// with huge pages (bench_kernels decode). Only 2 MiB ranges that lie wholly
// inside the allocation become huge, so the tail costs no extra memory; where
// the kernel refuses (THP off), the pages stay small and nothing else changes.
StreamBytes allocate_packed(size_t size) {
  const size_t bytes = (size + 63) / 64 * 64;
  if (bytes < kHugePage) {
    StreamBytes p(static_cast<uint8_t*>(std::aligned_alloc(64, bytes)));
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  const size_t rounded = (bytes + 4095) / 4096 * 4096;  // whole pages for madvise
  StreamBytes p(static_cast<uint8_t*>(std::aligned_alloc(kHugePage, rounded)));
  if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(p.get(), rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  return p;
}

namespace {

// One group (kPackRows rows starting at src rows; n_valid of them real, the
// rest zero) into dst.
void pack_group(DType t, const uint8_t* src, size_t src_row, int n_valid, int64_t nb,
                uint8_t* dst) {
  SLM_DCHECK(n_valid > 0 && n_valid <= kPackRows);
  const int64_t block_bytes = packed_block_bytes(t);
  const int words = words_of(t);
  std::memset(dst, 0, static_cast<size_t>(block_bytes * nb));
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* out = dst + b * block_bytes;
    for (int r = 0; r < n_valid; ++r) {
      const uint8_t* row = src + static_cast<size_t>(r) * src_row;
      if (packed_is_legacy2(t)) {
        pack_legacy2(t, row, b, r, out);
      } else if (t == DType::F16) {
        pack_f16(reinterpret_cast<const uint16_t*>(row), b, r, out);
      } else if (t == DType::Q4_K) {
        pack_q4_k(reinterpret_cast<const BlockQ4_K*>(row)[b], r, out);
      } else if (t == DType::Q6_K) {
        pack_q6_k(reinterpret_cast<const BlockQ6_K*>(row)[b], r, out);
      } else if (t == DType::Q5_K) {
        pack_q5_k(reinterpret_cast<const BlockQ5_K*>(row)[b], r, out);
      } else if (packed_k23_block_bytes(t) != 0) {
        pack_k23(t, row + b * row_bytes(t, kQKK), r, out);
      } else if (t == DType::Q8_0) {
        const auto& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
        std::memcpy(out + 2 * r, &blk.d, 2);
        for (int k = 0; k < words; ++k) {
          uint32_t word;
          std::memcpy(&word, blk.qs + 4 * k, 4);
          word ^= 0x80808080u;  // q + 128 in each byte
          std::memcpy(out + kScaleBytes + (k * kPackRows + r) * 4, &word, 4);
        }
      } else if (t == DType::Q5_0) {
        const auto& blk = reinterpret_cast<const BlockQ5_0*>(row)[b];
        std::memcpy(out + 2 * r, &blk.d, 2);
        uint32_t qh, reordered = 0;
        std::memcpy(&qh, blk.qh, 4);
        for (int e = 0; e < kQK32; ++e) reordered |= ((qh >> e) & 1u) << q5_bit_position(e);
        std::memcpy(out + kScaleBytes + 4 * r, &reordered, 4);
        for (int k = 0; k < words; ++k)
          std::memcpy(out + qs_offset(t) + (k * kPackRows + r) * 4, blk.qs + 4 * k, 4);
      } else {
        const auto& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
        std::memcpy(out + 2 * r, &blk.d, 2);
        for (int k = 0; k < words; ++k)
          std::memcpy(out + kScaleBytes + (k * kPackRows + r) * 4, blk.qs + 4 * k, 4);
      }
    }
  }
}

// Unsigned quant of element e (e < 32) of row r in a packed block.
int packed_quant(DType t, const uint8_t* block, int r, int e) {
  const uint8_t* qs = block + qs_offset(t);
  if (t == DType::Q8_0) return qs[((e / 4) * kPackRows + r) * 4 + e % 4];
  const int k = (e % 16) / 4;
  const uint8_t byte = qs[(k * kPackRows + r) * 4 + e % 4];
  const int nibble = e < 16 ? byte & 0xF : byte >> 4;
  if (t != DType::Q5_0) return nibble;
  uint32_t qh;
  std::memcpy(&qh, block + kScaleBytes + 4 * r, 4);
  return nibble | static_cast<int>((qh >> q5_bit_position(e)) & 1u) << 4;
}

// Every oracle walks tokens x rows x blocks in the same order; only what one
// block adds to a (row, token) accumulator differs. Acc is float for the
// quantized types (y = acc) and F16Chains for F16; step(act, r, b, block, acc).
template <DType kType, typename Acc, typename Step>
void tile_scalar_walk(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y,
                      int64_t ldy, int nr, const Step& step) {
  const int64_t block_bytes = packed_block_bytes(kType);
  for (int t = 0; t < nt; ++t)
    for (int r = 0; r < nr; ++r) {
      Acc acc{};
      for (int64_t b = 0; b < nb; ++b) step(act[t], r, b, group + b * block_bytes, acc);
      y[t * ldy + r] = static_cast<float>(acc);
    }
}

// fp16 scale of row r at byte offset `at` of a packed block.
float row_half(const uint8_t* block, int64_t at, int r) {
  uint16_t h;
  std::memcpy(&h, block + at + 2 * r, 2);
  return fp16_to_f32(h);
}

// The float step every SIMD tile performs on an exact integer sum:
// float(isum) * dw rounded, then one fused multiply-add with the token's scale.
float scaled_fma(int32_t isum, float dw, float dy, float acc) {
  return std::fma(static_cast<float>(isum) * dw, dy, acc);
}

// The oracle: integer block sums, then the float steps of scaled_fma.
template <DType kType>
void tile_scalar(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y,
                 int64_t ldy, int nr) {
  tile_scalar_walk<kType, float>(
      nb, group, act, nt, y, ldy, nr,
      [](const PackedAct& a, int r, int64_t b, const uint8_t* block, float& acc) {
        int32_t isum = a.corr[b];
        const auto* q8 = static_cast<const BlockQ8_0*>(a.q);
        for (int e = 0; e < kQK32; ++e) isum += packed_quant(kType, block, r, e) * q8[b].qs[e];
        acc = scaled_fma(isum, row_half(block, 0, r), a.d[b], acc);
      });
}

// K-quant oracle: per sub-block (Q4_K: 8 of 32, Q6_K: 16 of 16) an exact
// integer dot, Q6_K's seeded with its -32 correction, times the sub-block
// scale; Q4_K's mins term from the activation's sub-block sums. Then the
// fused multiply-adds every SIMD tile performs (Q4_K: a second one, minus).
template <DType kType>
void tile_scalar_k(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y,
                   int64_t ldy, int nr) {
  constexpr bool kQ4 = kType == DType::Q4_K;
  constexpr int kSub = kQ4 ? 32 : 16;
  tile_scalar_walk<kType, float>(
      nb, group, act, nt, y, ldy, nr,
      [](const PackedAct& a, int r, int64_t b, const uint8_t* block, float& acc) {
        const int8_t* q8 = static_cast<const BlockQ8_K*>(a.q)[b].qs;
        const int32_t* corr = a.corr + kKCorr * b;
        int32_t isum = 0, minsum = 0;
        for (int s = 0; s < kQKK / kSub; ++s) {
          int32_t dot = kQ4 ? 0 : corr[s];
          for (int e = kSub * s; e < kSub * (s + 1); ++e)
            dot += (kQ4 ? q4k_level(block, r, e) : q6_level(block, r, e)) * q8[e];
          if constexpr (kQ4) {
            isum += block[kK4Sc + s * kPackRows + r] * dot;
            minsum += block[kK4M + s * kPackRows + r] * corr[s];
          } else {
            isum += static_cast<int8_t>(block[kK6Sc + s * kPackRows + r]) * dot;
          }
        }
        acc = scaled_fma(isum, row_half(block, 0, r), a.d[b], acc);
        if constexpr (kQ4)
          acc = std::fma(-(static_cast<float>(minsum) * row_half(block, kScaleBytes, r)), a.d[b],
                         acc);
      });
}

// F16 oracle: per row and token two float chains, over the even and the odd
// columns, each one fused multiply-add per element in column order, summed
// at the end (the SIMD tile's order exactly; fp16 -> f32 is exact).
struct F16Chains {
  float even = 0, odd = 0;
  explicit operator float() const { return even + odd; }
};
void tile_scalar_f16(int64_t nb, const uint8_t* group, const PackedAct* act, int nt, float* y,
                     int64_t ldy, int nr) {
  tile_scalar_walk<DType::F16, F16Chains>(
      nb, group, act, nt, y, ldy, nr,
      [](const PackedAct& a, int r, int64_t b, const uint8_t* block, F16Chains& acc) {
        const auto* x = static_cast<const float*>(a.q) + b * kQK32;
        for (int c = 0; c < kQK32; c += 2) {
          acc.even = std::fma(row_half(block, 2 * kPackRows * c, r), x[c], acc.even);
          acc.odd = std::fma(row_half(block, 2 * kPackRows * (c + 1), r), x[c + 1], acc.odd);
        }
      });
}

}  // namespace

int64_t packed_block_bytes(DType t) {
  switch (t) {
    case DType::Q8_0:
      return kScaleBytes + kPackRows * kQK32;
    case DType::Q4_0:
      return kScaleBytes + kPackRows * kQK32 / 2;
    case DType::Q5_0:
      return kScaleBytes + kPackRows * (4 + kQK32 / 2);
    case DType::Q4_K:
      return kK4Qs + kPackRows * kQKK / 2;
    case DType::Q6_K:
      return kK6W + kPackRows * (kQKK / 2 + kQKK / 4);
    case DType::Q5_K:
      return packed_q5k::kBytes;
    case DType::F16:
      return kPackRows * kQK32 * 2;
    case DType::Q4_1:
    case DType::Q5_1:
    case DType::IQ4_NL:
      return packed_legacy2_block_bytes(t);
    default:
      return packed_k23_block_bytes(t);
  }
}

void fill_scalar_packed(TypeTable& table) {
  table.packed_tile[static_cast<int>(DType::Q8_0)] = tile_scalar<DType::Q8_0>;
  table.packed_tile[static_cast<int>(DType::Q4_0)] = tile_scalar<DType::Q4_0>;
  table.packed_tile[static_cast<int>(DType::Q5_0)] = tile_scalar<DType::Q5_0>;
  table.packed_tile[static_cast<int>(DType::Q4_K)] = tile_scalar_k<DType::Q4_K>;
  table.packed_tile[static_cast<int>(DType::Q6_K)] = tile_scalar_k<DType::Q6_K>;
  table.packed_tile[static_cast<int>(DType::Q5_K)] = tile_scalar_q5_k;
  table.packed_tile[static_cast<int>(DType::F16)] = tile_scalar_f16;
  fill_scalar_packed_k23(table);
}

bool PackedMatrix::has_layout(DType wtype) {
  return packed_block_bytes(wtype) != 0;
}

bool PackedMatrix::pays(DType wtype) {
  return has_layout(wtype) && isa_table(active_isa()).packed_native[static_cast<int>(wtype)];
}

PackedMatrix PackedMatrix::pack(DType wtype, const void* w, int64_t rows, int64_t cols,
                                ThreadPool* pool) {
  PackedMatrix m;
  if (!has_layout(wtype) || rows <= 0 || cols <= 0 || cols % packed_block_elems(wtype) != 0)
    return m;
  const int64_t nb = cols / packed_block_elems(wtype);
  const int64_t n_groups = (rows + kPackRows - 1) / kPackRows;
  const size_t group_bytes = static_cast<size_t>(nb * packed_block_bytes(wtype));
  m.type_ = wtype;
  m.rows_ = rows;
  m.cols_ = cols;
  m.size_ = group_bytes * static_cast<size_t>(n_groups);
  m.bytes_ = allocate_packed(m.size_);
  const size_t src_row = static_cast<size_t>(row_bytes(wtype, cols));
  const auto* src = static_cast<const uint8_t*>(w);
  auto pack_groups = [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const int n_valid = static_cast<int>(std::min<int64_t>(kPackRows, rows - g * kPackRows));
      pack_group(wtype, src + static_cast<size_t>(g * kPackRows) * src_row, src_row, n_valid, nb,
                 m.bytes_.get() + static_cast<size_t>(g) * group_bytes);
    }
  };
  // Loading is mostly this loop and the first touch of the new pages (the
  // kernel zeroing them), both of which the threads share: `slm bench` that
  // only loads took 0.76x (TinyLlama-1.1B-shaped Q4_0) and 0.68x
  // (Qwen2.5-0.5B-shaped Q4_K_M) the wall time at 2 threads that it took at
  // one (medians of 8 alternating pairs, AMD EPYC Zen 5, family 26 model 2).
  // Tasks of at least kPackTaskBytes, so small matrices stay on one thread.
  constexpr size_t kPackTaskBytes = size_t{1} << 18;
  const int64_t n_tasks = pool == nullptr || pool->size() == 1
                              ? 1
                              : std::clamp<int64_t>(static_cast<int64_t>(m.size_ / kPackTaskBytes),
                                                    1, 4 * static_cast<int64_t>(pool->size()));
  if (n_tasks == 1) {
    pack_groups(0, n_groups);
    return m;
  }
  pool->parallel_for(n_tasks, [&](int64_t t, int) {  // pack_group never throws
    pack_groups(n_groups * t / n_tasks, n_groups * (t + 1) / n_tasks);
  });
  return m;
}

void PackedMatrix::dequantize_stripe(int64_t r, int64_t c0, int64_t nc, float* dst) const {
  const DType t = type_;
  const int64_t be = packed_block_elems(t), bb = packed_block_bytes(t), nb = cols_ / be;
  SLM_DCHECK(r >= 0 && r < rows_ && c0 % be == 0 && nc % be == 0 && c0 + nc <= cols_);
  const uint8_t* group = bytes_.get() + static_cast<size_t>((r / kPackRows) * nb * bb);
  const int rr = static_cast<int>(r % kPackRows);
  if (const PackedRowFn f = isa_table(active_isa()).packed_row[static_cast<int>(t)])
    return f(group, bb, c0 / be, nc / be, rr, dst);
  for (int64_t b = c0 / be; b < (c0 + nc) / be; ++b, dst += be) {
    const uint8_t* block = group + b * bb;
    if (packed_is_legacy2(t)) {
      dequantize_legacy2(t, block, rr, dst);
    } else if (t == DType::F16) {
      for (int c = 0; c < kQK32; ++c) dst[c] = row_half(block, 2 * kPackRows * c, rr);
    } else if (t == DType::Q4_K) {
      const float d = row_half(block, 0, rr), dmin = row_half(block, kScaleBytes, rr);
      for (int e = 0; e < kQKK; ++e) {
        const int s = e / 32;
        dst[e] =
            d * block[kK4Sc + s * kPackRows + rr] * static_cast<float>(q4k_level(block, rr, e)) -
            dmin * block[kK4M + s * kPackRows + rr];
      }
    } else if (t == DType::Q5_K) {
      dequantize_packed_q5_k(block, rr, dst);
    } else if (packed_k23_block_bytes(t) != 0) {
      dequantize_k23(t, block, rr, dst);
    } else if (t == DType::Q6_K) {
      const float d = row_half(block, 0, rr);
      for (int e = 0; e < kQKK; ++e)
        dst[e] = d *
                 static_cast<float>(static_cast<int8_t>(block[kK6Sc + (e / 16) * kPackRows + rr])) *
                 static_cast<float>(q6_level(block, rr, e) - 32);
    } else if (t == DType::Q8_0) {
      // Word k of the row holds elements 4k..4k+3 as q + 128.
      // Gathers the row's words first so that the conversion loop vectorizes.
      const float d = row_half(block, 0, rr);
      const uint8_t* qs = block + kScaleBytes + rr * 4;
      uint8_t q[kQK32];
      for (int k = 0; k < kQK32 / 4; ++k) std::memcpy(q + 4 * k, qs + k * kPackRows * 4, 4);
      for (int c = 0; c < kQK32; ++c) dst[c] = d * static_cast<float>(q[c] - 128);
    } else if (t == DType::Q4_0) {
      // Word k: low nibbles are elements 4k.., high nibbles 16 + 4k...
      const float d = row_half(block, 0, rr);
      const uint8_t* qs = block + kScaleBytes + rr * 4;
      uint8_t q[kQK32 / 2];
      for (int k = 0; k < kQK32 / 8; ++k) std::memcpy(q + 4 * k, qs + k * kPackRows * 4, 4);
      for (int c = 0; c < kQK32 / 2; ++c) {
        dst[c] = d * static_cast<float>((q[c] & 0xF) - 8);
        dst[16 + c] = d * static_cast<float>((q[c] >> 4) - 8);
      }
    } else {
      const float d = row_half(block, 0, rr);
      const int offset = packed_quant_offset(t);
      for (int e = 0; e < kQK32; ++e)
        dst[e] = d * static_cast<float>(packed_quant(t, block, rr, e) - offset);
    }
  }
}

}  // namespace slm::kernels
