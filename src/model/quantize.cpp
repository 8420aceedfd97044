#include "model/quantize.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "base/error.h"
#include "base/thread_pool.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "kernels/kernels.h"
#include "model/imatrix.h"
#include "model/quant_mix.h"

namespace slm::model {
namespace {

bool is_float(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

// Drops a finished tensor's pages of the read-only file mapping from this
// process (the kernel reads them again if touched), so resident memory stays
// at about one tensor instead of growing to the input's size. Only for
// memory this file mapped itself (File::open): on anonymous memory
// MADV_DONTNEED would discard data.
void release_mapped(const uint8_t* p, uint64_t n) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// A count from the metadata, or fallback when absent or not a plain number
// (head_count_kv may be a per-layer array).
int64_t meta_count(const gguf::File& f, const std::string& key, int64_t fallback) {
  const gguf::Value* v = f.find(key);
  if (v == nullptr || !v->is_integer()) return fallback;
  return v->i;
}

MixModelFacts model_facts(const gguf::File& f) {
  const std::string arch(f.get_string("general.architecture").value_or(""));
  MixModelFacts m;
  int64_t max_layer = -1;
  for (const gguf::TensorInfo& t : f.tensors())
    if (t.name.substr(0, 4) == "blk.") {
      int64_t layer = 0;
      for (size_t i = 4;
           i < t.name.size() && t.name[i] >= '0' && t.name[i] <= '9' && layer < 1000000; ++i)
        layer = layer * 10 + (t.name[i] - '0');
      max_layer = std::max(max_layer, layer);
    }
  m.n_layer = meta_count(f, arch + ".block_count", max_layer + 1);
  m.n_expert = meta_count(f, arch + ".expert_count", 0);
  const int64_t n_head = meta_count(f, arch + ".attention.head_count", 1);
  const int64_t n_head_kv = meta_count(f, arch + ".attention.head_count_kv", n_head);
  m.n_gqa = n_head_kv > 0 ? n_head / n_head_kv : 0;
  m.has_output = f.find_tensor("output.weight") != nullptr;
  return m;
}

}  // namespace

std::vector<QuantizeStep> plan_quantize(const gguf::File& in, const QuantizeOptions& options) {
  const QuantMix* mix = find_quant_mix(options.type);
  if (mix == nullptr) throw Error("unknown type '" + options.type + "'");
  const MixModelFacts facts = model_facts(in);
  std::vector<QuantizeStep> steps;
  for (const gguf::TensorInfo& t : in.tensors()) {
    QuantizeStep s;
    s.name = std::string(t.name);
    s.shape.assign(t.ne, t.ne + std::max(t.n_dims, 1));
    s.from = t.type;
    s.to = is_quantizable(t.name, t.n_dims)
               ? mix_type(*mix, t.name, t.ne[0], facts, options.pure, options.imatrix != nullptr)
               : t.type;
    s.bytes_in = t.n_bytes;
    s.bytes_out = static_cast<uint64_t>(row_bytes(s.to, t.ne[0]) * (t.n_elements() / t.ne[0]));
    const std::string where = in.name() + ": tensor '" + s.name + "'";
    if (s.to != s.from) {
      if (!is_float(s.from) && !options.allow_requantize)
        throw Error(where + " is " + std::string(dtype_name(s.from)) +
                    ": requantizing an already quantized model loses quality; pass "
                    "--allow-requantize to do it anyway");
      if (kernels::traits(s.from).dequantize_row == nullptr)
        throw Error(where + ": cannot read type " + std::string(dtype_name(s.from)));
      if (kernels::traits(s.to).quantize_row == nullptr)
        throw Error(where + ": cannot write type " + std::string(dtype_name(s.to)));
      if (options.imatrix != nullptr && kernels::quantize_row_weighted(s.to) != nullptr) {
        if (const std::vector<float>* w = options.imatrix->find(s.name)) {
          const int64_t n_mat = t.n_dims >= 3 ? t.ne[2] : 1;
          if (static_cast<int64_t>(w->size()) == t.ne[0] * n_mat)
            s.importance = w;
          else if (s.name !=
                   "token_embd.weight")  // llama.cpp also lets the embedding pass unweighted
            throw Error(options.imatrix->name() + ": imatrix entry '" + s.name + "' has " +
                        std::to_string(w->size()) + " values; the tensor needs " +
                        std::to_string(t.ne[0] * n_mat));
        }
      }
    }
    steps.push_back(std::move(s));
  }
  return steps;
}

QuantizeResult quantize_file(const std::string& in_path, const std::string& out_path,
                             const QuantizeOptions& options, ThreadPool& pool,
                             const QuantizeProgress& on_step) {
  const auto in = gguf::File::open(in_path);  // mapped: release_mapped below relies on it
  const std::vector<QuantizeStep> steps = plan_quantize(*in, options);
  const QuantMix& mix = *find_quant_mix(options.type);

  // Metadata as llama-quantize writes it: every key in order, except that
  // general.quantization_version and general.file_type move to the end (its
  // gguf_set_val removes a key and appends it), so the files match byte for byte.
  gguf::Writer w;
  for (const gguf::KeyValue& kv : in->metadata()) {
    const std::string key(kv.key);
    if (key == "general.alignment")
      w.set_alignment(kv.value.u);  // the reader checked it is a power of two
    else if (key != "general.quantization_version" && key != "general.file_type")
      w.add_value(key, kv.value);
  }
  w.add_u32("general.quantization_version", 2);
  w.add_u32("general.file_type", static_cast<uint32_t>(mix.ftype));

  QuantizeResult result;
  result.n_tensors = static_cast<int64_t>(steps.size());
  const int64_t count = result.n_tensors;
  for (int64_t index = 0; index < count; ++index) {
    const QuantizeStep& s = steps[index];
    const gguf::TensorInfo& t = in->tensors()[index];
    if (s.to != s.from) ++result.n_converted;
    if (s.importance) ++result.n_weighted;
    auto fill = [&s, &t, &options, &pool, &on_step, index, count](uint8_t* dst) {
      if (options.cancel && options.cancel->load()) throw Error("interrupted");
      if (s.to == s.from) {
        std::copy(t.data, t.data + t.n_bytes, dst);
      } else {
        const int64_t cols = t.ne[0], rows = t.n_elements() / cols, rows_per_mat = t.ne[1];
        const kernels::TypeTraits& from = kernels::traits(s.from);
        const kernels::TypeTraits& to = kernels::traits(s.to);
        const kernels::QuantizeWeightedFn weighted =
            s.importance ? kernels::quantize_row_weighted(s.to) : nullptr;
        const int64_t rb_in = row_bytes(s.from, cols), rb_out = row_bytes(s.to, cols);
        // Tasks of about 1M elements: coarse enough to keep every thread busy.
        const int64_t per_task = std::max<int64_t>(1, (int64_t{1} << 20) / cols);
        pool.parallel_for((rows + per_task - 1) / per_task, [&](int64_t task, int) {
          if (options.cancel && options.cancel->load()) return;
          std::vector<float> row(static_cast<size_t>(cols));
          for (int64_t r = task * per_task; r < std::min(rows, (task + 1) * per_task); ++r) {
            from.dequantize_row(t.data + r * rb_in, row.data(), cols);
            if (weighted)
              weighted(row.data(), dst + r * rb_out, cols,
                       s.importance->data() + (r / rows_per_mat) * cols);
            else
              to.quantize_row(row.data(), dst + r * rb_out, cols);
          }
        });
        if (options.cancel && options.cancel->load()) throw Error("interrupted");
      }
      release_mapped(t.data, t.n_bytes);
      if (on_step) on_step(index, count, s);
    };
    w.add_tensor_lazy(s.name, s.to, s.shape, fill);
  }
  w.write(out_path);
  result.bytes_in = in->file_size();
  result.bytes_out = std::filesystem::file_size(out_path);
  return result;
}

}  // namespace slm::model
