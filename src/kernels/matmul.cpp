// kernels::matmul: the one entry point the model uses for linear layers.
//
// Activations are quantized once into the weight type's vec_dot_type (Q8_0 /
// Q8_K rows in the caller's scratch; F32 is used in place), then output rows
// are split into chunks over the pool. Every y element is one vec_dot call over
// the same bytes whoever runs it, so results do not depend on the thread count.
#include <algorithm>
#include <cstring>

#include "base/check.h"
#include "base/thread_pool.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

// Tokens handled together per weight row: their activation rows (a few KiB
// each) stay in L2 while a chunk's weight rows stream through L1 once.
constexpr int64_t kTokenTile = 16;
// Chunks per thread: enough to even out uneven progress, few enough that the
// atomic task counter stays cheap.
constexpr int64_t kChunksPerThread = 4;
constexpr int64_t kMinChunkRows = 4;
// Tokens per pass of the float tiles over a row group (their F32 rows, a few
// KiB each, stay in L2).
constexpr int64_t kTokenChunk = 64;

// Runs f(begin, end) over [0, n) cut into about kChunksPerThread chunks per
// thread of at least min_chunk items each; the cuts depend only on n and the
// thread count, so results do not depend on timing.
template <typename F>
void parallel_for_ranges(ThreadPool& pool, int64_t n, int64_t min_chunk, const F& f) {
  const int64_t n_chunks_wanted = std::max<int64_t>(1, pool.size() * kChunksPerThread);
  const int64_t chunk = std::max(min_chunk, (n + n_chunks_wanted - 1) / n_chunks_wanted);
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  pool.parallel_for(n_chunks,
                    [&](int64_t c, int) { f(c * chunk, std::min(n, c * chunk + chunk)); });
}

}  // namespace

void matmul(DType wtype, const void* w, int64_t rows, int64_t cols, const float* x,
            int64_t n_tokens, float* y, ThreadPool& pool, std::vector<uint8_t>& scratch) {
  if (rows <= 0 || n_tokens <= 0) return;
  if (cols <= 0) {
    std::fill(y, y + rows * n_tokens, 0.0f);
    return;
  }
  // The loader rejects widths that are not whole blocks (row_fits); a row
  // split mid-block would read the next row's bytes.
  SLM_DCHECK(row_fits(wtype, cols));
  const TypeTraits& wt = traits(wtype);
  SLM_DCHECK(wt.vec_dot != nullptr);
  const DType act_type = wt.vec_dot_type;
  const auto* act = reinterpret_cast<const uint8_t*>(x);
  size_t act_row = static_cast<size_t>(cols) * sizeof(float);
  if (act_type != DType::F32) {
    SLM_DCHECK(row_fits(act_type, cols));  // Q8_K needs 256-wide rows
    act_row = static_cast<size_t>(row_bytes(act_type, cols));
    if (scratch.size() < act_row * static_cast<size_t>(n_tokens))
      scratch.resize(act_row * static_cast<size_t>(n_tokens));
    const auto quantize = traits(act_type).quantize_row;
    uint8_t* q = scratch.data();
    if (n_tokens == 1) {
      quantize(x, q, cols);
    } else {
      pool.parallel_for(n_tokens, [&](int64_t t, int) {
        quantize(x + t * cols, q + static_cast<size_t>(t) * act_row, cols);
      });
    }
    act = q;
  }

  const auto vec_dot = wt.vec_dot;
  const size_t w_row = static_cast<size_t>(row_bytes(wtype, cols));
  const auto* wbytes = static_cast<const uint8_t*>(w);
  const FloatTileFn tile = isa_table(active_isa()).float_tile[static_cast<int>(wtype)];
  // Decoding streams rows one after another through vec_dot: kFloatTileRows
  // interleaved short row streams measured ~2x slower from DRAM (Zen 4), and
  // with under kFloatTileTokens tokens there is no reuse to win.
  if (tile != nullptr && n_tokens >= kFloatTileTokens) {
    // Row groups of kFloatTileRows x token tiles of kFloatTileTokens; tokens
    // in chunks of kTokenChunk so their rows stay in L2 while groups stream.
    const int64_t n_groups = (rows + kFloatTileRows - 1) / kFloatTileRows;
    parallel_for_ranges(pool, n_groups, 1, [&](int64_t g0, int64_t g1) {
      for (int64_t c0 = 0; c0 < n_tokens; c0 += kTokenChunk) {
        const int64_t c1 = std::min(n_tokens, c0 + kTokenChunk);
        for (int64_t g = g0; g < g1; ++g) {
          const int64_t r0 = g * kFloatTileRows;
          const int nr = static_cast<int>(std::min<int64_t>(kFloatTileRows, rows - r0));
          for (int64_t t0 = c0; t0 < c1; t0 += kFloatTileTokens) {
            const int nt = static_cast<int>(std::min<int64_t>(kFloatTileTokens, c1 - t0));
            SLM_DCHECK(nr > 0 && nr <= kFloatTileRows && nt > 0);
            tile(cols, wbytes + static_cast<size_t>(r0) * w_row, w_row, nr, x + t0 * cols, cols, nt,
                 y + t0 * rows + r0, rows);
          }
        }
      }
    });
    return;
  }
  parallel_for_ranges(pool, rows, kMinChunkRows, [&](int64_t r0, int64_t r1) {
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenTile) {
      const int64_t t1 = std::min(n_tokens, t0 + kTokenTile);
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* wr = wbytes + static_cast<size_t>(r) * w_row;
        for (int64_t t = t0; t < t1; ++t)
          vec_dot(cols, y + t * rows + r, wr, act + static_cast<size_t>(t) * act_row);
      }
    }
  });
}

}  // namespace slm::kernels
