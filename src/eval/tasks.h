// Multiple-choice task files, parsed as hostile input: every error is an
// slm::Error naming the file and line.
//   HellaSwag (llama.cpp's text layout, 6 lines a task): the context, the
//   index of the right ending (0-3), then the 4 endings.
//   JSONL: one object a line, {"context": str, "endings": [str, ...] (2-64),
//   "label": int}; blank lines are skipped.
// A trailing "\r" on a line is dropped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::eval {

struct ChoiceTask {
  std::string context;
  std::vector<std::string> endings;
  int gold = 0;      // index into endings
  int64_t line = 0;  // 1-based line where the task starts (for messages)
};

inline constexpr size_t kMaxEndings = 64;

// max_tasks > 0 stops after that many tasks (the rest is not parsed).
std::vector<ChoiceTask> parse_hellaswag(std::string_view text, const std::string& name,
                                        int64_t max_tasks = 0);
std::vector<ChoiceTask> parse_choices_jsonl(std::string_view text, const std::string& name,
                                            int64_t max_tasks = 0);

}  // namespace slm::eval
