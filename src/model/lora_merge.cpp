// lora_merge.h: adapter deltas folded into the base file's matrices.
#include "model/lora_merge.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "kernels/kernels.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/quant_mix.h"

namespace slm::model {

namespace {

// An adapted matrix inside a file tensor: its rows [row0, row0 + rows).
struct Hit {
  const backend::LoraFactors* f;
  int64_t row0, rows;
};

// The pair's A with each rank's power of two (LoraFactors::scale) put back:
// exact in double (an F16 value times a power of two), so the merged delta
// is the run-time delta's own factors, rounded only when added to the row.
std::vector<double> scaled_a(const backend::LoraFactors& f) {
  std::vector<double> a(static_cast<size_t>(f.r * f.n_in));
  for (int64_t k = 0; k < f.r; ++k)
    for (int64_t c = 0; c < f.n_in; ++c)
      a[static_cast<size_t>(k * f.n_in + c)] = static_cast<double>(f.scale[k]) * f.a_value(k, c);
  return a;
}

// row [n_in] += delta row rr: sum over k of B[rr][k] * A[k][:], summed in
// acc [n_in] (double, the caller's scratch) and rounded once into the row.
// B^T is in column blocks (kernels::lora_bt_size).
// a is scaled_a(f).
void add_delta_row(const backend::LoraFactors& f, const std::vector<double>& a, int64_t rr,
                   float* row, std::vector<double>& acc) {
  acc.assign(static_cast<size_t>(f.n_in), 0.0);
  for (int64_t k = 0; k < f.r; ++k) {
    const double coef = f.b_value(rr, k);
    if (coef == 0.0) continue;
    const double* ak = a.data() + k * f.n_in;
    for (int64_t c = 0; c < f.n_in; ++c) acc[static_cast<size_t>(c)] += coef * ak[c];
  }
  for (int64_t c = 0; c < f.n_in; ++c)
    row[c] = static_cast<float>(row[c] + acc[static_cast<size_t>(c)]);
}

}  // namespace

MergeResult merge_lora(const Model& base, const LoraAdapter& adapter, const std::string& out_path,
                       const MergeOptions& options, ThreadPool& pool) {
  const gguf::File& in = base.file();
  const std::vector<gguf::TensorInfo>& tensors = in.tensors();
  // Which file tensor holds each adapted matrix: the Linear views point into
  // the mapped file, so the one whose bytes contain the view's first byte.
  std::vector<std::vector<Hit>> hits(tensors.size());
  for (const auto& [w, f] : adapter.matrices()) {
    bool found = false;
    for (size_t i = 0; i < tensors.size() && !found; ++i) {
      const gguf::TensorInfo& t = tensors[i];
      if (w->view.data < t.data || w->view.data >= t.data + t.n_bytes) continue;
      // An expert's matrix is rows [e * n_out, (e + 1) * n_out) of its 3-d
      // stack ne [n_in, n_out, n_expert] read as [n_expert * n_out][n_in].
      if (w->view.type != t.type || w->view.cols != t.ne[0] || t.ne[3] != 1)
        throw Error(in.name() + ": tensor '" + std::string(t.name) +
                    "' does not hold the adapted matrix as whole rows");
      const int64_t rb = row_bytes(t.type, t.ne[0]);
      const int64_t row0 = (w->view.data - t.data) / rb;
      hits[i].push_back({f, row0, w->rows()});
      found = true;
    }
    if (!found) throw Error("internal: an adapted matrix is not in the base file's tensors");
  }

  gguf::Writer out;
  const QuantMix* mix = options.type ? find_quant_mix(dtype_name(*options.type)) : nullptr;
  for (const gguf::KeyValue& kv : in.metadata()) {
    const std::string key(kv.key);
    if (key == "general.alignment")
      out.set_alignment(kv.value.u);  // the reader checked it is a power of two
    else if (key == "general.file_type" && mix != nullptr)
      out.add_u32(key, static_cast<uint32_t>(mix->ftype));
    else
      out.add_value(key, kv.value);
  }

  MergeResult result;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const gguf::TensorInfo& t = tensors[i];
    std::vector<int64_t> shape(t.ne, t.ne + std::max(t.n_dims, 1));
    ++result.n_tensors;
    if (hits[i].empty()) {
      out.add_tensor_lazy(std::string(t.name), t.type, shape,
                          [&t](uint8_t* dst) { std::memcpy(dst, t.data, t.n_bytes); });
      continue;
    }
    ++result.n_merged;
    const std::string name(t.name);
    const DType to = options.type.value_or(t.type);
    const kernels::TypeTraits& from_tr = kernels::traits(t.type);
    const kernels::TypeTraits& to_tr = kernels::traits(to);
    if (from_tr.dequantize_row == nullptr)
      throw Error(in.name() + ": tensor '" + name + "' is " + std::string(dtype_name(t.type)) +
                  ", which slm cannot read");
    if (to_tr.quantize_row == nullptr)
      throw Error(in.name() + ": tensor '" + name + "': slm cannot write " +
                  std::string(dtype_name(to)) + (options.type ? "" : " (pass --type)"));
    if (!row_fits(to, t.ne[0]))
      throw Error(in.name() + ": tensor '" + name + "': rows of " + std::to_string(t.ne[0]) +
                  " do not fit " + std::string(dtype_name(to)) + " blocks");
    const std::vector<Hit>* h = &hits[i];
    out.add_tensor_lazy(name, to, shape, [&t, h, to, &from_tr, &to_tr, &pool](uint8_t* dst) {
      const int64_t cols = t.ne[0], rows = t.n_elements() / cols;
      const int64_t rb_in = row_bytes(t.type, cols), rb_out = row_bytes(to, cols);
      const int64_t per_task = std::max<int64_t>(1, (int64_t{1} << 18) / cols);
      // Each hit's A as doubles, for this tensor only (a few MB at most).
      std::vector<std::vector<double>> a(h->size());
      for (size_t j = 0; j < h->size(); ++j) a[j] = scaled_a(*(*h)[j].f);
      pool.parallel_for((rows + per_task - 1) / per_task, [&](int64_t task, int) {
        std::vector<float> row(static_cast<size_t>(cols));
        std::vector<double> acc;
        for (int64_t r = task * per_task; r < std::min(rows, (task + 1) * per_task); ++r) {
          from_tr.dequantize_row(t.data + r * rb_in, row.data(), cols);
          for (size_t j = 0; j < h->size(); ++j) {
            const Hit& hit = (*h)[j];
            if (r >= hit.row0 && r < hit.row0 + hit.rows)
              add_delta_row(*hit.f, a[j], r - hit.row0, row.data(), acc);
          }
          to_tr.quantize_row(row.data(), dst + r * rb_out, cols);
        }
      });
    });
  }
  out.write(out_path);
  return result;
}

}  // namespace slm::model
