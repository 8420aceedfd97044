// The CPU backend: weights repacked once at load into kernels::PackedMatrix
// where the active ISA has tiles for their type, every op a call into the
// kernels and ops tables chosen from the CPU's features.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <vector>

#include "backend/backend.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

namespace slm::backend {
namespace {

struct Packed final : Prepared {
  explicit Packed(kernels::PackedMatrix m) : matrix(std::move(m)) {}
  size_t size_bytes() const override { return matrix.size_bytes(); }
  kernels::PackedMatrix matrix;
};

// A matrix's column copy: its own, or its rows [row0, row0 + rows) of a
// copy stacked with the other matrices of its group (which share it).
struct Columns final : Prepared {
  explicit Columns(kernels::ColumnMatrix m)
      : matrix(std::make_shared<const kernels::ColumnMatrix>(std::move(m))), rows(matrix->rows()) {}
  Columns(std::shared_ptr<const kernels::ColumnMatrix> m, int64_t row0, int64_t rows)
      : matrix(std::move(m)), row0(row0), rows(rows) {}
  // Its share of a stacked copy's bytes (bytes are proportional to rows), so
  // that the group's shares add up to the copy.
  size_t size_bytes() const override {
    return matrix->size_bytes() * static_cast<size_t>(rows) / static_cast<size_t>(matrix->rows());
  }
  bool stacked() const { return rows != matrix->rows(); }
  std::shared_ptr<const kernels::ColumnMatrix> matrix;
  int64_t row0 = 0, rows = 0;
};

const Columns& columns(const Linear& w) {
  return static_cast<const Columns&>(*w.columns);
}

const kernels::PackedMatrix* packed(const Linear& w) {
  return w.prepared ? &static_cast<const Packed&>(*w.prepared).matrix : nullptr;
}

// Drops the whole pages inside [data, data + bytes) from resident memory
// (they fault back in from the file if read again, e.g. a tied embedding row);
// neighbours keep theirs.
void release_pages(const uint8_t* data, size_t bytes) {
  const long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) return;
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t end = begin + bytes;
  const uintptr_t p0 = (begin + page - 1) / page * page, p1 = end / page * page;
  if (p1 > p0) madvise(reinterpret_cast<void*>(p0), p1 - p0, MADV_DONTNEED);
}

class Cpu final : public Backend {
 public:
  std::string_view name() const override { return "cpu"; }

  void prepare(Linear& w, bool release_source, ThreadPool* pool) const override {
    const MatrixView& v = w.view;
    if (!w.present() || !kernels::PackedMatrix::pays(v.type)) return;
    kernels::PackedMatrix p = kernels::PackedMatrix::pack(v.type, v.data, v.rows, v.cols, pool);
    if (p.empty()) return;
    w.prepared = std::make_unique<Packed>(std::move(p));
    if (release_source) release_pages(v.data, v.size_bytes());
  }

  void dequantize_stripe(const Linear& w, int64_t r, int64_t c0, int64_t nc,
                         float* dst) const override {
    if (const kernels::PackedMatrix* p = packed(w)) return p->dequantize_stripe(r, c0, nc, dst);
    const MatrixView& v = w.view;
    const DTypeInfo& info = dtype_info(v.type);
    const uint8_t* src = v.data +
                         static_cast<size_t>(r) * static_cast<size_t>(row_bytes(v.type, v.cols)) +
                         c0 / info.block_size * info.block_bytes;
    if (v.type == DType::F32) {
      std::memcpy(dst, src, static_cast<size_t>(nc) * sizeof(float));
      return;
    }
    kernels::traits(v.type).dequantize_row(src, dst, nc);
  }

  bool prepare_columns(Linear& w) const override {
    const MatrixView& v = w.view;
    if (!w.present() || !kernels::ColumnMatrix::supports(v.type, v.rows)) return false;
    if (!w.columns)
      w.columns =
          std::make_unique<Columns>(kernels::ColumnMatrix::build(v.type, v.data, v.rows, v.cols));
    return true;
  }

