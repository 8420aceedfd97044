// ops.h's entry points: each forwards to the table of the kernels' active ISA
// (simd.h), and the scalar references those tables fall back on and are
// tested against. Attention splits (token, head) pairs over the pool here.
#include "ops/ops.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "base/check.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "kernels/blocks.h"
#include "kernels/kernels.h"
#include "ops/simd.h"

namespace slm::ops {
namespace {

// The scalar table with one ISA's entries filled in (unused on a scalar-only build).
[[maybe_unused]] OpsTable filled(void (*fill)(OpsTable&)) {
  OpsTable t;
  fill(t);
  return t;
}

// The table for the kernels' active ISA (each built once, on first use).
const OpsTable& ops_table() {
#if defined(SLM_OPS_X86)
  static const OpsTable avx2 = filled(fill_ops_avx2);
  static const OpsTable avx512 = filled(fill_ops_avx512);
  switch (kernels::active_isa()) {
    case kernels::Isa::kAvx2:
      return avx2;
    case kernels::Isa::kAvx512:
    case kernels::Isa::kAmx:  // AMX changes only the packed matmul tiles
      return avx512;
    default:
      break;
  }
#elif defined(SLM_OPS_NEON)
  static const OpsTable neon = filled(fill_ops_neon);
  if (kernels::active_isa() == kernels::Isa::kNeon) return neon;
#endif
  static const OpsTable scalar;
  return scalar;
}

}  // namespace

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out) {
  SLM_DCHECK_GT(n, 0);
  ops_table().rms_norm(x, w, n, eps, out);
}

void add(float* x, const float* b, int64_t n) {
  ops_table().add(x, b, n);
}

void softmax(float* x, int64_t n) {
  SLM_DCHECK_GT(n, 0);  // x[0] seeds the max
  ops_table().softmax(x, n);
}

void rope_apply(float* x, int64_t n_rot, const float* cs, bool neox) {
  SLM_DCHECK_EQ(n_rot % 2, 0);  // rotations act on pairs
  ops_table().rope_apply(x, n_rot, cs, neox);
}

void rms_norm_scalar(const float* x, const float* w, int64_t n, float eps, float* out) {
  // Accumulate in double: the mean square over thousands of elements loses
  // digits in float, and this costs nothing next to the matrix products.
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void add_scalar(float* x, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += b[i];
}

int64_t zero_below(float* x, int64_t n, float thr) {
  return ops_table().zero_below(x, n, thr);
}

int64_t list_nonzero(const float* x, int64_t n, int32_t* kept) {
  return ops_table().list_nonzero(x, n, kept);
}

// Branch-free (half the entries at 50% pruning would mispredict a branch):
// the bits masked, the count advanced by the test's 0 or 1.
int64_t zero_below_scalar(float* x, int64_t n, float thr) {
  int64_t z = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t small = std::fabs(x[i]) < thr;
    x[i] = std::bit_cast<float>(std::bit_cast<uint32_t>(x[i]) & (small - 1u));
    z += small;
  }
  return z;
}

// Every index is stored and the count advanced only past non-zero entries.
int64_t list_nonzero_scalar(const float* x, int64_t n, int32_t* kept) {
  int64_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    kept[m] = static_cast<int32_t>(i);
    m += x[i] != 0.0f;
  }
  return m;
}

int64_t argmax(const float* x, int64_t n) {
  return ops_table().argmax(x, n);
}

// The largest value by `>` (a NaN compares false, so never wins), then the
// first index holding it (== : -0 and +0 are one value).
int64_t argmax_scalar(const float* x, int64_t n) {
  float best = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) best = x[i] > best ? x[i] : best;
  if (best == -std::numeric_limits<float>::infinity()) return -1;
  int64_t i = 0;
  while (!(x[i] == best)) ++i;
  return i;
}

void swiglu(float* gate, const float* up, int64_t n) {
  ops_table().swiglu(gate, up, n);
}

void softcap_scores(float* scores, int64_t n, float cap) {
  const float inv = 1.0f / cap;
  for (int64_t j = 0; j < n; ++j) scores[j] = cap * std::tanh(scores[j] * inv);
}

void softcap(float* x, int64_t n, float cap) {
  softcap_scores(x, n, cap);
}

void geglu(float* gate, const float* up, int64_t n) {
  constexpr float kSqrt2OverPi = 0.79788456080286535588f;
  for (int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    gate[i] = 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + 0.044715f * x * x))) * up[i];
  }
}

