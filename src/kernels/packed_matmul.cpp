// kernels::matmul over PackedMatrix weights: activations quantized once per
// weight type into Q8_0 / Q8_K rows with their scales and integer corrections
// (PackedAct, internal.h), then 16-row groups x token tiles split over the
// pool with a guided split that depends only on the shape and thread count.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "base/check.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

// Activation scratch per token: Q8_0 blocks, then float scales, then int32
// corrections, each section padded to 64 bytes.
struct ActLayout {
  size_t q_bytes, d_bytes, c_bytes, row;
};
ActLayout act_layout(DType t, int64_t cols) {
  auto pad = [](size_t v) { return (v + 63) / 64 * 64; };
  const int64_t nb = cols / packed_block_elems(t);
  ActLayout l;
  l.q_bytes =
      pad(static_cast<size_t>(nb) * (packed_is_k(t) ? sizeof(BlockQ8_K) : sizeof(BlockQ8_0)));
  l.d_bytes = pad(static_cast<size_t>(nb) * sizeof(float));
  l.c_bytes = pad(static_cast<size_t>(nb) * sizeof(int32_t) * (packed_is_k(t) ? kKCorr : 1));
  l.row = l.q_bytes + l.d_bytes + l.c_bytes;
  return l;
}

// Token tile for prompts: tokens per pass over a group's weights, chosen so a
// chunk's activations (~cols bytes each) stay in L2 while groups stream.
constexpr int64_t kTokenChunk = 64;
// Most bytes of arranged activations per token chunk when every matrix of a
// call takes arranged tiles (half of a 2 MiB L2, the weight scratch and the
// outputs' lines in flight beside them).
constexpr int64_t kArrangedChunkBytes = 1 << 20;
// Work split of a matmul (see the guided split in matmul).
constexpr int kMaxChunks = 64;
// Smallest chunk: enough weight bytes that claiming it (an atomic on a line
// both cores write) stays negligible, few enough that the threads' last
// chunks end close together (one group of a 4864-wide Q6_K row is 64 KiB).
constexpr int64_t kMinChunkBytes = 16 << 10;

// Runs fn(group, c0, c1, thread) for every group of rows and chunk [c0, c1)
// of tokens, split over the pool (fn splits a chunk into token tiles of at
// most tile_tokens <= kPackWideTokensMax; a chunk starts at a multiple of
// tile_tokens, itself a multiple of kPackWideTokens when wide). token_chunk:
// tokens per chunk (a multiple of tile_tokens), or 0 for kTokenChunk's. Guided split:
// each chunk takes 1 / (2 * threads) of the groups left, so the first chunks are large (few
// claims) and the last ones small (threads finish together); the boundaries
// depend only on the shape and the thread count, never on timing.
template <typename Fn>
void run_groups(int64_t n_groups, size_t bytes, int64_t n_tokens, int tile_tokens,
                int64_t token_chunk, ThreadPool& pool, const Fn& fn) {
  // A group's weights are read once per pass of kPackWideTokens tokens, so
  // a prompt's group is worth that many claims: a 512-token Qwen2.5-0.5B
  // step claims its Q, K, V groups (8 KiB each, ~18 us of AMX work at 512
  // tokens) one at a time near the end instead of two at a time.
  const int64_t passes = (n_tokens + kPackWideTokens - 1) / kPackWideTokens;
  const int64_t min_groups = std::max<int64_t>(
      1, kMinChunkBytes / std::max<int64_t>(1, static_cast<int64_t>(bytes) / n_groups * passes));
  int64_t bounds[kMaxChunks + 1];
  int64_t n_chunks = 0;
  bounds[0] = 0;
  const int64_t div = 2 * std::max(1, pool.size());
  while (bounds[n_chunks] < n_groups) {
    const int64_t left = n_groups - bounds[n_chunks];
    // Even counts, so every group of a chunk has its pair (packed_tile_pair).
    const int64_t take =
        n_chunks + 1 == kMaxChunks ? left : (std::max<int64_t>(min_groups, left / div) + 1) / 2 * 2;
    bounds[n_chunks + 1] = bounds[n_chunks] + std::min(left, take);
    ++n_chunks;
  }
  pool.parallel_for(n_chunks, [&](int64_t chunk, int thread) {
    // Wide tiles compute faster, so a chunk of them spans more tokens per
    // pass over the weights.
    // (Tiles wider than kPackWideTokens only unpack their weights fewer
    // times: the chunk stays that of kPackWideTokens, rounded up to whole tiles.)
    const int64_t chunk_tokens =
        token_chunk > 0 ? token_chunk
                        : (kTokenChunk / kPackMaxTokens * std::min(tile_tokens, kPackWideTokens) +
                           tile_tokens - 1) /
                              tile_tokens * tile_tokens;
    for (int64_t c0 = 0; c0 < n_tokens; c0 += chunk_tokens) {
      const int64_t c1 = std::min(n_tokens, c0 + chunk_tokens);
      for (int64_t g = bounds[chunk]; g < bounds[chunk + 1];)
        g += fn(g, bounds[chunk + 1], c0, c1, thread);
    }
  });
}

