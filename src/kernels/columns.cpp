// Column copies of weight matrices for input-sparse decoding (kernels.h
// ColumnMatrix, matvec_columns) and the scalar axpy_cols oracles.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "base/check.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

inline float scale_of(const ColumnRows& w, int32_t row, int64_t j) {
  uint16_t d;
  std::memcpy(&d, w.data + static_cast<size_t>(row) * w.row_bytes + 2 * static_cast<size_t>(j), 2);
  return fp16_to_f32(d);
}
template <DType kType>
inline const uint8_t* quants_of(const ColumnRows& w, int32_t row, int64_t j) {
  return w.data + static_cast<size_t>(row) * w.row_bytes + 2 * static_cast<size_t>(w.nb_row) +
         static_cast<size_t>(j) * column_quant_bytes(kType);
}

// The signed quant of output i (< 32) of a block (the value times d).
template <DType kType>
inline int quant_value(const uint8_t* q, int i) {
  if constexpr (kType == DType::Q8_0) {
    return static_cast<int8_t>(q[i]);
  } else if constexpr (kType == DType::Q6_0) {
    const int nib = i < 16 ? (q[i] & 0x0F) : (q[i - 16] >> 4);
    return (nib | (((q[16 + i % 8] >> (2 * (i / 8))) & 3) << 4)) - 32;
  } else if constexpr (kType == DType::Q5_0) {
    uint32_t qh;
    std::memcpy(&qh, q, 4);
    const int nib = i < 16 ? (q[4 + i] & 0x0F) : (q[4 + i - 16] >> 4);
    return (nib | static_cast<int>(((qh >> i) & 1) << 4)) - 16;
  } else {
    return (i < 16 ? (q[i] & 0x0F) : (q[i - 16] >> 4)) - 8;
  }
}

// Each product rounded, then added, kept row after kept row.
template <DType kType>
void axpy_cols_scalar(float* y, const ColumnRows& w, int64_t b0, int64_t nb, const int32_t* idx,
                      const float* a, int64_t n) {
  for (int64_t k = 0; k < n; ++k)
    for (int64_t j = 0; j < nb; ++j) {
      const float s = a[k] * scale_of(w, idx[k], b0 + j);
      const uint8_t* q = quants_of<kType>(w, idx[k], b0 + j);
      float* yj = y + j * kQK32;
      for (int i = 0; i < kQK32; ++i) yj[i] += s * static_cast<float>(quant_value<kType>(q, i));
    }
}

// kernels.h ColsAlgo::kInt8 in plain steps: the oracle of the AVX-512 VNNI
// kernel, which must take exactly these float steps (the products, the max,
// s and 127 / max, nearest-even rounding, one fma per output and group).
template <DType kType>
void axpy_cols_int8(float* y, const ColumnRows& w, int64_t b0, int64_t nb, const int32_t* idx,
                    const float* a, int64_t n) {
  constexpr int64_t kGroup = col_group(kType);
  for (int64_t g = 0; g < n; g += kGroup) {
    const int64_t m = std::min(kGroup, n - g);
    for (int64_t j = 0; j < nb; ++j) {
      float p[kGroup];
      float amax = 0.0f;
      for (int64_t k = 0; k < m; ++k) {
        p[k] = a[g + k] * scale_of(w, idx[g + k], b0 + j);
        amax = std::max(amax, std::fabs(p[k]));
      }
      const float s = amax / 127.0f;
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      int32_t acc[kQK32] = {};
      for (int64_t k = 0; k < m; ++k) {
        // |r| <= 127, save where p or 127 / max is not finite (a hostile x,
        // or a max below ~3.7e-37): such an r counts 0.
        const float r = std::nearbyint(p[k] * inv);
        const int32_t u = std::fabs(r) <= 127.0f ? static_cast<int32_t>(r) : 0;
        const uint8_t* q = quants_of<kType>(w, idx[g + k], b0 + j);
        for (int i = 0; i < kQK32; ++i) acc[i] += u * quant_value<kType>(q, i);
      }
      float* yj = y + j * kQK32;
      for (int i = 0; i < kQK32; ++i) yj[i] = std::fma(s, static_cast<float>(acc[i]), yj[i]);
    }
  }
}

