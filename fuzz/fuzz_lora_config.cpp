// Fuzzes the reader of PEFT's adapter_config.json (`slm lora import`): the
// input is the file; a parsed config is then asked which of a few module
// paths it targets (list matching or its regular expression). Every failure
// must be an slm::Error, never a crash, hang or unbounded allocation.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/error.h"
#include "convert/peft.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const slm::convert::PeftConfig c = slm::convert::parse_peft_config(
        std::string_view(reinterpret_cast<const char*>(data), size), "adapter_config.json");
    for (const char* path : {"model.layers.0.self_attn.q_proj", "model.layers.31.mlp.down_proj",
                             "lm_head", "model.layers.12.self_attn.o_proj"})
      (void)slm::convert::peft_targets(c, path);
    (void)c.scale();
  } catch (const slm::Error&) {
  }
  return 0;
}