void swiglu_scalar(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void softmax_scalar(float* x, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void rope_angles(int64_t n_rot, int64_t pos, const float* inv_freq, float* cs) {
  SLM_DCHECK_EQ(n_rot % 2, 0);
  const int64_t half = n_rot / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double theta = static_cast<double>(pos) * inv_freq[i];
    cs[i] = static_cast<float>(std::cos(theta));
    cs[half + i] = static_cast<float>(std::sin(theta));
  }
}

void rope_apply_scalar(float* x, int64_t n_rot, const float* cs, bool neox) {
  rope_rotate_pairs(x, n_rot / 2, cs, neox, 0);
}

bool kv_type_supported(DType type) {
  return type == DType::F32 || type == DType::F16 || type == DType::Q8_0;
}

size_t kv_row_bytes(DType type, int64_t kv_dim) {
  const auto n = static_cast<size_t>(kv_dim);
  switch (type) {
    case DType::F16:
      return n * sizeof(uint16_t);
    case DType::Q8_0:
      return n / 32 * sizeof(kernels::BlockQ8_0);
    default:
      return n * sizeof(float);
  }
}

void to_f16_scalar(const float* src, int64_t n, uint8_t* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_fp16(src[i]);
    std::memcpy(dst + 2 * i, &h, sizeof h);
  }
}

void kv_store(DType type, const float* src, int64_t n, uint8_t* dst) {
  switch (type) {
    case DType::F16:
      ops_table().to_f16(src, n, dst);
      return;
    case DType::Q8_0:
      SLM_DCHECK_EQ(n % 32, 0);
      kernels::traits(DType::Q8_0).quantize_row(src, dst, n);
      return;
    default:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
  }
}

namespace {

// What every (token, head) task of one attention call shares, derived once per call.
struct AttendPlan {
  const float* q;
  const uint8_t *k, *v;
  float* out;
  int64_t n_head, pos0, window, ring, head_dim, group, q_stride, row_bytes, head_bytes;
  float scale, softcap;
  DType kv_type;
};

AttendPlan plan_attention(const AttentionShape& s, const float* q, const uint8_t* k_cache,
                          const uint8_t* v_cache, float* out) {
  SLM_DCHECK_GT(s.head_dim, 0);
  SLM_DCHECK_GT(s.n_head_kv, 0);
  SLM_DCHECK_EQ(s.n_head % s.n_head_kv, 0);  // grouped-query: whole groups per KV head
  SLM_DCHECK_GE(s.pos0, 0);
  SLM_DCHECK(kv_type_supported(s.kv_type));
  SLM_DCHECK(s.kv_type != DType::Q8_0 || s.head_dim % 32 == 0);
  AttendPlan p;
  p.q = q;
  p.k = k_cache;
  p.v = v_cache;
  p.out = out;
  p.n_head = s.n_head;
  p.pos0 = s.pos0;
  p.window = s.window;
  p.ring = s.ring;
  p.head_dim = s.head_dim;
  p.group = s.n_head / s.n_head_kv;
  p.q_stride = s.n_head * s.head_dim;
  p.row_bytes = static_cast<int64_t>(kv_row_bytes(s.kv_type, s.n_head_kv * s.head_dim));
  p.head_bytes = static_cast<int64_t>(kv_row_bytes(s.kv_type, s.head_dim));
  p.scale = s.scale > 0 ? s.scale : 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  p.softcap = s.softcap;
  p.kv_type = s.kv_type;
  return p;
}

// Token t's query head h against its KV head's keys: causal, keys up to and
// including the token's position; a sliding window starts at the first
// position it still sees. scores: [pos0 + t + 1] floats.
AttendArgs head_args(const AttendPlan& p, int64_t t, int64_t h, float* scores) {
  const int64_t kvh = h / p.group;
  const int64_t pos = p.pos0 + t;
  const int64_t first = p.window > 0 ? std::max<int64_t>(0, pos - p.window + 1) : 0;
  const int64_t row = p.ring > 0 ? first % p.ring : first;
  AttendArgs a;
  a.q = p.q + t * p.q_stride + h * p.head_dim;
  a.k = p.k + row * p.row_bytes + kvh * p.head_bytes;
  a.v = p.v + row * p.row_bytes + kvh * p.head_bytes;
  a.kv_type = p.kv_type;
  a.row_bytes = p.row_bytes;
  a.n_keys = pos + 1 - first;
  a.head_dim = p.head_dim;
  a.scale = p.scale;
  a.softcap = p.softcap;
  a.scores = scores;
  a.out = p.out + t * p.q_stride + h * p.head_dim;
  return a;
}

// Task = t * n_head + h: token t's head h.
void attend_task(const AttendPlan& p, const OpsTable& table, int64_t task, float* scores) {
  table.attend(head_args(p, task / p.n_head, task % p.n_head, scores));
}

// A whole KV group of one token (task = token * n_head_kv + KV head), in
// passes of at most kAttendGroupMax heads: table.attend_group reads each
// cached row once per pass for all of them. scores: the heads' score rows,
// span floats apart.
void attend_group_task(const AttendPlan& p, const OpsTable& table, int64_t task, float* scores,
                       int64_t span) {
  const int64_t n_kv = p.n_head / p.group;
  const int64_t t = task / n_kv, kvh = task % n_kv;
  AttendArgs a[kAttendGroupMax];
  for (int64_t h0 = 0; h0 < p.group; h0 += kAttendGroupMax) {
    const int n = static_cast<int>(std::min<int64_t>(kAttendGroupMax, p.group - h0));
    for (int i = 0; i < n; ++i) a[i] = head_args(p, t, kvh * p.group + h0 + i, scores + i * span);
    table.attend_group(a, n);
  }
}

}  // namespace

