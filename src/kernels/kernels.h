// Quantized and float kernels: block formats, dequantize, quantize, dot
// products. Kernels know nothing of models (style.md §1) and never throw.
//
// Numerics follow the ggml scheme so slm's logits track llama.cpp's: a weight
// row of type T is multiplied with an activation row that was first converted
// to traits(T).vec_dot_type (Q8_0 for the 32-element block types, Q8_K for the
// K-quants, F32 for F32/F16/BF16).
//
// Every ISA (scalar, AVX2, AVX-512+VNNI, AMX, NEON) exposes the same table;
// the scalar table is the test oracle. The active table is chosen once from
// CPU features (best_isa, or SLM_ISA, at first use) and may be overridden for
// tests.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "base/dtype.h"

namespace slm::kernels {

// kAmx is the AVX-512 table with AMX-INT8 tiles for prompts and batches of
// 2 or more tokens (Q4_0, Q5_0, Q8_0), offered where the CPU has AMX and
// Linux grants the tile state.
enum class Isa { kScalar, kAvx2, kAvx512, kNeon, kAmx };
std::string_view isa_name(Isa isa);
// isa_name plus the optional extensions its table uses on this CPU, for logs
// and bench output: "neon+dotprod", "avx512+vnni", "avx512+vnni+vbmi+amx".
std::string_view isa_detail(Isa isa);

struct TypeTraits {
  DType vec_dot_type = DType::F32;
  // dst[0..n) = dequantized src; n multiple of the block size.
  void (*dequantize_row)(const void* src, float* dst, int64_t n) = nullptr;
  // Quantizes n floats into this type (nullptr where slm cannot produce it).
  void (*quantize_row)(const float* src, void* dst, int64_t n) = nullptr;
  // *s = dot(w[0..n), x[0..n)) where w is of this type and x of vec_dot_type.
  void (*vec_dot)(int64_t n, float* s, const void* w, const void* x) = nullptr;
};

// Quantizes n floats (one row) with importance weights, one per element
// (llama.cpp's imatrix values of the row's columns, all >= 0): the fit
// minimises the error weighted by imatrix * sqrt(sigma2 + x^2), the form of
// ggml's quantize_row_*_impl. Scalar on every ISA: quantizing a file is not
// on the decoding path. Thread-safe (no state).
using QuantizeWeightedFn = void (*)(const float* src, void* dst, int64_t n, const float* weights);
// The weighted quantizer of t, or nullptr for Q8_0 and the float types (llama.cpp weights none of
// them either). Unweighted, every quantize_row is byte-identical to llama.cpp's; weighted, IQ4_NL,
// Q4_0 and Q5_0 follow ggml's quantize_row_*_impl (not checked against llama.cpp output) and the
// others run their reference fits with ggml's imatrix weighting.
QuantizeWeightedFn quantize_row_weighted(DType t);

// ISAs compiled into this binary that the running CPU supports, scalar first.
std::vector<Isa> available_isas();
// The best available ISA (the active one unless SLM_ISA or set_active_isa chose another).
Isa best_isa();
Isa active_isa();
// Makes isa the active table; returns false (no change) if unavailable.
bool set_active_isa(Isa isa);

// Traits of the active ISA / of a given ISA. Types without kernels (Q8_1)
// have null function pointers.
const TypeTraits& traits(DType t);
const TypeTraits& traits(Isa isa, DType t);

// out[c] += sum over i < nr of a[i] * w[i * ld + c], for c < nc, the rows
// taken in order i = 0, 1, ...: a rank-nr update of one float row, the inner
// step of training's transposed product through a weight (dx += dy W, with W
// dequantized a block of rows at a time). The scalar version rounds each
// product and sum; SIMD versions fuse them (FMA), so results agree to a few
// ulps per term. Never throws; any nr >= 0, nc >= 0.
using AxpyRowsFn = void (*)(float* out, const float* a, int64_t nr, const float* w, int64_t ld,
                            int64_t nc);
// axpy_rows for nt output rows at once, sharing each load of w across them
// (a small GEMM: out [nt][nc] += a [nt][nr] w [nr][nc]):
//   out[t * ldo + c] += sum over i < nr of a[t * lda + i] * w[i * ld + c].
// Each element takes exactly the steps of the same ISA's axpy_rows (rows in
// order, the same rounding), so results equal nt calls of it bit for bit.
// Never throws; any nt, nr, nc >= 0.
using AxpyRowsNFn = void (*)(float* out, int64_t ldo, const float* a, int64_t lda, int64_t nt,
                             int64_t nr, const float* w, int64_t ld, int64_t nc);
// Input-sparse decoding over a column copy of a weight (ColumnMatrix). Row
// i of the copy (W's column i) starts at data + i * row_bytes and holds the
// fp16 scales of its nb_row blocks of 32 outputs, then their quants (Q4_0:
// 16 bytes of nibbles, value q - 8; Q5_0: 4 bytes of high bits then 16 of
// nibbles, value q - 16; Q8_0: 32 int8): scales apart so that kernels
// convert 16 at a time.
struct ColumnRows {
  const uint8_t* data;
  size_t row_bytes;
  int64_t nb_row;
};
// y[j] += sum over k < n of a[k] * copy[idx[k]][32 * b0 + j] for j < 32 * nb
// (y points at output 32 * b0), by one of two algorithms (ColsAlgo). Never
// throws.
using AxpyColsFn = void (*)(float* y, const ColumnRows& w, int64_t b0, int64_t nb,
                            const int32_t* idx, const float* a, int64_t n);
// The active / a given ISA's for t (Q8_0, Q6_0, Q5_0, Q4_0), nullptr for other types.
AxpyColsFn axpy_cols(DType t);
AxpyColsFn axpy_cols(Isa isa, DType t);
// How an ISA's axpy_cols computes, and so the oracle it is tested against:
//  kFloat  each product a[k] * d (d: the block's scale) times each quant,
//          added kept input after kept input, each product and sum rounded:
//          axpy_cols(Isa::kScalar, t), the scalar loops. Scalar and NEON
//          (no SIMD column kernels there yet).
//  kInt8   the activations quantized to int8 per group of col_group(t) kept
//          inputs (in kept order; the last group short) and output block j:
//          p(k) = a[k] * d(k, j), m = max |p(k)|, s = m / 127, u(k) = p(k) *
//          (127 / m) rounded to nearest even (all 0 where m is 0); exact
//          integer sums acc[r] = sum over the group of u(k) * q(k, r) (q the
//          signed quant); then y[r] = fma(s, float(acc[r]), y[r]), once per
//          group, groups in order. AVX-512 with VNNI and VBMI: its 4-column
//          byte dot products (VPDPBUSD) take a third of the float version's
//          vector instructions, so decoding reads the kept columns at the
//          memory's pace. AVX2, and AVX-512 without VBMI: VPMADDUBSW /
//          VPMADDWD for Q4_0 and Q8_0 (their Q5_0 and Q6_0 entries are the
//          oracle's loops, never given copies).
//          Equal to axpy_cols_int8_oracle(t) bit for bit.
//          Each output's error is at most sum over k of |q(k, r)| * s / 2 per
//          group (about 1/254 of the group's largest product per term).
// A call starts its own groups, so callers that split n (matvec_columns: 256
// kept inputs per call) keep whole groups by splitting at multiples of 16.
enum class ColsAlgo { kFloat, kInt8 };
// Kept inputs per int8 group: 16 for Q4_0 and Q5_0, whose quants take
// more steps to unpack, so halving the per-group steps (the sums' offsets,
// the divisions, the fma into y) per weight pays: TinyLlama's stacked q/k/v
// at half the inputs kept 0.58-0.64 -> 0.55-0.58 of the dense time (Q4_0),
// Qwen2.5-0.5B's gate/up 0.59-0.67 -> 0.53-0.54 (Q5_0). Q8_0 keeps 8 (16
// measured 5-10% slower: gate/up 0.41 -> 0.45-0.47). The error per term
// stays under 1/254 of the group's largest product either way (dense
// kernels quantize x over 32 inputs).
constexpr int64_t col_group(DType t) {
  return t == DType::Q8_0 ? 8 : 16;
}
constexpr int64_t kMaxColGroup = 16;
ColsAlgo axpy_cols_algo(Isa isa);
AxpyColsFn axpy_cols_int8_oracle(DType t);  // the plain steps of kInt8 (Q8_0, Q6_0, Q5_0, Q4_0)

AxpyRowsFn axpy_rows();            // the active ISA's
AxpyRowsFn axpy_rows(Isa isa);     // a given ISA's (the scalar one where the CPU lacks it)
AxpyRowsNFn axpy_rows_n();         // the active ISA's
AxpyRowsNFn axpy_rows_n(Isa isa);  // a given ISA's (the scalar one where the CPU lacks it)

// The two low-rank products of a LoRA delta y += B (A x), with the factors
// in F16 (model/lora.h keeps them so: half the bytes of F32, each row
// normalised by a power of two that `scale` puts back):
//   shrink  t[i * r + k] = scale[k] * dot(a[k][0..n_in), x[i][0..n_in))
//           for k0 <= k < k1, i < m; a [r][n_in], x [m][n_in], t [m][r]
//   expand  y[i * n_out + j] += sum over k < r, in order, of t[i * r + k] * B[j][k]
//           for j0 <= j < j1 (j0 a multiple of kLoraCols), i < m; y [m][n_out]
// B is stored transposed in column blocks, so that a range of y's columns
// reads one contiguous run: bt [ceil(n_out / kLoraCols)][r][kLoraCols],
// B[j][k] at bt[((j / kLoraCols) * r + k) * kLoraCols + j % kLoraCols], the
// last block zero-padded (lora_bt_size).
// An output element takes the same steps whatever m and the ranges are
// (SIMD: fused multiply-adds in a fixed order, tails included), so a row's
// result does not depend on the other rows of its batch or on how threads
// split the work. The scalar table accumulates in double (the test oracle).
constexpr int64_t kLoraCols = 16;
inline int64_t lora_bt_size(int64_t n_out, int64_t r) {
  return (n_out + kLoraCols - 1) / kLoraCols * r * kLoraCols;
}
struct LoraKernels {
  void (*shrink)(const uint16_t* a, int64_t n_in, int64_t r, const float* scale, int64_t k0,
                 int64_t k1, const float* x, int64_t m, float* t) = nullptr;
  void (*expand)(const uint16_t* bt, int64_t n_out, int64_t r, const float* t, int64_t m,
                 int64_t j0, int64_t j1, float* y) = nullptr;
};
const LoraKernels& lora_kernels();  // of the active ISA
const LoraKernels& lora_kernels(Isa isa);

// The same two products with 8-bit factors (model/lora.h LoraType::kQ8),
// about half the bytes of F16, which is what a decoding step's deltas cost
// (they stream from memory once per step). Same layouts as above with int8
// values and a float scale per group:
//   a  [r][n_in] int8, ad [r][ceil(n_in / kLoraGroupA)]: A[k][c] is
//      float(a[k * n_in + c]) * ad[k * groups + c / kLoraGroupA]
//   bt the column blocks of B^T in int8, bd [ceil(n_out / kLoraCols)][r]:
//      B[j][k] is float(q) * bd[(j / kLoraCols) * r + k]
// each product rounded to float (exactly what every ISA multiplies by); the
// sums then as for F16: in a fixed order per output, the scalar table in
// double. ISAs without their own use the scalar table's.
constexpr int64_t kLoraGroupA = 32;
inline int64_t lora_groups_a(int64_t n_in) {
  return (n_in + kLoraGroupA - 1) / kLoraGroupA;
}
struct LoraQ8Kernels {
  void (*shrink)(const int8_t* a, const float* ad, int64_t n_in, int64_t r, const float* scale,
                 int64_t k0, int64_t k1, const float* x, int64_t m, float* t) = nullptr;
  void (*expand)(const int8_t* bt, const float* bd, int64_t n_out, int64_t r, const float* t,
                 int64_t m, int64_t j0, int64_t j1, float* y) = nullptr;
};
const LoraQ8Kernels& lora_q8_kernels();  // of the active ISA
const LoraQ8Kernels& lora_q8_kernels(Isa isa);

}  // namespace slm::kernels