// The lines of y a tile call stores into (n tokens x width floats, ldy apart),
// fetched as the call starts: a tile stores its sums only when its last block
// is done, and a prompt's outputs (Qwen2.5-0.5B gate_up: 256 tokens x 9728
// rows, 10 MB) are not in any cache by then, so without this each call's
// stores waited on up to 32 lines from memory at its end. Intel Xeon (family
// 6 model 207, no AMX), 2 threads, Qwen2.5-0.5B-shaped Q4_0, 4 alternating
// rounds: pp256 623-769 -> 712-811 tok/s; 16 served streams' TTFT p99
// 2.94 / 3.12 -> 2.69 / 2.63 s.
inline void prefetch_out(const float* y, int64_t ldy, int n, int width) {
  constexpr int kLineFloats = 64 / static_cast<int>(sizeof(float));
  for (int t = 0; t < n; ++t)
    for (int o = 0; o < width; o += kLineFloats) __builtin_prefetch(y + t * ldy + o, 1, 3);
}

// Writes token t's activation for weights of type t (Q8_0 / Q8_K blocks,
// float scales, integer corrections; layout al) at row.
void prepare_act(const TypeTable& table, DType type, const ActLayout& al, const float* x,
                 int64_t cols, uint8_t* row) {
  SLM_DCHECK_EQ(cols % packed_block_elems(type), 0);
  SLM_DCHECK_EQ(reinterpret_cast<uintptr_t>(row) % 64, 0u);  // act_layout pads rows to 64
  const int64_t nb = cols / packed_block_elems(type);
  auto* d = reinterpret_cast<float*>(row + al.q_bytes);
  auto* c = reinterpret_cast<int32_t*>(row + al.q_bytes + al.d_bytes);
  if (packed_is_k(type)) {
    table[DType::Q8_K].quantize_row(x, row, cols);
    const auto* q = reinterpret_cast<const BlockQ8_K*>(row);
    for (int64_t b = 0; b < nb; ++b) {
      d[b] = q[b].d;
      int32_t* cb = c + kKCorr * b;
      if (type == DType::Q6_K || type == DType::Q3_K) {  // the levels' offset
        const int32_t offset = type == DType::Q6_K ? 32 : 4;
        for (int j = 0; j < 16; ++j) cb[j] = -offset * q[b].bsums[j];
      } else if (type == DType::Q2_K) {
        for (int j = 0; j < 16; ++j) cb[j] = q[b].bsums[j];
      } else {
        for (int j = 0; j < 8; ++j) cb[j] = q[b].bsums[2 * j] + q[b].bsums[2 * j + 1];
        for (int j = 8; j < kKCorr; ++j) cb[j] = 0;
      }
    }
    return;
  }
  table[DType::Q8_0].quantize_row(x, row, cols);
  const auto* q = reinterpret_cast<const BlockQ8_0*>(row);
  for (int64_t b = 0; b < nb; ++b) {
    int32_t sum = 0;
    for (int e = 0; e < kQK32; ++e) sum += q[b].qs[e];
    d[b] = fp16_to_f32(q[b].d);
    c[b] = packed_block_corr(type, sum);
  }
}

// The most matrices one fused call takes (Q, K, V).
constexpr size_t kMaxFused = 4;

}  // namespace

void arrange_tile_acts(const PackedAct* act, int nt, int64_t nb, uint8_t* out) {
  SLM_DCHECK(nt > 0 && nt <= kPackWideTokens);
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* blk = out + b * kArrangedBlockBytes;
    auto* d = reinterpret_cast<float*>(blk + kPackWideTokens * kQK32);
    auto* corr = reinterpret_cast<int32_t*>(blk + kPackWideTokens * (kQK32 + 4));
    for (int t = 0; t < nt; ++t) {
      std::memcpy(blk + t * kQK32, static_cast<const BlockQ8_0*>(act[t].q)[b].qs, kQK32);
      d[t] = act[t].d[b];
      corr[t] = act[t].corr[b];
    }
  }
}

