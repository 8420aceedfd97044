#include "model/model.h"

#include <cmath>
#include <cstring>
#include <numbers>

#include <sys/mman.h>
#include <unistd.h>

#include "base/error.h"
#include "base/fp16.h"

namespace slm::model {

std::vector<float> to_f32(const Weight& w, int64_t n) {
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) {
    switch (w.type) {
      case DType::F32: std::memcpy(&out[i], w.data + 4 * i, 4); break;
      case DType::F16: {
        uint16_t h;
        std::memcpy(&h, w.data + 2 * i, 2);
        out[i] = fp16_to_f32(h);
        break;
      }
      case DType::BF16: {
        uint16_t h;
        std::memcpy(&h, w.data + 2 * i, 2);
        out[i] = bf16_to_f32(h);
        break;
      }
      default: throw Error("internal: to_f32 on a quantized tensor");
    }
  }
  return out;
}

std::vector<float> compute_rope_inv_freq(const ModelConfig& c) {
  const int64_t half = c.n_rot / 2;
  std::vector<float> f(half);
  for (int64_t i = 0; i < half; ++i) {
    double freq = std::pow(static_cast<double>(c.rope_base), -2.0 * static_cast<double>(i) / c.n_rot);
    switch (c.rope_scaling) {
      case RopeScaling::kNone: break;
      case RopeScaling::kLinear: freq /= c.rope_scale_factor; break;
      case RopeScaling::kLlama3: {
        // Llama 3.1: long wavelengths are slowed by the factor, short ones kept,
        // and the band between is interpolated smoothly.
        const double wavelen = 2.0 * std::numbers::pi / freq;
        const double low_wavelen = c.rope_orig_ctx / c.rope_low_freq_factor;
        const double high_wavelen = c.rope_orig_ctx / c.rope_high_freq_factor;
        if (wavelen > low_wavelen) {
          freq /= c.rope_scale_factor;
        } else if (wavelen >= high_wavelen) {
          const double smooth = (c.rope_orig_ctx / wavelen - c.rope_low_freq_factor) /
                                (c.rope_high_freq_factor - c.rope_low_freq_factor);
          freq = (1.0 - smooth) * freq / c.rope_scale_factor + smooth * freq;
        }
        break;
      }
    }
    f[i] = static_cast<float>(freq);
  }
  return f;
}

std::unique_ptr<Model> Model::load(const std::string& path) {
  return build(gguf::File::open(path), /*mapped=*/true);
}

std::unique_ptr<Model> Model::from_file(std::unique_ptr<gguf::File> file) {
  return build(std::move(file), /*mapped=*/false);
}

std::unique_ptr<Model> Model::build(std::unique_ptr<gguf::File> file, bool mapped) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = std::move(file);
  m->config_ = read_config(*m->file_);
  m->weights_ = bind_weights(*m->file_, m->config_);
  m->prepare();
  m->pack_weights(/*release_source=*/mapped);
  return m;
}

// Performance hook (kernels::PackedMatrix): the 2-d matrices the forward pass
// multiplies, and each expert's slice of the 3-d expert tensors, are repacked
// once here; the embedding lookup keeps using the file's bytes.
void Model::pack_weights(bool release_source) {
  struct Mat {
    DType type;
    const uint8_t* data;
    int64_t rows, cols;
  };
  std::vector<Mat> mats;
  auto add = [&](const Weight& w) {
    if (!w.present()) return;
    const int64_t n_slices = std::max<int64_t>(1, w.ne[2]);
    for (int64_t e = 0; e < n_slices; ++e) mats.push_back({w.type, w.expert(e), w.ne[1], w.ne[0]});
  };
  add(weights_.output);
  for (const LayerWeights& l : weights_.layers)
    for (const Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_gate, &l.ffn_up, &l.ffn_down, &l.gate_exps,
                            &l.up_exps, &l.down_exps})
      add(*w);
  const long page = sysconf(_SC_PAGESIZE);
  for (const Mat& m : mats) {
    if (packed_.count(m.data) || !kernels::PackedMatrix::pays(m.type)) continue;
    kernels::PackedMatrix p = kernels::PackedMatrix::pack(m.type, m.data, m.rows, m.cols);
    if (p.empty()) continue;
    packed_.emplace(m.data, std::move(p));
    if (release_source && page > 0) {
      // Whole pages inside the matrix only; neighbours keep theirs.
      const auto begin = reinterpret_cast<uintptr_t>(m.data);
      const uintptr_t end = begin + static_cast<uintptr_t>(m.rows * row_bytes(m.type, m.cols));
      const uintptr_t p0 = (begin + page - 1) / page * page, p1 = end / page * page;
      if (p1 > p0) madvise(reinterpret_cast<void*>(p0), p1 - p0, MADV_DONTNEED);
    }
  }
}

size_t Model::packed_bytes() const {
  size_t n = 0;
  for (const auto& [data, m] : packed_) n += m.size_bytes();
  return n;
}

void Model::prepare() {
  const ModelConfig& c = config_;
  vectors_.resize(c.n_layer);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const LayerWeights& l = weights_.layers[i];
    LayerVectors& v = vectors_[i];
    v.attn_norm = to_f32(l.attn_norm, c.n_embd);
    v.ffn_norm = to_f32(l.ffn_norm, c.n_embd);
    if (l.bq.present()) v.bq = to_f32(l.bq, c.q_dim());
    if (l.bk.present()) v.bk = to_f32(l.bk, c.kv_dim());
    if (l.bv.present()) v.bv = to_f32(l.bv, c.v_dim());
    if (l.q_norm.present()) v.q_norm = to_f32(l.q_norm, c.head_dim);
    if (l.k_norm.present()) v.k_norm = to_f32(l.k_norm, c.head_dim);
  }
  output_norm_ = to_f32(weights_.output_norm, c.n_embd);
  if (weights_.rope_freqs.present() && c.rope_scaling == RopeScaling::kLlama3) {
    // The tensor already holds the llama3 divisors; applying the metadata's
    // formula too would scale twice.
    ModelConfig plain = c;
    plain.rope_scaling = RopeScaling::kNone;
    inv_freq_ = compute_rope_inv_freq(plain);
  } else {
    inv_freq_ = compute_rope_inv_freq(c);
  }
  if (weights_.rope_freqs.present()) {
    // Files converted from Llama 3.1 carry the llama3 divisors as a tensor.
    const std::vector<float> div = to_f32(weights_.rope_freqs, c.n_rot / 2);
    for (size_t i = 0; i < div.size(); ++i) {
      if (!(div[i] > 0) || !std::isfinite(div[i]))
        throw Error(file_->name() + ": tensor 'rope_freqs.weight' has a non-positive value");
      inv_freq_[i] /= div[i];
    }
  }
}

int64_t Model::n_params() const {
  int64_t n = 0;
  for (const gguf::TensorInfo& t : file_->tensors()) n += t.n_elements();
  return n;
}

}  // namespace slm::model