namespace slm {
class ThreadPool;
}

namespace slm::kernels {

// y[t * rows + r] = sum_c w[r][c] * x[t * cols + c] for t < n_tokens, r < rows.
// w: rows contiguous rows of type wtype, each row_bytes(wtype, cols) bytes
// (cols a multiple of the block size; the caller checks at load time).
// scratch: caller-owned buffer reused across calls (grown as needed, so the
// token loop allocates nothing once warm). Work is split over pool's threads.
void matmul(DType wtype, const void* w, int64_t rows, int64_t cols, const float* x,
            int64_t n_tokens, float* y, ThreadPool& pool, std::vector<uint8_t>& scratch);

}  // namespace slm::kernels

namespace slm::kernels {

// The bytes of a weight copy that decoding streams (PackedMatrix,
// ColumnMatrix, RowMatrix), from allocate_packed (internal.h): aligned_alloc
// memory, so std::free.
struct StreamBytesFree {
  void operator()(uint8_t* p) const { std::free(p); }
};
using StreamBytes = std::unique_ptr<uint8_t[], StreamBytesFree>;

// A weight matrix re-laid out once at load time for tile kernels (layout in
// internal.h: kPackRows rows interleaved per block, scales kept as fp16, so
// it takes the same bytes as the source (Q4_K: 148 bytes per 256 elements
// against 144, its 6-bit scales unpacked), plus row padding to a multiple of
// 16). Decoding then streams each weight byte once with no per-row scale
// shuffles, and prompt processing unpacks a block once for a tile of tokens.
// Owns its bytes (64-byte aligned); immutable after pack(), so one instance
// is shared by every session and thread.
class PackedMatrix {
 public:
  PackedMatrix() = default;
  // Whether a packed layout exists for wtype (Q4_0, Q5_0, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
  // F16).
  static bool has_layout(DType wtype);
  // Whether packing wtype pays with the active ISA (it has a SIMD tile for
  // it); callers that mind memory pack only then.
  static bool pays(DType wtype);
  // Repacks rows x cols of wtype (has_layout(wtype), cols a multiple of 32),
  // its 16-row groups shared among pool's threads where a pool is given (the
  // same bytes on any thread count). Throws std::bad_alloc before any work.
  static PackedMatrix pack(DType wtype, const void* w, int64_t rows, int64_t cols,
                           ThreadPool* pool = nullptr);

