// The CPU backend: weights repacked once at load into kernels::PackedMatrix
// where the active ISA has tiles for their type, every op a call into the
// kernels and ops tables chosen from the CPU's features.
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend.h"
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

  void prepare(Linear& w, bool release_source) const override {
    const MatrixView& v = w.view;
    if (!w.present() || !kernels::PackedMatrix::pays(v.type)) return;
    kernels::PackedMatrix p = kernels::PackedMatrix::pack(v.type, v.data, v.rows, v.cols);
    if (p.empty()) return;
    w.prepared = std::make_unique<Packed>(std::move(p));
    if (release_source) release_pages(v.data, v.size_bytes());
  }

  // Matrices sharing an input (Q, K and V; gate and up) run as one fused pass
  // over the pool when all are packed: one wake-up and one finishing tail per
  // group instead of per matrix, most of a small matrix's time when decoding.
  void linear(std::span<const LinearOut> outs, const float* x, int64_t n, Workspace& ws) const override {
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
    if (k > 0) return kernels::matmul(std::span<const kernels::PackedOut>(fused, k), x, n, *ws.pool, ws.matmul);
    for (const LinearOut& o : outs) {
      if (const kernels::PackedMatrix* p = packed(*o.w)) {
        kernels::matmul(*p, x, n, o.y, *ws.pool, ws.matmul);
      } else {
        const MatrixView& v = o.w->view;
        kernels::matmul(v.type, v.data, v.rows, v.cols, x, n, o.y, *ws.pool, ws.matmul);
      }
    }
  }

  void embed(const MatrixView& table, std::span<const int32_t> ids, float* out) const override {
    const kernels::TypeTraits& t = kernels::traits(table.type);
    const int64_t row = row_bytes(table.type, table.cols);
    for (size_t i = 0; i < ids.size(); ++i)
      t.dequantize_row(table.data + ids[i] * row, out + static_cast<int64_t>(i) * table.cols, table.cols);
  }

  void rms_norm(const float* x, const float* w, int64_t n_rows, int64_t n, float eps, float* out) const override {
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
  void rope_angles(int64_t n_rot, int64_t pos, const float* inv_freq, float* cs) const override {
    ops::rope_angles(n_rot, pos, inv_freq, cs);
  }
  void rope_apply(float* x, int64_t n_rot, const float* cs, bool neox) const override {
    ops::rope_apply(x, n_rot, cs, neox);
  }
  void attention(const AttentionShape& s, const float* q, const uint8_t* k_cache, const uint8_t* v_cache, float* out,
                 Workspace& ws) const override {
    ops::attention(s, q, k_cache, v_cache, out, ws.scores.data(), *ws.pool);
  }
};

}  // namespace

std::string_view role_name(Role role) {
  switch (role) {
    case Role::kQ: return "q";
    case Role::kK: return "k";
    case Role::kV: return "v";
    case Role::kO: return "o";
    case Role::kGate: return "gate";
    case Role::kUp: return "up";
    case Role::kDown: return "down";
    case Role::kRouter: return "router";
    case Role::kOutput: return "output";
  }
  return "?";
}

const Backend& cpu() {
  static const Cpu backend;
  return backend;
}

}  // namespace slm::backend