void attention(const AttentionShape& s, const float* q, const uint8_t* k_cache,
               const uint8_t* v_cache, float* out, float* scratch, ThreadPool& pool) {
  const AttendPlan p = plan_attention(s, q, k_cache, v_cache, out);
  const int64_t span = s.pos0 + s.n_tokens;
  const OpsTable& table = ops_table();
  pool.parallel_for(s.n_tokens * s.n_head, [&](int64_t task, int thread) {
    attend_task(p, table, task, scratch + static_cast<int64_t>(thread) * span);
  });
}

namespace {

// Prefill scratch per thread (attend_prefill_task): scores of a pass's rows
// (at least 8 rows of the span, else kRowScoreFloats: a pass of 16 tokens of
// 7 heads at 512 positions fits in it), the rows' value sums and 1 / sums,
// the KV head's keys and values as float [span][head_dim], then the keys
// transposed in blocks of 16 (AttendRowsArgs::kt) [score_stride][head_dim].
constexpr int64_t kRowScoreFloats = 65536;
constexpr int64_t kMaxPassRows = 128;  // 16 tokens x 8 heads
int64_t score_stride(int64_t span) {
  return (span + 15) / 16 * 16;
}
int64_t score_floats(int64_t span) {
  return std::max(kRowScoreFloats, 8 * score_stride(span));
}

}  // namespace

int64_t attention_prefill_floats(int64_t max_span, int64_t head_dim) {
  const int64_t span = std::min(max_span, kPrefillMaxSpan);
  return score_floats(span) + kMaxPassRows * (head_dim + 1) + 2 * span * head_dim +
         score_stride(span) * head_dim;
}