// n / 32 Q6_0 blocks of 32 values: fp16 d, then the quants' layout of
// column_quant_bytes; the levels as Q4_0's / Q5_0's (symmetric_levels_32).
void quantize_q6_0(const float* x, void* dst, int64_t n) {
  auto* block = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / kQK32;
       ++b, x += kQK32, block += 2 + column_quant_bytes(DType::Q6_0)) {
    int q[kQK32];
    const uint16_t dh = f32_to_fp16(symmetric_levels_32(x, 64, q));
    std::memcpy(block, &dh, 2);
    uint8_t* out = block + 2;
    for (int i = 0; i < 16; ++i)
      out[i] = static_cast<uint8_t>((q[i] & 0x0F) | (q[i + 16] & 0x0F) << 4);
    for (int k = 0; k < 8; ++k)
      out[16 + k] = static_cast<uint8_t>(q[k] >> 4 | (q[k + 8] >> 4) << 2 | (q[k + 16] >> 4) << 4 |
                                         (q[k + 24] >> 4) << 6);
  }
}

AxpyColsFn scalar_axpy(DType t) {
  return t == DType::Q8_0   ? axpy_cols_scalar<DType::Q8_0>
         : t == DType::Q6_0 ? axpy_cols_scalar<DType::Q6_0>
         : t == DType::Q5_0 ? axpy_cols_scalar<DType::Q5_0>
                            : axpy_cols_scalar<DType::Q4_0>;
}

// Kept inputs per pass over a task's outputs.
constexpr int64_t kRowsPerPass = 256;
// Output blocks per sweep over the kept rows: a head's y (151,936 floats,
// 608 KB) went in and out of memory once per group of kept rows; a sweep's
// 64 KiB of y stays in L2 while every kept row streams a 17 KB run (Q8_0).
constexpr int64_t kBlocksPerSweep = 512;

}  // namespace

void fill_scalar_columns(TypeTable& t) {
  for (const DType c : {DType::Q8_0, DType::Q6_0, DType::Q5_0, DType::Q4_0})
    t.axpy_cols[static_cast<int>(c)] = scalar_axpy(c);
}

AxpyColsFn axpy_cols_int8_oracle(DType t) {
  switch (t) {
    case DType::Q8_0:
      return axpy_cols_int8<DType::Q8_0>;
    case DType::Q6_0:
      return axpy_cols_int8<DType::Q6_0>;
    case DType::Q5_0:
      return axpy_cols_int8<DType::Q5_0>;
    case DType::Q4_0:
      return axpy_cols_int8<DType::Q4_0>;
    default:
      return nullptr;
  }
}

DType ColumnMatrix::copy_type(DType wtype) {
  switch (wtype) {
    case DType::Q8_0:
      return DType::Q8_0;
    // Q6_K as Q6_0 (26 bytes a block, Q8_0 34) where the ISA has a Q6_0
    // kernel (AVX-512 VNNI's int8 ones); elsewhere Q8_0.
    // KL to dense decoding small-llama-Q6_K (slm eval -b 1) at 25% / 50%
    // pruned: Q8_0 copies 0.0410 / 0.309 (as the dense kernels on the zeroed
    // inputs), Q6_0 0.0435 / 0.313, Q5_0 0.0500 / 0.316. Speed: no change
    // measured (AMD EPYC Zen 4, 2 threads, Qwen2.5-0.5B-shaped Q4_K_M, whose
    // Q6_K downs have 896-output runs, and TinyLlama Q4_0's Q6_K head, at
    // 50%: within the host's noise); the copies take 12-16 MiB less.
    case DType::Q6_K:
      return axpy_cols_pays_below(active_isa(), DType::Q6_0) > 0 ? DType::Q6_0 : DType::Q8_0;
    // Q4_K copied as Q4_0 would be as small as its source, but requantizing
    // 4-bit values onto a 4-bit grid along the other axis doubled the KL
    // that 25% pruning alone costs (small-llama-Q4_K_M: 0.046 -> 0.088);
    // a Q5_0 copy adds 0.013 for 23% more bytes.
    case DType::Q5_0:
    case DType::Q5_K:
    case DType::Q4_K:
      return DType::Q5_0;
    case DType::Q4_0:
      return DType::Q4_0;
    default:
      return DType::F32;  // no copy
  }
}