void matmul(std::span<const PackedOut> outs, const float* x, int64_t n_tokens, ThreadPool& pool,
            std::vector<uint8_t>& scratch) {
  if (outs.empty() || n_tokens <= 0) return;
  const int64_t cols = outs[0].w->cols();
  bool fusable = outs.size() <= kMaxFused;
  for (const PackedOut& o : outs) fusable = fusable && !o.w->empty() && o.w->cols() == cols;
  if (!fusable) {
    if (outs.size() == 1) return;  // an empty matrix
    for (const PackedOut& o : outs)
      matmul(std::span<const PackedOut>(&o, 1), x, n_tokens, pool, scratch);
    return;
  }
  const TypeTable& table = isa_table(active_isa());
  // Bytes of one token tile's arranged activations, and of all tiles'.
  auto tile_bytes = [](int64_t nb) { return static_cast<size_t>(nb * kArrangedBlockBytes); };
  auto arranged_bytes = [&](int64_t nb) {
    return tile_bytes(nb) * static_cast<size_t>((n_tokens + kPackWideTokens - 1) / kPackWideTokens);
  };
  struct Part {
    const PackedMatrix* w;
    float* y;
    PackedTileFn tile;
    int64_t nb, g0;  // blocks per row; first group in the fused numbering
    size_t group_bytes;
    ActLayout al;
    const uint8_t* act;                  // prepared activations (nullptr for F16: x in place)
    PackedTileArrangedFn arranged_tile;  // null: none, or too few tokens
    const uint8_t* arranged;             // its activations, token tile after token tile
    PackedPairTileFn pair;               // null: none, or wide tiles instead
    const PackedAct* acts;               // every token's PackedAct (token_acts), in scratch
  };
  Part parts[kMaxFused];
  // Each part's tiles for 2..wide_tokens[i] tokens (null: tile in passes).
  PackedTileFn wide[kMaxFused];
  int wide_tokens[kMaxFused], wide_min[kMaxFused];
  int pair_tokens[kMaxFused];        // most tokens of one pair call
  int tile_tokens = kPackMaxTokens;  // the parts' widest wide tile or pair call, if wider
  const size_t n_parts = outs.size();
  int64_t n_groups = 0;
  size_t total_bytes = 0;
  size_t act_bytes = 64;      // alignment slack
  size_t wscratch_bytes = 0;  // per thread, for the arranged tiles' weights
  for (size_t i = 0; i < n_parts; ++i) {
    const PackedMatrix& w = *outs[i].w;
    Part& p = parts[i];
    p = Part{&w,
             outs[i].y,
             table.packed_tile[static_cast<int>(w.type())],
             cols / packed_block_elems(w.type()),
             n_groups,
             0,
             act_layout(w.type(), cols),
             nullptr,
             nullptr,
             nullptr,
             nullptr,
             nullptr};
    wide[i] = table.packed_tile_wide[static_cast<int>(w.type())];
    if (wide[i] == nullptr) p.pair = table.packed_tile_pair[static_cast<int>(w.type())];
    const int pt = table.packed_pair_tokens[static_cast<int>(w.type())];
    pair_tokens[i] = pt > 0 ? pt : kPackMaxTokens;
    SLM_DCHECK(pair_tokens[i] <= kPackPairMaxTokens);
    const int wt = table.packed_wide_tokens[static_cast<int>(w.type())];
    wide_tokens[i] = wt > 0 ? wt : kPackWideTokens;
    const int wm = table.packed_wide_min_tokens[static_cast<int>(w.type())];
    wide_min[i] = wm > 0 ? wm : kPackWideMinTokens;
    if (n_tokens >= kPackWideMinTokens)
      p.arranged_tile = table.packed_tile_arranged[static_cast<int>(w.type())];
    if (wide[i] != nullptr) tile_tokens = std::max(tile_tokens, wide_tokens[i]);
    if (p.pair != nullptr) tile_tokens = std::max(tile_tokens, pair_tokens[i]);
    SLM_DCHECK_EQ(cols % packed_block_elems(w.type()), 0);  // pack() refuses partial blocks
    SLM_DCHECK(p.tile != nullptr);
    p.group_bytes = static_cast<size_t>(p.nb * packed_block_bytes(w.type()));
    n_groups += (w.rows() + kPackRows - 1) / kPackRows;
    total_bytes += w.size_bytes();
    if (w.type() != DType::F16) act_bytes += p.al.row * static_cast<size_t>(n_tokens);
    if (p.arranged_tile != nullptr) {
      act_bytes += arranged_bytes(p.nb);
      wscratch_bytes = std::max(wscratch_bytes, static_cast<size_t>(p.nb * kArrangedWeightBytes));
    }
  }
  act_bytes += wscratch_bytes * static_cast<size_t>(pool.size());
  act_bytes += n_parts * static_cast<size_t>(n_tokens) * sizeof(PackedAct);

  // Quantize each token once per weight type (matrices of the same type
  // share the rows): Q8_0 / Q8_K blocks, float scales, integer corrections.
  if (scratch.size() < act_bytes) scratch.resize(act_bytes);
  uint8_t* next = scratch.data() + (64 - reinterpret_cast<uintptr_t>(scratch.data()) % 64) % 64;
  size_t n_prepared = 0;
  size_t prepared[kMaxFused];
  for (size_t i = 0; i < n_parts; ++i) {
    if (parts[i].w->type() == DType::F16) continue;
    for (size_t j = 0; j < i && parts[i].act == nullptr; ++j)
      if (parts[j].w->type() == parts[i].w->type()) parts[i].act = parts[j].act;
    if (parts[i].act != nullptr) continue;
    parts[i].act = next;
    next += parts[i].al.row * static_cast<size_t>(n_tokens);
    prepared[n_prepared++] = i;
  }
  auto prepare = [&](int64_t task) {
    const Part& p = parts[prepared[task % static_cast<int64_t>(n_prepared)]];
    const int64_t t = task / static_cast<int64_t>(n_prepared);
    prepare_act(table, p.w->type(), p.al, x + t * cols, cols,
                const_cast<uint8_t*>(p.act) + static_cast<size_t>(t) * p.al.row);
  };
  const int64_t n_prep = static_cast<int64_t>(n_prepared) * n_tokens;
  if (n_prep == 1)
    prepare(0);
  else if (n_prep > 1)
    pool.parallel_for(n_prep, [&](int64_t task, int) { prepare(task); });

  // Arranged activations (internal.h) for the parts whose tiles take them,
  // once per prepared type, written token tile by token tile.
  size_t n_arranged = 0;
  size_t arranged[kMaxFused];
  for (size_t i = 0; i < n_parts; ++i) {
    Part& p = parts[i];
    if (p.arranged_tile == nullptr) continue;
    for (size_t j = 0; j < i && p.arranged == nullptr; ++j)
      if (parts[j].arranged != nullptr && parts[j].act == p.act) p.arranged = parts[j].arranged;
    if (p.arranged != nullptr) continue;
    p.arranged = next;
    next += arranged_bytes(p.nb);
    arranged[n_arranged++] = i;
  }
  uint8_t* const wscratch = next;  // pool.size() x wscratch_bytes (64-byte multiples)
  next += wscratch_bytes * static_cast<size_t>(pool.size());
  const int64_t n_tiles = (n_tokens + kPackWideTokens - 1) / kPackWideTokens;
  auto token_acts = [&](const Part& p, int64_t t) {
    const uint8_t* row = p.act + static_cast<size_t>(t) * p.al.row;
    return PackedAct{row, reinterpret_cast<const float*>(row + p.al.q_bytes),
                     reinterpret_cast<const int32_t*>(row + p.al.q_bytes + p.al.d_bytes)};
  };
  // Each part's PackedAct per token, written once here rather than by every
  // tile call (a 16-token decode step calls a pair tile ~14,000 times).
  for (size_t i = 0; i < n_parts; ++i) {
    auto* acts = reinterpret_cast<PackedAct*>(next);
    next += static_cast<size_t>(n_tokens) * sizeof(PackedAct);
    for (int64_t t = 0; t < n_tokens; ++t)
      acts[t] = parts[i].act == nullptr ? PackedAct{x + t * cols, nullptr, nullptr}
                                        : token_acts(parts[i], t);
    parts[i].acts = acts;
  }
  if (n_arranged > 0)
    pool.parallel_for(static_cast<int64_t>(n_arranged) * n_tiles, [&](int64_t task, int) {
      const Part& p = parts[arranged[task % static_cast<int64_t>(n_arranged)]];
      const int64_t t0 = task / static_cast<int64_t>(n_arranged) * kPackWideTokens;
      const int nt = static_cast<int>(std::min<int64_t>(kPackWideTokens, n_tokens - t0));
      PackedAct acts[kPackWideTokens];
      for (int k = 0; k < nt; ++k) acts[k] = token_acts(p, t0 + k);
      arrange_tile_acts(
          acts, nt, p.nb,
          const_cast<uint8_t*>(p.arranged) + tile_bytes(p.nb) * (t0 / kPackWideTokens));
    });

  // Runs group g (and g + 1 where a pair tile takes both; g_end: the end of
  // the caller's run) for tokens [c0, c1); returns the groups done.
  auto tile = [&](int64_t g, int64_t g_end, int64_t c0, int64_t c1, int thread) -> int64_t {
    size_t i = n_parts - 1;
    while (g < parts[i].g0) --i;
    const Part& p = parts[i];
    const int64_t rows = p.w->rows(), lg = g - p.g0;
    const int nr = static_cast<int>(std::min<int64_t>(kPackRows, rows - lg * kPackRows));
    SLM_DCHECK(nr > 0 && c0 < c1);
    const uint8_t* group = p.w->data() + static_cast<size_t>(lg) * p.group_bytes;
    // Arranged tiles take the whole chunk (its weights prepared once);
    // run_groups starts chunks at multiples of tile_tokens (of kPackWideTokens here).
    if (p.arranged != nullptr && c0 % kPackWideTokens == 0) {
      p.arranged_tile(p.nb, group, p.arranged + tile_bytes(p.nb) * (c0 / kPackWideTokens), c1 - c0,
                      p.y + c0 * rows + lg * kPackRows, rows, nr,
                      wscratch + static_cast<size_t>(thread) * wscratch_bytes);
      return 1;
    }
    // With the next group of the run and part (pair tiles are set only where
    // no wide tile is): its rows nr1.
    const bool pair = p.pair != nullptr && g + 1 < g_end && (lg + 1) * kPackRows < rows &&
                      c1 - c0 >= kPackPairMinTokens;
    const int nr1 =
        pair ? static_cast<int>(std::min<int64_t>(kPackRows, rows - (lg + 1) * kPackRows)) : 0;
    for (int64_t t0 = c0; t0 < c1; t0 += tile_tokens) {
      const int nt = static_cast<int>(std::min<int64_t>(tile_tokens, c1 - t0));
      const PackedAct* acts = p.acts + t0;
      float* y = p.y + t0 * rows + lg * kPackRows;
      // Decoding and small batches keep the narrow tiles; every tile gives the
      // same bits. Wide tiles go in passes of their own width.
      int k0 = 0;
      if (wide[i] != nullptr)
        for (; nt - k0 >= wide_min[i]; k0 += wide_tokens[i])
          wide[i](p.nb, group, acts + k0, std::min(wide_tokens[i], nt - k0), y + k0 * rows, rows,
                  nr);
      const int pass = pair ? pair_tokens[i] : kPackMaxTokens;
      for (; k0 < nt; k0 += pass) {
        const int n = std::min(pass, nt - k0);
        prefetch_out(y + k0 * rows, rows, n, nr + nr1);
        if (pair)
          p.pair(p.nb, group, static_cast<int64_t>(p.group_bytes), acts + k0, n, y + k0 * rows,
                 rows, nr1);
        else
          p.tile(p.nb, group, acts + k0, n, y + k0 * rows, rows, nr);
      }
    }
    return pair ? 2 : 1;
  };
  // Arranged tiles convert a group's weights once per chunk, so when every
  // matrix takes them a chunk spans as many token tiles as keep the
  // arranged activations within kArrangedChunkBytes (in L2 while the groups'
  // weights stream): Qwen2.5-0.5B's 512-token prompt step is one chunk for
  // K = 896 (573 KB) and 3 for K = 4864; the chunks are evened out.
  int64_t token_chunk = 0;
  bool all_arranged = true;
  for (size_t i = 0; i < n_parts; ++i) all_arranged = all_arranged && parts[i].arranged != nullptr;
  if (all_arranged && tile_tokens == kPackWideTokens) {
    const int64_t per_chunk =
        std::max<int64_t>(1, kArrangedChunkBytes / static_cast<int64_t>(tile_bytes(parts[0].nb)));
    const int64_t chunks = (n_tiles + per_chunk - 1) / per_chunk;
    token_chunk = (n_tiles + chunks - 1) / chunks * kPackWideTokens;
  }
  run_groups(n_groups, total_bytes, n_tokens, tile_tokens, token_chunk, pool, tile);
}

void matmul(const PackedMatrix& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool,
            std::vector<uint8_t>& scratch) {
  const PackedOut out{&w, y};
  matmul(std::span<const PackedOut>(&out, 1), x, n_tokens, pool, scratch);
}

}  // namespace slm::kernels