namespace {

// Whether attention_many runs call s as prefill blocks (ops.h).
bool prefill_blocks(const AttentionShape& s, int64_t prefill_stride) {
  const int64_t span = s.pos0 + s.n_tokens;
  return s.n_tokens >= kPrefillMinTokens && s.ring == 0 && (s.window == 0 || s.window >= span) &&
         span <= kPrefillMaxSpan && attention_prefill_floats(span, s.head_dim) <= prefill_stride;
}

constexpr int64_t kPrefillBlock = 16;  // tokens per prefill task

// Whether attention_many runs call s (not prefill blocks) as one task per
// token and KV group: grouped-query heads, and score rows for all the
// group's heads (kAttendGroupMax at a time) in the per-thread stride.
bool group_tasks(const AttentionShape& s, int64_t stride) {
  const int64_t group = s.n_head / s.n_head_kv;
  return group >= 2 &&
         attention_group_rows(s.n_head, s.n_head_kv) * (s.pos0 + s.n_tokens) <= stride;
}

int64_t prefill_tasks(const AttentionShape& s) {
  return s.n_head_kv * ((s.n_tokens + kPrefillBlock - 1) / kPrefillBlock);
}

// Prefill task (ops.h): task = block_from_end * n_head_kv + kv head, the
// blocks with the most keys first so the pool's last tasks are short ones.
// buf: attention_prefill_floats' layout (score rows, value sums, 1 / sums,
// then keys [span][head_dim] and values likewise as float).
void attend_prefill_task(const AttendPlan& p, const OpsTable& table, int64_t n_tokens, int64_t task,
                         float* buf) {
  const int64_t n_kv = p.n_head / p.group, span = p.pos0 + n_tokens, hd = p.head_dim;
  const int64_t n_blocks = (n_tokens + kPrefillBlock - 1) / kPrefillBlock;
  const int64_t t0 = (n_blocks - 1 - task / n_kv) * kPrefillBlock;
  const int64_t t1 = std::min(n_tokens, t0 + kPrefillBlock);
  const int64_t kvh = task % n_kv;
  const int64_t n_keys = p.pos0 + t1;  // what the block's last token sees
  float* scores = buf;
  float* acc = scores + score_floats(span);
  float* inv = acc + kMaxPassRows * hd;
  float* kf = inv + kMaxPassRows;
  float* vf = kf + span * hd;
  float* kt = vf + span * hd;
  const uint8_t* k = p.k + kvh * p.head_bytes;
  const uint8_t* v = p.v + kvh * p.head_bytes;
  int64_t row_bytes = p.row_bytes;
  if (p.kv_type != DType::F32) {
    for (int64_t j = 0; j < n_keys; ++j) {
      table.kv_to_f32(p.kv_type, k + j * p.row_bytes, hd, kf + j * hd);
      table.kv_to_f32(p.kv_type, v + j * p.row_bytes, hd, vf + j * hd);
    }
    k = reinterpret_cast<const uint8_t*>(kf);
    v = reinterpret_cast<const uint8_t*>(vf);
    row_bytes = hd * static_cast<int64_t>(sizeof(float));
  }
  // Passes of up to 8 heads of the group and as many of the block's tokens
  // as the score rows hold: each pass reads the keys and values once.
  const int64_t stride = score_stride(span);
  const int64_t heads = std::min<int64_t>(p.group, 8);
  const int64_t tokens =
      std::clamp<int64_t>(score_floats(span) / (heads * stride), 1, kPrefillBlock);
  bool rows = table.attend_rows != nullptr;
  for (int64_t h0 = 0; rows && h0 < p.group; h0 += heads)
    for (int64_t ta = t0; rows && ta < t1; ta += tokens) {
      AttendRowsArgs r;
      r.q = p.q + ta * p.q_stride + (kvh * p.group + h0) * hd;
      r.out = p.out + ta * p.q_stride + (kvh * p.group + h0) * hd;
      r.q_stride = p.q_stride;
      r.k = k;
      r.v = v;
      r.row_bytes = row_bytes;
      r.head_dim = hd;
      r.n_tokens = std::min(tokens, t1 - ta);
      r.n_heads = std::min(heads, p.group - h0);
      r.first_keys = p.pos0 + ta + 1;
      r.scale = p.scale;
      r.softcap = p.softcap;
      r.scores = scores;
      r.score_stride = stride;
      r.acc = acc;
      r.inv = inv;
      r.kt = kt;
      rows = table.attend_rows(r);  // false (head_dim not taken) before any row is touched
    }
  if (rows) return;
  for (int64_t t = t0; t < t1; ++t) {
    AttendArgs a;
    a.k = k;
    a.v = v;
    a.kv_type = DType::F32;
    a.row_bytes = row_bytes;
    a.n_keys = p.pos0 + t + 1;
    a.head_dim = hd;
    a.scale = p.scale;
    a.softcap = p.softcap;
    // The group's heads kAttendGroupMax at a time over the float keys; their
    // score rows fit score_floats (a stride is at most kPrefillMaxSpan).
    static_assert(kAttendGroupMax * kPrefillMaxSpan <= kRowScoreFloats);
    AttendArgs heads[kAttendGroupMax];
    for (int64_t g0 = 0; g0 < p.group; g0 += kAttendGroupMax) {
      const int n = static_cast<int>(std::min<int64_t>(kAttendGroupMax, p.group - g0));
      for (int i = 0; i < n; ++i) {
        const int64_t h = kvh * p.group + g0 + i;
        heads[i] = a;
        heads[i].q = p.q + t * p.q_stride + h * hd;
        heads[i].out = p.out + t * p.q_stride + h * hd;
        heads[i].scores = scores + i * stride;
      }
      table.attend_group(heads, n);
    }
  }
}

}  // namespace