bool ColumnMatrix::supports(DType wtype, int64_t rows) {
  return copy_type(wtype) != DType::F32 && rows > 0 && rows % kQK32 == 0;
}

// The active ISA's cut-off for the copy's type (TypeTable::axpy_cols_pays_below,
// set and measured beside each column kernel: x86_avx512_columns_int8.cpp,
// x86_avx2_columns_int8.cpp; 0 where only the scalar
// loops run, NEON included).
double ColumnMatrix::pays_below(DType wtype) {
  const DType ctype = copy_type(wtype);
  if (ctype == DType::F32) return 0.0;
  const double cut = axpy_cols_pays_below(active_isa(), ctype);
  // A copy wider than its source (Q4_K's 4.5 bits a weight as Q5_0's 5.5)
  // must skip that much more to read fewer bytes than the dense kernel.
  const DTypeInfo& src = dtype_info(wtype);
  const DTypeInfo& copy = dtype_info(ctype);
  const double widening = static_cast<double>(copy.block_bytes * src.block_size) /
                          static_cast<double>(src.block_bytes * copy.block_size);
  return widening > 1.0 ? cut / widening : cut;
}

ColumnMatrix ColumnMatrix::build(DType wtype, const void* w, int64_t rows, int64_t cols) {
  const Part part{wtype, w, rows};
  return build(std::span<const Part>(&part, 1), cols);
}

ColumnMatrix ColumnMatrix::build(std::span<const Part> parts, int64_t cols) {
  SLM_DCHECK(!parts.empty());
  const DType ctype = copy_type(parts[0].wtype);
  for (const Part& p : parts) {
    SLM_DCHECK(supports(p.wtype, p.rows));
    SLM_DCHECK(copy_type(p.wtype) == ctype);
  }
  return build(parts, cols, ctype);
}

