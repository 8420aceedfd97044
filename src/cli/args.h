// The command line of every slm sub-command, declared once: each command
// builds an Options (flag names, short form, value placeholder, help text,
// default, validation) and parses argv with it. CLI11 does the parsing
// (--long VALUE, --long=VALUE, -s VALUE, -sVALUE, flags, `--`); the help text,
// the `slm help --flags` table and the usage errors are generated from the
// same declarations. Mistakes in how a command is called throw UsageError,
// which names the option as the user typed it; main prints it with
// "see `slm CMD --help`" and exits with code 2. -h / --help throws
// HelpRequest, whose text main prints to stdout (exit code 0).
#pragma once

#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "base/dtype.h"
#include "base/error.h"

namespace slm::cli {

// The command line is wrong (exit code 2), as opposed to a runtime failure
// such as a missing file (slm::Error, exit code 1).
class UsageError : public Error {
 public:
  using Error::Error;
};

// -h / --help was given: text is the command's help, for stdout.
struct HelpRequest {
  std::string text;
};

// One declared option. The setters chain: o.value(...).integer(0, 8).def("4").
class Opt {
 public:
  enum class Kind { kFlag, kText, kInteger, kNumber, kChoice };

  // The default used when the option is absent; help shows it.
  Opt& def(std::string value);
  // A default computed at run time, described for help ("all cores"); the
  // command reads has() and supplies the value itself.
  Opt& def_note(std::string text);
  // Values must be integers in [lo, hi] / finite numbers in [lo, hi] / one of
  // choices (any case; choice() returns it in lower case).
  Opt& integer(long long lo, long long hi);
  Opt& number(double lo = -std::numeric_limits<double>::infinity(),
              double hi = std::numeric_limits<double>::infinity());
  Opt& choices(std::vector<std::string> allowed);
  // May be given more than once, every value kept (get_all); otherwise the
  // last one given wins.
  Opt& repeatable();
  // A further spelling: one dash and several letters, such as llama.cpp's
  // -np for --parallel (CLI11's short forms are one letter), listed with the
  // short forms; or a second long name kept for compatibility, which the
  // help text should mention.
  Opt& alias(std::string spelling);

  // What the declaration says, for help and the flag table. name: "--ctx-size"
  // (the short one if there is no long one); short_forms: "-c", then one-dash
  // aliases; meta: the value's placeholder ("N"), empty for a flag.
  const std::string& name() const { return name_; }
  std::vector<std::string> short_forms() const;
  const std::string& meta() const { return meta_; }
  const std::string& help() const { return help_; }
  const std::string& default_shown() const { return default_shown_; }
  bool is_repeatable() const { return repeatable_; }
  // "-c, --ctx-size N", as help lists it.
  std::string spelling() const;

 private:
  friend class Options;
  friend class Args;
  std::string names_;  // as CLI11 takes them: "--ctx-size,-c"
  std::string name_, short_, meta_, help_;
  std::vector<std::string> aliases_;
  Kind kind_ = Kind::kText;
  std::optional<std::string> default_value_;
  std::string default_shown_;
  long long int_lo_ = 0, int_hi_ = 0;
  double lo_ = 0, hi_ = 0;
  std::vector<std::string> choices_;
  bool repeatable_ = false;
};

class Args;

// The declarations of one command. Not thread-safe; build one per parse.
class Options {
 public:
  // usage: the help's first lines, starting "usage: slm CMD ..." (and any
  // description); notes: text printed after the option list.
  Options(std::string command, std::string usage, std::string notes = "");
  ~Options();
  Options(Options&&) noexcept;
  Options& operator=(Options&&) noexcept;

  // An option taking a value. names: "--ctx-size,-c" (long name, then an
  // optional one-letter short form); meta: the value's placeholder in help.
  Opt& value(const std::string& names, const std::string& meta, const std::string& help);
  // A switch.
  Opt& flag(const std::string& names, const std::string& help);