  // Stacks the group when every matrix can have a copy, all of one type and
  // width, and none has one yet; otherwise each matrix gets its own.
  bool prepare_columns(std::span<Linear* const> group) const override {
    bool stack = group.size() > 1;
    for (const Linear* w : group) {
      const MatrixView& v = w->view;
      stack = stack && w->present() && kernels::ColumnMatrix::supports(v.type, v.rows) &&
              !w->columns && v.cols == group[0]->view.cols &&
              kernels::ColumnMatrix::copy_type(v.type) ==
                  kernels::ColumnMatrix::copy_type(group[0]->view.type);
    }
    if (!stack) {
      bool all = true;
      for (Linear* w : group) all = prepare_columns(*w) && all;
      return all;
    }
    std::vector<kernels::ColumnMatrix::Part> parts;
    for (const Linear* w : group) parts.push_back({w->view.type, w->view.data, w->view.rows});
    auto m = std::make_shared<const kernels::ColumnMatrix>(
        kernels::ColumnMatrix::build(parts, group[0]->view.cols));
    int64_t row0 = 0;
    for (Linear* w : group) {
      w->columns = std::make_unique<Columns>(m, row0, w->view.rows);
      row0 += w->view.rows;
    }
    return true;
  }

  // A run of outs that is a whole stacked copy, its parts in order, is one
  // product into ws.stacked, then copied out part by part; any other out of
  // a stacked copy computes the whole copy and takes its part (forward
  // passes never ask for that). The rest are fused four at a time.
  void linear_columns(std::span<const LinearOut> outs, const float* x, std::span<const int32_t> idx,
                      Workspace& ws) const override {
    const int64_t n = static_cast<int64_t>(idx.size());
    kernels::ColumnOut fused[4];
    size_t k = 0;
    auto flush = [&] {
      if (k > 0)
        kernels::matvec_columns(std::span<const kernels::ColumnOut>(fused, k), x, idx.data(), n,
                                *ws.pool, ws.kept);
      k = 0;
    };
    for (size_t i = 0; i < outs.size();) {
      const Columns& c = columns(*outs[i].w);
      if (!c.stacked()) {
        if (k == std::size(fused)) flush();
        fused[k++] = {c.matrix.get(), outs[i].y};
        ++i;
        continue;
      }
      // The stacked run starting at i: outs [i, e) covering rows [0, end).
      size_t e = i;
      int64_t end = 0;
      while (e < outs.size() && columns(*outs[e].w).matrix == c.matrix &&
             columns(*outs[e].w).row0 == end)
        end += columns(*outs[e++].w).rows;
      const kernels::ColumnMatrix& m = *c.matrix;
      if (c.row0 != 0 || end != m.rows()) e = i + 1;  // not whole: this out alone
      if (ws.stacked.size() < static_cast<size_t>(m.rows()))
        ws.stacked.resize(static_cast<size_t>(m.rows()));
      kernels::matvec_columns(m, x, idx.data(), n, ws.stacked.data(), *ws.pool, ws.kept);
      for (; i < e; ++i) {
        const Columns& p = columns(*outs[i].w);
        std::copy_n(ws.stacked.data() + p.row0, p.rows, outs[i].y);
      }
    }
    flush();
  }