ColumnMatrix ColumnMatrix::build(std::span<const Part> parts, int64_t cols, DType ctype) {
  SLM_DCHECK(!parts.empty());
  SLM_DCHECK(ctype == DType::Q8_0 || ctype == DType::Q6_0 || ctype == DType::Q5_0 ||
             ctype == DType::Q4_0);
  int64_t rows = 0;
  for (const Part& p : parts) {
    SLM_DCHECK(p.rows % kQK32 == 0);
    rows += p.rows;
  }
  ColumnMatrix m;
  m.type_ = ctype;
  m.rows_ = rows;
  m.cols_ = cols;
  const int64_t nb = rows / kQK32;
  m.row_bytes_ =
      static_cast<size_t>(slm::row_bytes(ctype, rows));  // the file's bytes: 2 + quants per block
  m.size_ = m.row_bytes_ * static_cast<size_t>(cols);
  m.bytes_ = allocate_packed(m.size_ + kColumnReadSlack);  // every byte is written below
  std::memset(m.bytes_.get() + m.size_, 0, kColumnReadSlack);
  // Q6_0 is the copies' own type, with no TypeTraits.
  void (*const quantize)(const float*, void*, int64_t) =
      ctype == DType::Q6_0 ? quantize_q6_0 : traits(Isa::kScalar, ctype).quantize_row;
  const size_t qb = column_quant_bytes(ctype);
  // 32 source rows at a time: dequantized [32][cols], then each column's 32
  // values become one block of the copy's row for that column, its scale
  // and quants stored apart. j counts blocks over the stacked rows.
  std::vector<float> tile(static_cast<size_t>(kQK32 * cols));
  float col[kQK32];
  uint8_t block[2 + 32];  // the largest block: Q8_0
  int64_t j = 0;
  for (const Part& p : parts) {
    const TypeTraits& src = traits(Isa::kScalar, p.wtype);
    const size_t src_row = static_cast<size_t>(slm::row_bytes(p.wtype, cols));
    for (int64_t r0 = 0; r0 < p.rows; r0 += kQK32, ++j) {
      for (int64_t r = 0; r < kQK32; ++r)
        src.dequantize_row(static_cast<const uint8_t*>(p.w) + static_cast<size_t>(r0 + r) * src_row,
                           tile.data() + r * cols, cols);
      for (int64_t c = 0; c < cols; ++c) {
        for (int64_t r = 0; r < kQK32; ++r) col[r] = tile[static_cast<size_t>(r * cols + c)];
        quantize(col, block, kQK32);
        uint8_t* row = m.bytes_.get() + static_cast<size_t>(c) * m.row_bytes_;
        std::memcpy(row + 2 * static_cast<size_t>(j), block, 2);
        std::memcpy(row + 2 * static_cast<size_t>(nb) + static_cast<size_t>(j) * qb, block + 2, qb);
      }
    }
  }
  return m;
}

void ColumnMatrix::dequantize_row(int64_t i, float* out) const {
  std::fill(out, out + rows_, 0.0f);
  const int32_t idx = static_cast<int32_t>(i);
  const float one = 1.0f;
  scalar_axpy(type_)(out, view(), 0, rows_ / kQK32, &idx, &one, 1);
}

void matvec_columns(const ColumnMatrix& w, const float* x, const int32_t* idx, int64_t n, float* y,
                    ThreadPool& pool, std::vector<float>& xs) {
  const ColumnOut out{&w, y};
  matvec_columns(std::span<const ColumnOut>(&out, 1), x, idx, n, pool, xs);
}

namespace {

// out's kept inputs [k0, k1) summed into y's output blocks [b0, b1), from
// zero. Sweeps of at most kBlocksPerSweep output blocks, each over every
// kept input: y's part stays in L2 while the inputs' runs stream past it.
void sum_part(const ColumnOut& o, float* y, int64_t b0, int64_t b1, const int32_t* idx,
              const float* xs, int64_t k0, int64_t k1) {
  const AxpyColsFn f = axpy_cols(o.w->type());
  const ColumnRows v = o.w->view();
  std::fill(y + b0 * kQK32, y + b1 * kQK32, 0.0f);
  for (int64_t c0 = b0; c0 < b1; c0 += kBlocksPerSweep) {
    const int64_t c1 = std::min(b1, c0 + kBlocksPerSweep);
    for (int64_t k = k0; k < k1; k += kRowsPerPass)
      f(y + c0 * kQK32, v, c0, c1 - c0, idx + k, xs + k, std::min(kRowsPerPass, k1 - k));
  }
}

// The kept inputs fall into parts_of(n) parts, each summed from zero and
// the parts then added in order. The parts depend on n alone, so every split
// gives the same bits: two from 2 * kMinPartInputs kept inputs, else one.
// More, shorter parts streamed worse at two threads (AMD EPYC Zen 4, no AMX,
// Q4_0 at 0.5, medians of 4-6 alternating runs): Qwen2.5-0.5B-shaped, up to
// four parts of at least 64 -> two for its 448 kept of 896: 112.0 -> 128.2
// tok/s; then down's 2432 kept in two as well: 122.7 -> 128.5;
// TinyLlama-1.1B-shaped, four -> two: 73.6 -> 80.0. One part (outputs cut
// only) was worse still: 448 kept, 104.8 against 126.0. A pool with more
// threads than parts cuts each part's outputs into ranges as well.
constexpr int64_t kMaxParts = 2;
constexpr int64_t kMinPartInputs = 160;
// Output ranges of a long-run copy: claimed in decreasing sizes (a share
// 1 / (2 * threads) of the blocks left, so that the threads finish
// together, whatever else runs on the machine), none with a run per kept
// input shorter than this.
constexpr size_t kMinRangeRunBytes = 1024;
// Tasks of one call at most (the last range takes the rest).
constexpr int kMaxTasks = 64;

int64_t parts_of(int64_t n) {
  return n >= kMaxParts * kMinPartInputs ? kMaxParts : 1;
}
// Part p's first kept input (p = n_parts: n); a multiple of 16, so that the
// int8 groups stay whole.
int64_t part_begin(int64_t p, int64_t n_parts, int64_t n) {
  return p == n_parts ? n : (p * n / n_parts) / 16 * 16;
}

}  // namespace

