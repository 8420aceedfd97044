// Per-render state shared by the interpreter and the built-ins: the limits of
// RenderOptions and the work done so far. Also the built-ins' entry points
// (operators, attribute and item access, filters, tests, globals).
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/template.h"
#include "chat/value.h"

namespace slm::chat {

class Runtime {
 public:
  explicit Runtime(const RenderOptions& opts) : opts_(opts) {}
  virtual ~Runtime() = default;

  const RenderOptions& options() const { return opts_; }

  // Adds work units; throws TemplateError past max_steps.
  void charge(uint64_t units) {
    if (__builtin_add_overflow(steps_, units, &steps_)) steps_ = UINT64_MAX;
    if (steps_ > opts_.max_steps)
      throw TemplateError("template exceeded its work limit of " + std::to_string(opts_.max_steps) + " steps");
  }
  // For a string of n bytes or a list of n elements about to be built.
  void check_size(std::size_t n) { check_growth(n, n); }
  // For a string growing by `added` to `total` bytes.
  void check_growth(std::size_t total, std::size_t added) {
    if (total > opts_.max_output_bytes)
      throw TemplateError("template output or value exceeds the size limit of " +
                          std::to_string(opts_.max_output_bytes) + " bytes");
    charge(added / 8);
  }
  // charge(a * b), saturating: weights of shared structures can be near 2**64.
  void charge_product(uint64_t a, uint64_t b) {
    uint64_t r = 0;
    charge(__builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r);
  }
  // Before comparing a and b (==, <, in): a deep walk costs up to the lighter one's weight.
  void charge_compare(const Value& a, const Value& b) { charge(std::min(a.weight(), b.weight())); }
  void count_iterations(uint64_t n) {
    iterations_ += n;
    if (iterations_ > opts_.max_loop_iterations)
      throw TemplateError("template exceeded its limit of " + std::to_string(opts_.max_loop_iterations) +
                          " loop iterations");
  }

 private:
  RenderOptions opts_;
  uint64_t steps_ = 0;
  uint64_t iterations_ = 0;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> named;

  // Binds the arguments to parameter names, positionally then by name; a
  // missing argument is nullopt. Throws TemplateError naming fn for extra or
  // unknown arguments and for one given twice.
  std::vector<std::optional<Value>> bind(std::string_view fn, std::initializer_list<std::string_view> params) const;
};

// ---- ops.cpp ----
// Binary arithmetic: + - * / // % **, with Python's rules and overflow checks.
Value binary_op(Runtime& rt, std::string_view op, const Value& a, const Value& b);
Value negate(const Value& v);
// `needle in haystack`.
bool contains(const Value& haystack, const Value& needle);
// The items a for loop visits: list items, dict keys, string characters; an
// undefined value iterates as empty, as in jinja2.
std::vector<Value> iterate(Runtime& rt, const Value& v);
// ---- access.cpp ----
// obj.name: dict keys and the methods of str, dict and list; names that begin
// with an underscore are refused.
Value get_attr(Runtime& rt, const Value& obj, const std::string& name);
// obj[key]: dict lookup, list / string index (negative counts from the end).
Value get_item(Runtime& rt, const Value& obj, const Value& key);
Value slice(Runtime& rt, const Value& obj, const Value& start, const Value& stop, const Value& step);
// ---- globals.cpp ----
// The process-wide globals: range, dict, namespace, raise_exception, strftime_now.
std::optional<Value> global_value(std::string_view name);

// ---- filters.cpp (the filters are in filters_text.cpp, filters_seq.cpp) ----
Value apply_filter(Runtime& rt, std::string_view name, const Value& subject, CallArgs& args);
bool has_filter(std::string_view name);
// ---- jinja_tests.cpp ----
bool apply_test(Runtime& rt, std::string_view name, const Value& subject, CallArgs& args);
bool has_test(std::string_view name);

}  // namespace slm::chat
