// The pruning options of run, chat, bench, eval and serve (args.h's
// add_prune_options) turned into model::PruneOptions.
#pragma once

#include "cli/args.h"
#include "model/model.h"

namespace slm::cli {

// Loads --sparsity (slm::Error naming the file on any problem) and reads the
// MoE options; defaults when none is given.
model::PruneOptions prune_options(const Args& args);
// prune_options(args) set on model (refused when it does not fit the model).
void apply_prune_options(const Args& args, model::Model& model);

}  // namespace slm::cli
