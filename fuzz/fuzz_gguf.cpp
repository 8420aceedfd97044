// libFuzzer target: the GGUF reader and the model binder on arbitrary bytes.
// Any input must either parse or throw slm::Error; never crash or read out of
// bounds (AddressSanitizer checks the latter).
#include <cstddef>
#include <cstdint>
#include <span>

#include "base/error.h"
#include "gguf/gguf.h"
#include "model/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto file = slm::gguf::File::parse(std::span<const uint8_t>(data, size), "fuzz.gguf");
    // Touch every accessor a loader would use.
    for (const auto& kv : file->metadata()) {
      (void)file->find(kv.key);
      if (kv.value.type == slm::gguf::ValueType::ARRAY && kv.value.elem_type != slm::gguf::ValueType::STRING &&
          kv.value.elem_type != slm::gguf::ValueType::ARRAY && kv.value.count > 0)
        (void)kv.value.number_at(kv.value.count - 1);
    }
    for (const auto& t : file->tensors())
      if (t.n_bytes > 0) (void)t.data[t.n_bytes - 1];
    auto model = slm::model::Model::from_file(std::move(file));
    (void)model->n_params();
  } catch (const slm::Error&) {
  }
  return 0;
}