  // Matrices sharing an input (Q, K and V; gate and up) run as one fused pass
  // over the pool when all are packed: one wake-up and one finishing tail per
  // group instead of per matrix, most of a small matrix's time when decoding.
  void linear(std::span<const LinearOut> outs, const float* x, int64_t n,
              Workspace& ws) const override {
    kernels::PackedOut fused[4];
    size_t k = 0;
    if (outs.size() > 1 && outs.size() <= std::size(fused)) {
      for (const LinearOut& o : outs) {
        const kernels::PackedMatrix* p = packed(*o.w);
        if (p == nullptr) {
          k = 0;
          break;
        }
        fused[k++] = {p, o.y};
      }
    }
    if (k > 0)
      return kernels::matmul(std::span<const kernels::PackedOut>(fused, k), x, n, *ws.pool,
                             ws.matmul);
    for (const LinearOut& o : outs) {
      if (const kernels::PackedMatrix* p = packed(*o.w)) {
        kernels::matmul(*p, x, n, o.y, *ws.pool, ws.matmul);
      } else {
        const MatrixView& v = o.w->view;
        kernels::matmul(v.type, v.data, v.rows, v.cols, x, n, o.y, *ws.pool, ws.matmul);
      }
    }
  }

  void lora(std::span<const LoraSegment> segs, Workspace& ws) const override {
    const kernels::LoraKernels& kl = kernels::lora_kernels();
    const kernels::LoraQ8Kernels& kq = kernels::lora_q8_kernels();
    // Segments on one matrix together, so each factor row is read once for
    // the rows of every sequence on that adapter (ties by index: a plain
    // sort, which allocates nothing, with a fixed order).
    std::vector<size_t>& order = ws.lora_order;
    order.resize(segs.size());
    for (size_t i = 0; i < segs.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t l, size_t r) {
      return segs[l].f != segs[r].f ? std::less<>()(segs[l].f, segs[r].f) : l < r;
    });
    // Tasks of about kChunk multiply-adds so that small deltas do not pay per
    // task; expand ranges start at a column block of B^T (kernels.h requires
    // it; results do not depend on the split).
    constexpr int64_t kChunk = 16384, kAlign = kernels::kLoraCols;
    std::vector<LoraTask>& tasks = ws.lora;
    // Shrink: t [m][r] = A x, a task per range of A's rows (outputs).
    // Expand: y [m][n_out] += t B^T, a task per range of y's columns.
    auto plan = [&](bool expand) {
      tasks.clear();
      for (size_t g = 0; g < order.size();) {
        const LoraFactors& f = *segs[order[g]].f;
        size_t e = g + 1;
        int64_t m = segs[order[g]].m;
        while (e < order.size() && segs[order[e]].f == &f) m += segs[order[e++]].m;
        const int64_t outputs = expand ? f.n_out : f.r;
        const int64_t work = std::max<int64_t>(1, (expand ? f.r : f.n_in) * m);  // per output
        int64_t per = std::max<int64_t>(1, kChunk / work);
        if (expand) per = (per + kAlign - 1) / kAlign * kAlign;
        for (int64_t o = 0; o < outputs; o += per)
          tasks.push_back({g, e, o, std::min(per, outputs - o)});
        g = e;
      }
    };
    plan(false);
    ws.pool->parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t task, int) {
      const LoraTask& tk = tasks[static_cast<size_t>(task)];
      for (size_t i = tk.begin; i < tk.end; ++i) {
        const LoraSegment& s = segs[order[i]];
        const LoraFactors& f = *s.f;
        if (f.a8 != nullptr)
          kq.shrink(f.a8, f.a8_scale, f.n_in, f.r, f.scale, tk.first, tk.first + tk.count, s.x, s.m,
                    s.t);
        else
          kl.shrink(f.a, f.n_in, f.r, f.scale, tk.first, tk.first + tk.count, s.x, s.m, s.t);
      }
    });
    plan(true);
    ws.pool->parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t task, int) {
      const LoraTask& tk = tasks[static_cast<size_t>(task)];
      for (size_t i = tk.begin; i < tk.end; ++i) {
        const LoraSegment& s = segs[order[i]];
        const LoraFactors& f = *s.f;
        if (f.bt8 != nullptr)
          kq.expand(f.bt8, f.bt8_scale, f.n_out, f.r, s.t, s.m, tk.first, tk.first + tk.count, s.y);
        else
          kl.expand(f.bt, f.n_out, f.r, s.t, s.m, tk.first, tk.first + tk.count, s.y);
      }
    });
  }

  void embed(const MatrixView& table, std::span<const int32_t> ids, float* out) const override {
    const kernels::TypeTraits& t = kernels::traits(table.type);
    const int64_t row = row_bytes(table.type, table.cols);
    for (size_t i = 0; i < ids.size(); ++i)
      t.dequantize_row(table.data + ids[i] * row, out + static_cast<int64_t>(i) * table.cols,
                       table.cols);
  }

  void rms_norm(const float* x, const float* w, int64_t n_rows, int64_t n, float eps,
                float* out) const override {
    for (int64_t r = 0; r < n_rows; ++r) ops::rms_norm(x + r * n, w, n, eps, out + r * n);
  }
  void add(float* x, const float* b, int64_t n) const override { ops::add(x, b, n); }
  void gated(Activation act, float* gate, const float* up, int64_t n) const override {
    if (act == Activation::kGeluTanh)
      ops::geglu(gate, up, n);
    else
      ops::swiglu(gate, up, n);
  }
  void softcap(float* x, int64_t n, float cap) const override { ops::softcap(x, n, cap); }
  void softmax(float* x, int64_t n) const override { ops::softmax(x, n); }
  int64_t zero_below(float* x, int64_t n, float thr) const override {
    return ops::zero_below(x, n, thr);
  }
  int64_t list_nonzero(const float* x, int64_t n, int32_t* kept) const override {
    return ops::list_nonzero(x, n, kept);
  }
  void rope_angles(int64_t n_rot, int64_t pos, const float* inv_freq, float* cs) const override {
    ops::rope_angles(n_rot, pos, inv_freq, cs);
  }
  void rope_apply(float* x, int64_t n_rot, const float* cs, bool neox) const override {
    ops::rope_apply(x, n_rot, cs, neox);
  }
  void attention(const AttentionShape& s, const float* q, const uint8_t* k_cache,
                 const uint8_t* v_cache, float* out, Workspace& ws) const override {
    ops::attention(s, q, k_cache, v_cache, out, ws.scores.data(), *ws.pool);
  }
  void attention_many(std::span<const AttentionCall> calls, int64_t stride,
                      Workspace& ws) const override {
    const auto n_threads = static_cast<int64_t>(ws.pool->size());
    const int64_t prefill_stride = static_cast<int64_t>(ws.attn_prefill.size()) / n_threads;
    ops::attention_many(calls, ws.attn_starts, ws.scores.data(), stride, *ws.pool,
                        prefill_stride > 0 ? ws.attn_prefill.data() : nullptr, prefill_stride);
  }
};

}  // namespace

float LoraFactors::a_value(int64_t k, int64_t c) const {
  if (a8 != nullptr)
    return static_cast<float>(a8[k * n_in + c]) *
           a8_scale[k * kernels::lora_groups_a(n_in) + c / kernels::kLoraGroupA];
  return fp16_to_f32(a[k * n_in + c]);
}

float LoraFactors::b_value(int64_t j, int64_t k) const {
  constexpr int64_t kCols = kernels::kLoraCols;
  const int64_t at = (j / kCols * r + k) * kCols + j % kCols;
  if (bt8 != nullptr) return static_cast<float>(bt8[at]) * bt8_scale[j / kCols * r + k];
  return fp16_to_f32(bt[at]);
}

std::string_view role_name(Role role) {
  switch (role) {
    case Role::kQ:
      return "q";
    case Role::kK:
      return "k";
    case Role::kV:
      return "v";
    case Role::kO:
      return "o";
    case Role::kGate:
      return "gate";
    case Role::kUp:
      return "up";
    case Role::kDown:
      return "down";
    case Role::kRouter:
      return "router";
    case Role::kOutput:
      return "output";
  }
  return "?";
}

const Backend& cpu() {
  static const Cpu backend;
  return backend;
}

}  // namespace slm::backend