  // Parses argv (without "slm" and the command name). Throws HelpRequest for
  // -h / --help and UsageError for a malformed command line.
  Args parse(int argc, char** argv);

  const std::string& command() const { return command_; }
  std::string help() const;
  // Every option in declaration order, -h / --help last.
  std::vector<const Opt*> options() const;

 private:
  Opt& add(Opt o);
  const Opt* find(const std::string& spelling) const;

  std::string command_, usage_, notes_;
  std::shared_ptr<std::deque<Opt>> opts_;  // shared with the Args parsed
  Opt help_opt_;
};

// A parsed command line. Options are looked up by their long name
// ("--ctx-size"); asking for an undeclared one is a programming error
// (std::logic_error).
class Args {
 public:
  // Given on the command line (defaults do not count).
  bool has(const std::string& name) const;
  bool flag(const std::string& name) const { return has(name); }
  // The last value given, else the declared default, else nothing.
  std::optional<std::string> get(const std::string& name) const;
  // All values of a repeatable option, in order.
  std::vector<std::string> get_all(const std::string& name) const;
  // The value (validated while parsing) or the declared default; an option
  // without either must be checked with has() first.
  long long get_int(const std::string& name) const;
  double get_double(const std::string& name) const;
  std::string choice(const std::string& name) const;  // lower case
  const std::vector<std::string>& positional() const { return positional_; }
  // The option as the user last typed it ("-n" for --n-predict), for messages.
  std::string shown(const std::string& name) const;

 private:
  friend class Options;
  struct Entry {
    const Opt* decl = nullptr;  // owned by decls_
    std::vector<std::string> values;
    size_t count = 0;
  };
  const Entry& entry(const std::string& name) const;
  std::string required_value(const std::string& name) const;

  std::shared_ptr<const std::deque<Opt>> decls_;
  std::map<std::string, Entry> entries_;      // long name -> what was given
  std::map<std::string, std::string> typed_;  // long name -> spelling typed last
  std::vector<std::string> positional_;
};

// --kv-type f32|f16|q8_0 (any case): how the KV cache stores keys and values.
inline constexpr DType kDefaultKvType = DType::F16;
void add_kv_type_option(Options& o, DType def = kDefaultKvType);
DType kv_type_option(const Args& args);

// --draft none|ngram|model, --draft-max N and --draft-model M: the most draft
// tokens per step for speculative decoding (0: off, the default), by prompt
// lookup or by the model --draft-model names (common.h: load_draft_model).
// Throws UsageError for --draft-model with another --draft kind.
void add_draft_options(Options& o);
int draft_option(const Args& args);

// --lora F[:SCALE], repeatable: adapters applied to every matrix they cover
// (model::parse_lora_argument reads each); --lora-type f16|q8: how their
// factors are kept (backend::LoraType, lora_type_option).
void add_lora_option(Options& o);
void add_lora_type_option(Options& o);
backend::LoraType lora_type_option(const Args& args);

// Dynamic pruning (model::PruneOptions): --sparsity FILE (from `slm prune
// calibrate`), --moe-top-k K and --moe-min-weight P; read by
// cli/prune_args.h's apply_prune_options.
void add_prune_options(Options& o);

// The model given on the command line: --model M, or else the first
// positional argument (`slm run M "prompt"`, `slm chat M`). The positional
// arguments that remain are in rest; UsageError naming the first extra one
// when there are more than max_rest.
struct ModelArgument {
  std::optional<std::string> spec;
  std::vector<std::string> rest;
};
ModelArgument model_argument(const Args& args, size_t max_rest);
// -m / --model M. Without help: a file or store name, defaulting to
// $SLM_MODEL and the store's default (store::resolve_model).
void add_model_option(Options& o, const std::string& help = "");
// -t / --threads N (default: all cores), and the count it means.
void add_threads_option(Options& o, const std::string& help = "threads");
int thread_count(const Args& args);

}  // namespace slm::cli