void attention_many(std::span<const AttentionCall> calls, std::vector<int64_t>& starts,
                    float* scratch, int64_t stride, ThreadPool& pool, float* prefill,
                    int64_t prefill_stride) {
  // starts[i]: the first task of call i (prefix sums of its task counts); a
  // task finds its call by binary search, so the job has no per-call state
  // beyond this and the plans below, both built before the wake-up.
  if (prefill == nullptr) prefill_stride = 0;
  starts.resize(calls.size() + 1);
  starts[0] = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    const AttentionShape& s = calls[i].shape;
    SLM_DCHECK_LE(s.pos0 + s.n_tokens, stride);
    starts[i + 1] = starts[i] + (prefill_blocks(s, prefill_stride) ? prefill_tasks(s)
                                 : group_tasks(s, stride)          ? s.n_tokens * s.n_head_kv
                                                                   : s.n_tokens * s.n_head);
  }
  const OpsTable& table = ops_table();
  pool.parallel_for(starts.back(), [&](int64_t task, int thread) {
    const auto it = std::upper_bound(starts.begin() + 1, starts.end(), task);
    const auto i = static_cast<size_t>(it - starts.begin() - 1);
    const AttentionCall& c = calls[i];
    const AttendPlan p = plan_attention(c.shape, c.q, c.k_cache, c.v_cache, c.out);
    if (prefill_blocks(c.shape, prefill_stride))
      attend_prefill_task(p, table, c.shape.n_tokens, task - starts[i],
                          prefill + static_cast<int64_t>(thread) * prefill_stride);
    else if (group_tasks(c.shape, stride))
      attend_group_task(p, table, task - starts[i], scratch + static_cast<int64_t>(thread) * stride,
                        c.shape.pos0 + c.shape.n_tokens);
    else
      attend_task(p, table, task - starts[i], scratch + static_cast<int64_t>(thread) * stride);
  });
}

namespace {

// Element d of a head's row in the cache's type (the reference's accessor).
template <DType T>
float kv_at(const uint8_t* row, int64_t d) {
  if constexpr (T == DType::F32) {
    float f;
    std::memcpy(&f, row + d * 4, sizeof f);
    return f;
  } else if constexpr (T == DType::F16) {
    uint16_t h;
    std::memcpy(&h, row + d * 2, sizeof h);
    return fp16_to_f32(h);
  } else {
    const auto* b = reinterpret_cast<const kernels::BlockQ8_0*>(row) + d / 32;
    return fp16_to_f32(b->d) * static_cast<float>(b->qs[d % 32]);
  }
}

// The reference: plain loops, double softmax sum.
template <DType T>
void attend_scalar_t(const AttendArgs& a) {
  for (int64_t j = 0; j < a.n_keys; ++j) {
    const uint8_t* kv = a.k + j * a.row_bytes;
    float dot = 0;
    for (int64_t d = 0; d < a.head_dim; ++d) dot += a.q[d] * kv_at<T>(kv, d);
    a.scores[j] = dot * a.scale;
  }
  if (a.softcap > 0) softcap_scores(a.scores, a.n_keys, a.softcap);
  softmax_scalar(a.scores, a.n_keys);
  std::fill(a.out, a.out + a.head_dim, 0.0f);
  for (int64_t j = 0; j < a.n_keys; ++j) {
    const float p = a.scores[j];
    const uint8_t* vv = a.v + j * a.row_bytes;
    for (int64_t d = 0; d < a.head_dim; ++d) a.out[d] += p * kv_at<T>(vv, d);
  }
}

}  // namespace

void attend_group_scalar(const AttendArgs* a, int n) {
  for (int h = 0; h < n; ++h) attend_scalar(a[h]);
}

void kv_to_f32_scalar(DType type, const uint8_t* row, int64_t n, float* out) {
  for (int64_t d = 0; d < n; ++d) {
    switch (type) {
      case DType::F16:
        out[d] = kv_at<DType::F16>(row, d);
        break;
      case DType::Q8_0:
        out[d] = kv_at<DType::Q8_0>(row, d);
        break;
      default:
        out[d] = kv_at<DType::F32>(row, d);
        break;
    }
  }
}

void attend_scalar(const AttendArgs& a) {
  switch (a.kv_type) {
    case DType::F16:
      return attend_scalar_t<DType::F16>(a);
    case DType::Q8_0:
      return attend_scalar_t<DType::Q8_0>(a);
    default:
      return attend_scalar_t<DType::F32>(a);
  }
}

}  // namespace slm::ops
