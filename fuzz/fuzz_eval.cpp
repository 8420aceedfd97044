// Fuzzes slm eval's readers of untrusted files: the first byte picks the
// HellaSwag text reader, the JSONL task reader, the top-k logits file parser
// or the bzip2 decoder; the rest is the file. Every failure must be an
// slm::Error, never a crash, hang or unbounded allocation.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"
#include "eval/logits_file.h"
#include "eval/tasks.h"
#include "eval/text_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 4) {
      case 0:
        slm::eval::parse_hellaswag(body, "fuzz.txt");
        break;
      case 1:
        slm::eval::parse_choices_jsonl(body, "fuzz.jsonl", 100);
        break;
      case 2: {
        const auto f = slm::eval::LogitsFile::parse(body, "fuzz.topk");
        for (uint64_t i = 0; i < f.header().n_positions; ++i) (void)f.record(i);
        break;
      }
      default:
        slm::eval::bunzip2(body, "fuzz.bz2", size_t{64} << 20);
        break;
    }
  } catch (const slm::Error&) {
  }
  return 0;
}
