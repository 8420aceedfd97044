// Internal to the filter files (not the chat module's API: runtime.h's
// apply_filter / has_filter are): the signature every filter has, the
// argument helpers they share (defined in filters.cpp, beside the registry),
// and the filters the registry lists, by the file that defines them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "chat/runtime.h"

namespace slm::chat::detail {

using FilterFn = Value (*)(Runtime&, const Value&, CallArgs&);

// ---- shared helpers (filters.cpp) ----
// The bound argument, or TemplateError naming fn and param when it is missing.
const Value& need(const std::optional<Value>& v, std::string_view fn, std::string_view param);
bool flag(const std::optional<Value>& v, bool fallback);
int64_t int_arg(const std::optional<Value>& v, int64_t fallback, std::string_view fn);
// A string result, checked against the size limit.
Value text_value(Runtime& rt, std::string s);
// text_value, a Markup when like is one (jinja2's filters that work on
// soft_str(value) return what str's methods return on a Markup).
Value text_like(Runtime& rt, const Value& like, std::string s);
// The value at a dotted attribute path ("function.name", "0"), as jinja2's make_attrgetter.
Value attr_path(Runtime& rt, const Value& item, const std::string& path);
// Sort / unique key: strings lowercased unless case_sensitive.
Value fold_case(const Value& v, bool case_sensitive);

// ---- text and number filters (filters_text.cpp) ----
Value f_trim(Runtime& rt, const Value& v, CallArgs& a);
Value f_tojson(Runtime& rt, const Value& v, CallArgs& a);
Value f_upper(Runtime& rt, const Value& v, CallArgs& a);
Value f_lower(Runtime& rt, const Value& v, CallArgs& a);
Value f_capitalize(Runtime& rt, const Value& v, CallArgs& a);
Value f_title(Runtime& rt, const Value& v, CallArgs& a);
Value f_replace(Runtime& rt, const Value& v, CallArgs& a);
Value f_string(Runtime& rt, const Value& v, CallArgs& a);
Value f_int(Runtime& rt, const Value& v, CallArgs& a);
Value f_float(Runtime& rt, const Value& v, CallArgs& a);
Value f_abs(Runtime& rt, const Value& v, CallArgs& a);
Value f_round(Runtime& rt, const Value& v, CallArgs& a);
Value f_indent(Runtime& rt, const Value& v, CallArgs& a);
Value f_safe(Runtime& rt, const Value& v, CallArgs& a);
Value f_escape(Runtime& rt, const Value& v, CallArgs& a);
Value f_forceescape(Runtime& rt, const Value& v, CallArgs& a);

// ---- list and dict filters (filters_seq.cpp) ----
Value f_length(Runtime& rt, const Value& v, CallArgs& a);
Value f_join(Runtime& rt, const Value& v, CallArgs& a);
Value f_select(Runtime& rt, const Value& v, CallArgs& a);
Value f_reject(Runtime& rt, const Value& v, CallArgs& a);
Value f_selectattr(Runtime& rt, const Value& v, CallArgs& a);
Value f_rejectattr(Runtime& rt, const Value& v, CallArgs& a);
Value f_map(Runtime& rt, const Value& v, CallArgs& a);
Value f_first(Runtime& rt, const Value& v, CallArgs& a);
Value f_last(Runtime& rt, const Value& v, CallArgs& a);
Value f_default(Runtime& rt, const Value& v, CallArgs& a);
Value f_items(Runtime& rt, const Value& v, CallArgs& a);
Value f_list(Runtime& rt, const Value& v, CallArgs& a);
Value f_unique(Runtime& rt, const Value& v, CallArgs& a);
Value f_sort(Runtime& rt, const Value& v, CallArgs& a);
Value f_dictsort(Runtime& rt, const Value& v, CallArgs& a);
Value f_reverse(Runtime& rt, const Value& v, CallArgs& a);
Value f_min(Runtime& rt, const Value& v, CallArgs& a);
Value f_max(Runtime& rt, const Value& v, CallArgs& a);
Value f_sum(Runtime& rt, const Value& v, CallArgs& a);
Value f_attr(Runtime& rt, const Value& v, CallArgs& a);

}  // namespace slm::chat::detail