  bool empty() const { return bytes_ == nullptr; }
  DType type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  size_t size_bytes() const { return size_; }
  const uint8_t* data() const { return bytes_.get(); }
  // Columns [c0, c0 + nc) of row r as float, equal to dequantizing the
  // source row (c0 and nc multiples of the block: 256 for K-quants, else 32;
  // r < rows()). Lets training read a weight whose source pages were released.
  void dequantize_stripe(int64_t r, int64_t c0, int64_t nc, float* dst) const;

 private:
  DType type_ = DType::F32;
  int64_t rows_ = 0, cols_ = 0;
  size_t size_ = 0;
  StreamBytes bytes_;
};

// matmul over a packed matrix: y[t * rows + r] as in the plain overload.
// Results do not depend on the thread count, and are identical on every ISA.
void matmul(const PackedMatrix& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool,
            std::vector<uint8_t>& scratch);

// Several packed matrices of the same input width multiplied with the same x
// (Q, K and V; gate and up) in one pass over the pool: one wake-up and one
// finishing tail instead of one per matrix, and the activations quantized
// once per weight type. outs[i].y gets y[t * rows_i + r] as above, with the
// same bits as a separate call. Matrices of different widths run one by one.
struct PackedOut {
  const PackedMatrix* w;
  float* y;
};
void matmul(std::span<const PackedOut> outs, const float* x, int64_t n_tokens, ThreadPool& pool,
            std::vector<uint8_t>& scratch);

}  // namespace slm::kernels

