#include "cli/prune_args.h"

#include <memory>

namespace slm::cli {

model::PruneOptions prune_options(const Args& args) {
  model::PruneOptions p;
  if (const auto f = args.get("--sparsity"))
    p.sparsity = std::make_shared<const model::Sparsity>(model::Sparsity::load(*f));
  if (args.has("--moe-top-k")) p.moe_top_k = args.get_int("--moe-top-k");
  if (args.has("--moe-min-weight"))
    p.moe_min_weight = static_cast<float>(args.get_double("--moe-min-weight"));
  p.threads = thread_count(args);
  return p;
}

void apply_prune_options(const Args& args, model::Model& model) {
  const auto f = args.get("--sparsity");
  model.set_prune(prune_options(args), f ? *f : "");
}

}  // namespace slm::cli
