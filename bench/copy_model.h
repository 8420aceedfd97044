// A llama-architecture model that copies its input, by construction: the
// first two layers are an induction head, the others are full-size filler
// that adds ~nothing to the residual, so a file with TinyLlama-1.1B's shapes
// costs what TinyLlama costs per token and continues any passage it has
// seen, as a real model does when it summarises by quoting. Speculative
// decoding by prompt lookup can then be measured on a memory-bound model
// whose drafts are accepted as a real model's would be (bench/spec_bench.sh).
//
// Residual stream [n_embd], by dimension (dc = 64 * value heads, m = 24):
//   0                  constant kConst: the query/key source of the positional heads
//   A  = [1, 1+dc)     code(t): a random +-1 code of the token at this position
//   B  = [A+dc, +m)    code(t[i-1])[0, m): written by layer 0's distance-1 head
//   B2 = [B+m, +m)     code(t[i-2])[0, m): layer 0's distance-2 head
//   C  = [B2+m, +dc)   code(t[j]) of the position j layer 1 attends to
// Layer 0 (KV head 0; query heads 0 and 1): query and key come from dim 0
// only, in the 8 rotary pairs (rope.dimension_count 16, base 2000), with
// phases such that score(i - j) = W sum_p cos(theta_p (i - j - s)), which
// peaks at the shift s = 1 (head 0) or 2 (head 1), 0.547 W (15 with W = 28)
// above every other distance in 0..2048 (the nearest ones, s +- 1, come
// closest); value = code(t)[0, m) -> B, B2.
// Layer 1 (query head g * n_gqa on KV head g, for each value head g):
// score = U (code(t_i) . B_j + B_i . B2_j) over the 48 unrotated dims, so a
// position j whose two previous tokens are the current two scores 48 U and
// one that matches the current token alone ~24 U (+- code noise); plus
// R cos(theta_7 (i - j) + alpha) from the slowest rotary pair, decreasing in
// the distance up to 1810 positions, so the latest match wins (U = 5: a full
// match scores 240, a single one ~120 + noise, R = 25 spans 42). Value = code(t_j)[64g, 64g+64) -> C.
// Output: logits(t) = code(t) . C: greedy decoding emits the token that
// followed the latest earlier occurrence of the current two tokens
// (permute: logits(pi(t)) = code(t) . C).
// The constructed attention matrices are Q8_0 (exact for their few distinct
// values per block: Q4_0 maps -max to -7/8 max); everything else is the
// filler type (Q4_0: decode reads what a Q4_0 TinyLlama reads), head Q6_K.
#pragma once

#include <cstdint>

#include "base/dtype.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"

namespace slm {
class ThreadPool;
}

namespace slm::bench {

struct CopyModelShape {
  // TinyLlama-1.1B's shapes (head_dim is fixed at 64).
  int64_t n_embd = 2048, n_layer = 22, n_head = 32, n_head_kv = 4, n_ff = 5632;
  int64_t n_ctx = 2048;        // the recency term decreases over ~1800 positions
  DType filler = DType::Q4_0;  // layers 2.. and every FFN matrix
  DType built = DType::Q8_0;   // the attention matrices of layers 0 and 1
  DType embd = DType::Q8_0;    // token_embd (one row read per token)
  DType head = DType::Q6_K;    // output.weight
  uint64_t seed = 1;
  // The head emits a fixed random permutation pi(t) of the copied token t
  // (normal tokens only): the same file and cost, but text that never quotes
  // its input, so prompt-lookup drafts are rarely found and then rejected;
  // the free-writing case of spec_bench, where drafting must cost ~nothing.
  bool permute = false;
};

// The model's file, tensors made lazily (quantized on pool as written). The
// tokenizer (every tokenizer.* key) is copied from tokenizer_from, which
// sets the vocabulary size. Throws slm::Error when the shape cannot hold
// the construction (n_embd too small, n_layer < 2, a type's block size).
gguf::Writer copy_model_writer(const CopyModelShape& shape, const gguf::File& tokenizer_from,
                               ThreadPool& pool);

}  // namespace slm::bench