namespace slm::kernels {

// A weight W [rows][cols] (GGUF row-major, blocks along cols) copied once at
// load as its transpose W^T [cols][rows], quantized in blocks of 32 along
// rows, so that decoding with a sparse input reads only the rows of W^T
// whose input is non-zero (TEAL / CATS pruning). The copy's type is
// copy_type(source): Q8_0, Q5_0 and Q4_0 keep theirs (as many bytes as the
// source, in addition to it); Q4_K and Q5_K become Q5_0 (0.69 bytes a weight
// against 0.56 / 0.69), Q6_K becomes Q6_0 (slm's own 6-bit type: 0.81 bytes
// a weight against 0.82) where the int8 column kernels run (ColsAlgo), else
// Q8_0 (1.06). Blocks run along the
// other axis, so every copy but Q8_0-from-Q8_0 is requantized and its values
// differ from the source by up to one step of the copy's block (a Q8_0 copy
// of a K-quant: about 1/127 of the block's largest weight, well under the
// source's own step). Owns its bytes; immutable.
class ColumnMatrix {
 public:
  // The copy's type for a source type (Q8_0, Q6_0, Q5_0 or Q4_0), F32 where there is none.
  static DType copy_type(DType wtype);
  // Whether a column copy exists for wtype and rows % 32 == 0.
  static bool supports(DType wtype, int64_t rows);
  // The share of kept inputs below which the copy of a wtype matrix beats
  // the dense kernels on the same input (decode, one row); at or above it,
  // callers run the dense matrix on the zeroed input instead. Lower for a
  // copy wider than its source (Q4_K as Q5_0) by the ratio of their bytes.
  static double pays_below(DType wtype);
  // Builds the copy of rows x cols of wtype (supports() must hold).
  static ColumnMatrix build(DType wtype, const void* w, int64_t rows, int64_t cols);
  // One matrix of several that share their input (Q, K and V; gate and up).
  struct Part {
    DType wtype;
    const void* w;  // [rows][cols] of wtype
    int64_t rows;
  };
  // Builds one copy of the parts' rows stacked in order (rows() = the sum):
  // each kept input's weights for every part in one run of a row, so one
  // pass of the kernels reads them. Every part must pass supports() and
  // have the same copy_type; its outputs equal a copy of that part alone
  // bit for bit (blocks of 32 outputs never straddle two parts).
  static ColumnMatrix build(std::span<const Part> parts, int64_t cols);
  // As build, into a copy of type ctype (Q8_0, Q6_0, Q5_0 or Q4_0) whatever
  // copy_type says: for tests and benchmarks (every part's rows % 32 == 0).
  static ColumnMatrix build(std::span<const Part> parts, int64_t cols, DType ctype);

