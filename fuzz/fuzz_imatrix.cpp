// libFuzzer target: the importance-matrix reader (model/imatrix.h), legacy
// .dat and GGUF, on arbitrary bytes. Any input must either parse or throw
// slm::Error; never crash or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <span>

#include "base/error.h"
#include "model/imatrix.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const slm::model::Imatrix m =
        slm::model::Imatrix::parse(std::span<const uint8_t>(data, size), "fuzz.imatrix");
    (void)m.find("blk.0.attn_q.weight");
  } catch (const slm::Error&) {
  }
  return 0;
}
