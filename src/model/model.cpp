#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <numbers>
#include <span>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"

namespace slm::model {

std::vector<float> compute_rope_inv_freq(const ModelConfig& c) {
  const int64_t half = c.n_rot / 2;
  std::vector<float> f(half);
  for (int64_t i = 0; i < half; ++i) {
    double freq =
        std::pow(static_cast<double>(c.rope_base), -2.0 * static_cast<double>(i) / c.n_rot);
    switch (c.rope_scaling) {
      case RopeScaling::kNone:
        break;
      case RopeScaling::kLinear:
        freq /= c.rope_scale_factor;
        break;
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

std::unique_ptr<Model> Model::load(const std::string& path, int threads) {
  return build(gguf::File::open(path), /*mapped=*/true, threads);
}

std::unique_ptr<Model> Model::from_file(std::unique_ptr<gguf::File> file, int threads) {
  return build(std::move(file), /*mapped=*/false, threads);
}

std::unique_ptr<Model> Model::build(std::unique_ptr<gguf::File> file, bool mapped, int threads) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = std::move(file);
  m->backend_ = &backend::cpu();
  m->config_ = read_config(*m->file_);
  m->weights_ = bind_weights(*m->file_, m->config_);
  m->build_rope_tables();
  // The backend prepares every matrix once (the CPU one repacks those whose
  // type has tiles on this CPU, each matrix shared among the threads); a
  // mapped file's source pages are released.
  ThreadPool pool(std::max(threads, 1));
  for_each_linear(m->weights_, m->config_, [&](backend::Linear& w) {
    m->backend_->prepare(w, /*release_source=*/mapped, &pool);
  });
  return m;
}

void Model::build_rope_tables() {
  const ModelConfig& c = config_;
  const ModelWeights& w = weights_;
  auto divide = [&](std::vector<float>& f, const std::vector<float>& div, const char* tensor) {
    for (size_t i = 0; i < div.size(); ++i) {
      if (!(div[i] > 0) || !std::isfinite(div[i]))
        throw Error(file_->name() + ": tensor '" + tensor + "' has a non-positive value");
      f[i] /= div[i];
    }
  };
  std::vector<float> global;
  if (!w.rope_freqs.empty() && c.rope_scaling == RopeScaling::kLlama3) {
    // The tensor already holds the llama3 divisors; applying the metadata's
    // formula too would scale twice.
    ModelConfig plain = c;
    plain.rope_scaling = RopeScaling::kNone;
    global = compute_rope_inv_freq(plain);
  } else {
    global = compute_rope_inv_freq(c);
  }
  // Files converted from Llama 3.1 carry the llama3 divisors as a tensor.
  divide(global, w.rope_freqs, "rope_freqs.weight");
  std::array<std::vector<float>, 2> table{global, global};
  // LongRoPE (Phi-3): the short factors within the original context, the long ones beyond.
  divide(table[0], w.rope_factors_short, "rope_factors_short.weight");
  divide(table[1], w.rope_factors_long, "rope_factors_long.weight");
  inv_freq_ = {table};
  if (c.rope_base_swa > 0) {
    // Sliding layers with their own base and no frequency scaling (Gemma 3's local layers).
    ModelConfig local = c;
    local.rope_base = c.rope_base_swa;
    local.rope_scaling = RopeScaling::kNone;
    const std::vector<float> f = compute_rope_inv_freq(local);
    inv_freq_.push_back({f, f});
  }
}

void Model::set_prune(PruneOptions p, const std::string& sparsity_name) {
  if (p.sparsity) p.sparsity->check_base(*this, sparsity_name);
  if (p.moe_top_k < 0) throw Error("--moe-top-k must be at least 1");
  if (!(p.moe_min_weight >= 0 && p.moe_min_weight <= 1))
    throw Error("--moe-min-weight must be in [0, 1]");
  if ((p.moe_top_k > 0 || p.moe_min_weight > 0) && !config_.is_moe())
    throw Error(file_->name() +
                ": --moe-top-k and --moe-min-weight need a mixture-of-experts model");
  if (p.moe_top_k > config_.n_expert_used)
    throw Error("--moe-top-k " + std::to_string(p.moe_top_k) + " exceeds the model's " +
                std::to_string(config_.n_expert_used) + " experts per token");
  prune_ = std::move(p);
  gate_cuts_.clear();
  if (const Sparsity* s = prune_.sparsity.get(); s != nullptr && s->ffn_rule == FfnRule::kCats)
    for (int64_t l = 0; l < config_.n_layer; ++l)
      gate_cuts_.emplace_back(config_.ffn_act, s->threshold(l, Tap::kGate));
  // Column copies (backend::Linear::columns) of the matrices whose input
  // pruning zeroes, for decoding that skips the zeroed inputs' weights.
  // The head's copy (head_threshold > 0) is of the output matrix only: with
  // tied embeddings the lookup keeps reading token_embd's view.
  if (const Sparsity* s = prune_.sparsity.get()) {
    // A group that reads one input (q/k/v, gate/up) as one stacked copy
    // where the backend can: every kept input's weights in one run.
    // Only where a token's kept share may fall below the copy's cut-off
    // (kernels::ColumnMatrix::pays_below, which depends on the CPU's column
    // kernels): per-token shares spread around the calibrated 1 - level, so
    // below 1.5 times the cut. Elsewhere (Q5_0 and Q6_0 copies on AVX2 and on
    // AVX-512 without VBMI, every copy on NEON) a copy would take memory and
    // never run.
    auto may_pay = [&](const backend::Linear& w) {
      return 1.0 - static_cast<double>(s->level) <
             1.5 * kernels::ColumnMatrix::pays_below(w.view.type);
    };
    // A file that prunes the head alone (level 0) does not say what share
    // of the head's inputs it keeps: its copy is built wherever a column
    // kernel runs it.
    const bool head_copy = s->level > 0
                               ? may_pay(weights_.output)
                               : kernels::ColumnMatrix::pays_below(weights_.output.view.type) > 0;
    std::vector<std::vector<backend::Linear*>> groups;
    if (s->head_threshold > 0 && head_copy)
      groups.push_back({&weights_.output});  // the longest: first
    for (int64_t l = 0; l < config_.n_layer; ++l) {
      LayerWeights& lw = weights_.layers[static_cast<size_t>(l)];
      auto cols = [&](Tap t, std::initializer_list<backend::Linear*> ws) {
        if (s->threshold(l, t) > 0 &&
            std::any_of(ws.begin(), ws.end(),
                        [&](const backend::Linear* w) { return may_pay(*w); }))
          groups.emplace_back(ws);
      };
      cols(Tap::kAttnIn, {&lw.wq, &lw.wk, &lw.wv});
      cols(Tap::kOIn, {&lw.wo});
      if (config_.is_moe()) continue;
      cols(Tap::kFfnIn, {&lw.ffn_gate, &lw.ffn_up});
      cols(s->ffn_rule == FfnRule::kCats ? Tap::kGate : Tap::kDownIn, {&lw.ffn_down});
    }
    prepare_columns(groups, prune_.threads);
  }
}

// The groups share no Linear, and each copy's bytes depend on its source
// alone, so they are built in parallel. `slm run --sparsity` (level 0.5, head
// included), AMD EPYC Zen 5 (family 26 model 2), 2 cores: TinyLlama-1.1B-
// shaped Q4_0 (586 MiB of copies) loads in 5.1-6.6 s on one thread, 3.1 s on
// two (dense: 0.95 s); Qwen2.5-0.5B-shaped Q4_K_M 4.5 s -> 2.8 s (dense
// 1.2 s; its head's copy is one task).
void Model::prepare_columns(const std::vector<std::vector<backend::Linear*>>& groups, int threads) {
  ThreadPool pool(std::clamp(threads, 1, static_cast<int>(std::max<size_t>(groups.size(), 1))));
  std::mutex failed_mu;
  std::exception_ptr failed;  // the first failure (out of memory), rethrown here
  pool.parallel_for(static_cast<int64_t>(groups.size()), [&](int64_t g, int) {
    try {
      const auto& ws = groups[static_cast<size_t>(g)];
      backend_->prepare_columns(std::span<backend::Linear* const>(ws.data(), ws.size()));
    } catch (...) {
      const std::lock_guard<std::mutex> lock(failed_mu);
      if (!failed) failed = std::current_exception();
    }
  });
  if (failed) std::rethrow_exception(failed);
}

size_t Model::column_bytes() const {
  size_t n = 0;
  for_each_linear(weights_, config_, [&](const backend::Linear& w) {
    if (w.columns) n += w.columns->size_bytes();
  });
  return n;
}

size_t Model::packed_bytes() const {
  size_t n = 0;
  for_each_linear(weights_, config_, [&](const backend::Linear& w) {
    if (w.prepared) n += w.prepared->size_bytes();
  });
  return n;
}

int64_t Model::n_params() const {
  int64_t n = 0;
  for (const gguf::TensorInfo& t : file_->tensors()) n += t.n_elements();
  return n;
}

}  // namespace slm::model
