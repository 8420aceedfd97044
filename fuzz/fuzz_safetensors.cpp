// Fuzzes the readers of untrusted Hugging Face files that `slm convert`
// parses: the first byte picks the safetensors reader (every tensor's floats
// are read back) or the config.json reader; the rest is the file. Every
// failure must be an slm::Error, never a crash, hang or unbounded allocation.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "convert/hf_config.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::span<const uint8_t> body(data + 1, size - 1);
  try {
    if (data[0] % 2 == 0) {
      const auto f = slm::formats::Safetensors::parse(body, "fuzz.safetensors");
      std::vector<float> row;
      for (const auto& t : f->tensors()) {
        if (!slm::formats::st_is_float(t.dtype)) continue;
        row.resize(static_cast<size_t>(t.n_elements));
        slm::formats::st_to_float(t, 0, t.n_elements, row.data());
      }
    } else {
      slm::convert::parse_hf_config(std::string_view(reinterpret_cast<const char*>(body.data()), body.size()),
                                    "config.json");
    }
  } catch (const slm::Error&) {
  }
  return 0;
}