  DType type() const { return type_; }
  int64_t rows() const { return rows_; }  // of W: outputs
  int64_t cols() const { return cols_; }  // of W: inputs (rows of the copy)
  size_t row_bytes() const { return row_bytes_; }
  size_t size_bytes() const { return size_; }
  ColumnRows view() const { return {bytes_.get(), row_bytes_, rows_ / 32}; }
  // Row i of the copy (W's column i) as floats [rows()] (tests).
  void dequantize_row(int64_t i, float* out) const;
  const uint8_t* data() const { return bytes_.get(); }

 private:
  DType type_ = DType::Q8_0;
  int64_t rows_ = 0, cols_ = 0;
  size_t row_bytes_ = 0, size_ = 0;
  // On huge pages like PackedMatrix's (decoding streams the kept rows).
  StreamBytes bytes_;
};

// y[r] = sum over k < n of x[idx[k]] * W[r][idx[k]] for r < rows: the
// product with an input that is zero outside idx (ascending, in [0, cols)).
// xs: scratch (the compacted inputs and one more partial sum per output).
// The kept inputs fall into one or two parts fixed by n, each output the
// parts' sums added in order, so the bits are the same at any thread count;
// the work is claimed over pool as parts (and, with more threads than
// parts, their output ranges) of copies with short rows and as output
// ranges of the others (columns.cpp).
void matvec_columns(const ColumnMatrix& w, const float* x, const int32_t* idx, int64_t n, float* y,
                    ThreadPool& pool, std::vector<float>& xs);
// The same for several matrices of the same cols reading one x (Q, K and V;
// gate and up) in one pass over the pool: one wake-up and one finishing tail
// instead of one per matrix. Results equal separate calls bit for bit.
struct ColumnOut {
  const ColumnMatrix* w;
  float* y;  // [w->rows()]
};
void matvec_columns(std::span<const ColumnOut> outs, const float* x, const int32_t* idx, int64_t n,
                    ThreadPool& pool, std::vector<float>& xs);

// A weight W [rows][cols] copied in the file's own row-major layout (rows
// row_bytes(type, cols) apart, the source's type and bits), for decoding
// that needs only some of W's outputs (CATS: the rows of up whose gate
// survived). PackedMatrix cannot serve it: a group's 16 rows share every
// cache line, so a kept row reads the whole group (rows.cpp). The copy holds
// as many bytes as the source (a mapped file's pages are released after
// packing; reading them again would fault them in on the decoding path).
// Owns its bytes (huge pages from 2 MiB); immutable.
// Status: the forward pass does not use it. Per-row dot products over plain
// rows run far below the memory's pace (TinyLlama's up, Q4_0, half the rows:
// ~5 GB/s against ~22 for the packed kernels), so CATS decoding with it was
// slower than dense (bench_columns' gcols+urows / gdense+urows; forward.cpp
// ffn_dense says why CATS does not need it); kept, with its tests, as the
// harness for a faster row layout.
class RowMatrix {
 public:
  // Whether the active ISA has a dot product for wtype (every GGUF type slm reads).
  static bool supports(DType wtype);
  // Copies rows x cols of wtype (supports(wtype), cols whole blocks).
  static RowMatrix copy(DType wtype, const void* w, int64_t rows, int64_t cols);

  DType type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  size_t row_bytes() const { return row_bytes_; }
  size_t size_bytes() const { return size_; }
  const uint8_t* data() const { return bytes_.get(); }

 private:
  DType type_ = DType::F32;
  int64_t rows_ = 0, cols_ = 0;
  size_t row_bytes_ = 0, size_ = 0;
  StreamBytes bytes_;
};

// y[idx[k]] = dot(W row idx[k], x) for k < n, one row x [cols]; y's other
// entries are left as they are. idx in [0, rows), ascending for a forward
// stream (any order gives the same values). x is quantized once into the
// type's vec_dot_type (scratch, grown as needed) and each listed row is one
// vec_dot of the active ISA (the scalar table's is the oracle), so y[idx[k]]
// equals matmul's output for that row over the same bytes bit for bit,
// whatever n, the list or the thread count. Split over pool by ranges of idx.
void matvec_rows(const RowMatrix& w, const float* x, const int32_t* idx, int64_t n, float* y,
                 ThreadPool& pool, std::vector<uint8_t>& scratch);

}  // namespace slm::kernels