void matvec_columns(std::span<const ColumnOut> outs, const float* x, const int32_t* idx, int64_t n,
                    ThreadPool& pool, std::vector<float>& xs) {
  // y = ((S0 + S1) + S2) + S3 (fewer parts: fewer terms), S_p the sum over
  // part p's kept inputs in kept order from zero: the same bits however the
  // work is split, at any thread count, alone or fused, stacked or not.
  const int64_t n_parts = parts_of(n);
  int64_t total = 0;
  for (const ColumnOut& o : outs) total += o.w->rows();
  // xs: [n] compacted inputs, then [n_parts - 1][total]: parts 1.. of each
  // out at its offset.
  const size_t need = static_cast<size_t>(n + (n_parts - 1) * total);
  if (xs.size() < need) xs.resize(need);
  for (int64_t k = 0; k < n; ++k) xs[static_cast<size_t>(k)] = x[idx[k]];
  float* const parts = xs.data() + n;
  auto part_y = [&](const ColumnOut& o, int64_t off, int64_t p) {
    return p == 0 ? o.y : parts + (p - 1) * total + off;
  };
  // y [r0, r1) += S1, then += S2, ...: part 0 is y itself.
  auto add_parts = [&](const ColumnOut& o, int64_t off, int64_t r0, int64_t r1) {
    for (int64_t p = 1; p < n_parts; ++p) {
      const float* sp = parts + (p - 1) * total + off;
      for (int64_t r = r0; r < r1; ++r) o.y[r] += sp[r];
    }
  };
  // Output ranges per part of an input-split out: ceil(threads / parts).
  const int64_t threads = static_cast<int64_t>(pool.size());
  const int64_t per_part = (threads + n_parts - 1) / n_parts;
  const bool split_inputs = n_parts > 1 && threads > 1 &&
                            static_cast<int64_t>(outs.size()) * n_parts * per_part < kMaxTasks;
  auto by_inputs = [&](const ColumnOut& o) {
    return split_inputs && o.w->row_bytes() <= kColumnsInputSplitMaxRunBytes;
  };
  // fn(o, off, i0, i1) for each out o with by_inputs(o) == split that the
  // range [g0, g1) meets, the range counted in units of `unit` rows over
  // those outs laid end to end: [i0, i1) in o's units, off o's first row
  // among all outs (its offset in parts).
  auto for_each_piece = [&](bool split, int64_t unit, int64_t g0, int64_t g1, auto&& fn) {
    int64_t base = 0, off = 0;  // first global unit of the current out; its offset
    for (const ColumnOut& o : outs) {
      const int64_t units = o.w->rows() / unit, o_off = off;
      off += o.w->rows();
      if (by_inputs(o) != split) continue;
      const int64_t i0 = std::max<int64_t>(g0 - base, 0), i1 = std::min<int64_t>(g1 - base, units);
      base += units;
      if (i1 > i0) fn(o, o_off, i0, i1);
    }
  };
  // Tasks: (out, part, the out's blocks [g0, g1)) for the short-run outs;
  // global block ranges [g0, g1) over the other outs' blocks laid end to end
  // (out = -1).
  struct Task {
    int32_t out, part;
    int64_t g0, g1;
  };
  Task tasks[kMaxTasks];
  int n_tasks = 0;
  int64_t total_blocks = 0;
  size_t max_block_bytes = 1;
  for (size_t i = 0; i < outs.size(); ++i) {
    const ColumnOut& o = outs[i];
    if (!by_inputs(o)) {
      total_blocks += o.w->rows() / kQK32;
      max_block_bytes = std::max(max_block_bytes, column_quant_bytes(o.w->type()) + 2);
      continue;
    }
    const int64_t nb = o.w->rows() / kQK32;
    for (int64_t p = 0; p < n_parts; ++p)
      for (int64_t r = 0; r < per_part; ++r) {
        const int64_t b0 = nb * r / per_part, b1 = nb * (r + 1) / per_part;
        if (b1 > b0) tasks[n_tasks++] = {static_cast<int32_t>(i), static_cast<int32_t>(p), b0, b1};
      }
  }
  const int64_t min_blocks =
      std::max<int64_t>(1, static_cast<int64_t>(kMinRangeRunBytes / max_block_bytes));
  const int64_t div = 2 * static_cast<int64_t>(pool.size());
  for (int64_t g = 0; g < total_blocks;) {
    const int64_t left = total_blocks - g;
    const int64_t take = pool.size() == 1 || n_tasks + 1 == kMaxTasks
                             ? left
                             : std::min(left, std::max(min_blocks, left / div));
    tasks[n_tasks++] = {-1, 0, g, g + take};
    g += take;
  }
  pool.parallel_for(n_tasks, [&](int64_t t, int) {
    const Task& task = tasks[t];
    if (task.out >= 0) {
      const ColumnOut& o = outs[static_cast<size_t>(task.out)];
      int64_t off = 0;
      for (int32_t i = 0; i < task.out; ++i) off += outs[static_cast<size_t>(i)].w->rows();
      sum_part(o, part_y(o, off, task.part), task.g0, task.g1, idx, xs.data(),
               part_begin(task.part, n_parts, n), part_begin(task.part + 1, n_parts, n));
      return;
    }
    for_each_piece(false, kQK32, task.g0, task.g1,
                   [&](const ColumnOut& o, int64_t o_off, int64_t b0, int64_t b1) {
                     for (int64_t p = 0; p < n_parts; ++p)
                       sum_part(o, part_y(o, o_off, p), b0, b1, idx, xs.data(),
                                part_begin(p, n_parts, n), part_begin(p + 1, n_parts, n));
                     add_parts(o, o_off, b0 * kQK32, b1 * kQK32);
                   });
  });
  if (n_parts == 1) return;
  // The input-split outs' parts added into y, in ranges of their rows laid
  // end to end: by the pool where there are many, else here. Added by the
  // calling thread alone, a stacked gate/up's 9728 rows x 3 extra parts (up
  // to four parts then; half of them written in the other core's cache) took
  // ~6% of its product at two threads (bench_columns qwen Q4_0 0.5 2, AMD
  // EPYC Zen 4: 110.6 -> 103.5 us).
  int64_t split_rows = 0;
  for (const ColumnOut& o : outs)
    if (by_inputs(o)) split_rows += o.w->rows();
  const int64_t n_ranges =
      pool.size() > 1 && split_rows >= kColumnsParallelAddRows ? 2 * pool.size() : 1;
  if (n_ranges == 1) {
    for_each_piece(true, 1, 0, split_rows, add_parts);
    return;
  }
  pool.parallel_for(n_ranges, [&](int64_t t, int) {
    for_each_piece(true, 1, split_rows * t / n_ranges, split_rows * (t + 1) / n_ranges, add_parts);
  });
}

}  // namespace slm::kernels
