// Pieces shared by the generating commands (run, chat): model resolution and
// loading with progress, sampling options, timing and memory reports.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "cli/args.h"
#include "engine/generator.h"
#include "engine/sampler.h"
#include "model/model.h"

namespace slm::grammar {
struct Grammar;
}

namespace slm::cli {

// Declares the options every generating command (run, chat) accepts: the
// model, context and threads, sampling with its defaults, stop strings,
// output constraints, KV type, LoRA and speculative decoding.
void add_generate_options(Options& o);

// Resolves the model argument (--model or the first positional, see
// model_argument) / $SLM_MODEL / the store's default and loads it, repacked
// on the -t threads; on a terminal, large files show a progress bar while
// their pages are read in.
std::unique_ptr<model::Model> load_model(const Args& args);
// The same for a model named by the caller (commands whose first positional
// argument is a sub-command); nullopt: $SLM_MODEL, then the store's default.
std::unique_ptr<model::Model> load_model(const std::optional<std::string>& spec, int threads);
// The model --draft-model names (add_draft_options); null without it.
std::unique_ptr<model::Model> load_draft_model(const Args& args);

// Sampling, stop strings and limits from the command line; n_vocab checks
// --logit-bias ids.
engine::GenerateOptions generate_options(const Args& args, int64_t n_vocab);
// The adapters of every --lora FILE[:SCALE] as one (null without any).
std::shared_ptr<const model::LoraAdapter> lora_option(const Args& args, const model::Model& model);
model::SessionOptions session_options(const Args& args);
// The output constraint of --grammar F.gbnf, --json-schema F.json or
// --json-object (at most one); null without one. A grammar or schema that does
// not compile is a UsageError naming the file and the place ("F.gbnf:3:7: ..."
// or "F.json: json schema: /properties/x: ..."); an unreadable file an Error.
std::shared_ptr<const grammar::Grammar> output_grammar(const Args& args);

// gen.generate(...), with the command-line remedy added to a prompt that does
// not fit the context.
engine::GenerateResult generate(engine::Generator& gen, std::span<const int32_t> prompt,
                                const engine::GenerateOptions& options,
                                const std::function<void(std::string_view)>& on_text,
                                const std::atomic<bool>* cancel = nullptr);

// Peak resident memory of this process in bytes.
int64_t peak_rss_bytes();
// "prompt 12 tok, 845.1 tok/s | generation 64 tok, 97.2 tok/s | first token 14.2 ms | peak
// memory 12.3 MiB"
std::string timing_line(const engine::GenerateResult& r);

}  // namespace slm::cli
