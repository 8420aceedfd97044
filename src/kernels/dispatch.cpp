// Run-time choice of the kernel table (style.md §6): each ISA table is built
// once, the scalar one always; the active one is picked from the CPU features
// of base/cpu.h at first use (or SLM_ISA=scalar|avx2|avx512|amx|neon for
// debugging) and may be switched by tests with set_active_isa.
#include <atomic>
#include <cstdlib>
#include <initializer_list>
#include <string_view>

#include "base/cpu.h"
#include "kernels/internal.h"

namespace slm::kernels {
namespace {

const CpuFeatures& cpu() {
  return cpu_features();
}

using FillFn = void (*)(TypeTable&);

// An ISA's table: a copy of the table below it with the ISA's fills applied
// in order (later fills override earlier entries; a null fill is skipped).
TypeTable layered(const TypeTable& below, std::initializer_list<FillFn> fills) {
  TypeTable t = below;
  for (FillFn fill : fills)
    if (fill != nullptr) fill(t);
  return t;
}

const TypeTable& scalar_table() {
  static const TypeTable table =
      layered(TypeTable{}, {fill_scalar_float, fill_scalar_legacy, fill_scalar_kquants,
                            fill_scalar_packed, fill_scalar_packed_legacy2, fill_scalar_columns});
  return table;
}

#if defined(SLM_KERNELS_X86)
const TypeTable& avx2_table() {
  static const TypeTable table =
      layered(scalar_table(), {fill_avx2, fill_avx2_packed, fill_avx2_columns_int8});
  return table;
}
// What AVX-512 does not override runs the AVX2 kernel.
const TypeTable& avx512_table() {
  static const TypeTable table =
      layered(avx2_table(),
              {fill_avx512, fill_avx512_packed, fill_avx512_packed_k23, fill_avx512_packed_legacy2,
               fill_avx512_packed_q5k, cpu().avx512_vbmi ? fill_avx512_columns_int8 : nullptr});
  return table;
}
// AVX-512 with AMX tiles for multi-token packed products.
const TypeTable& amx_table() {
  static const TypeTable table = layered(avx512_table(), {fill_amx_packed, fill_amx_kquants});
  return table;
}
#elif defined(SLM_KERNELS_NEON)
const TypeTable& neon_table() {
  static const TypeTable table =
      layered(scalar_table(), {fill_neon, cpu().dotprod ? fill_neon_dotprod : nullptr});
  return table;
}
#endif

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
#if defined(SLM_KERNELS_X86)
    case Isa::kAvx2:
      return cpu().avx2;
    case Isa::kAvx512:
      return cpu().avx512_vnni;
    case Isa::kAmx:
      return cpu().avx512_vnni && cpu().amx_int8 && amx_permitted();
#elif defined(SLM_KERNELS_NEON)
    case Isa::kNeon:
      return cpu().neon;
#endif
    default:
      return false;
  }
}

}  // namespace

const TypeTable& isa_table(Isa isa) {
  if (!isa_supported(isa)) return scalar_table();
  switch (isa) {
#if defined(SLM_KERNELS_X86)
    case Isa::kAvx2:
      return avx2_table();
    case Isa::kAvx512:
      return avx512_table();
    case Isa::kAmx:
      return amx_table();
#elif defined(SLM_KERNELS_NEON)
    case Isa::kNeon:
      return neon_table();
#endif
    default:
      return scalar_table();
  }
}

namespace {

Isa initial_isa() {
  if (const char* env = std::getenv("SLM_ISA"); env != nullptr) {
    for (Isa isa : available_isas())
      if (isa_name(isa) == std::string_view(env)) return isa;
  }
  return best_isa();
}

std::atomic<Isa>& active() {
  static std::atomic<Isa> isa{initial_isa()};
  return isa;
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kNeon:
      return "neon";
    case Isa::kAmx:
      return "amx";
  }
  return "unknown";
}

std::string_view isa_detail(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
      return "avx2+fma+f16c";
    // +vbmi: the int8 column kernels (axpy_cols_algo) run.
    case Isa::kAvx512:
      return cpu().avx512_vbmi ? "avx512+vnni+vbmi" : "avx512+vnni";
    case Isa::kAmx:
      return cpu().avx512_vbmi ? "avx512+vnni+vbmi+amx" : "avx512+vnni+amx";
    case Isa::kNeon:
      return cpu().dotprod ? "neon+dotprod" : "neon";
    default:
      return isa_name(isa);
  }
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx, Isa::kNeon})
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

Isa best_isa() {
  return available_isas().back();
}

Isa active_isa() {
  return active().load(std::memory_order_relaxed);
}

bool set_active_isa(Isa isa) {
  if (!isa_supported(isa)) return false;
  active().store(isa, std::memory_order_relaxed);
  return true;
}

// An ISA the CPU lacks answers with the scalar table rather than crash.
const TypeTraits& traits(Isa isa, DType t) {
  return isa_table(isa_supported(isa) ? isa : Isa::kScalar)[t];
}
const TypeTraits& traits(DType t) {
  return isa_table(active_isa())[t];
}
AxpyRowsFn axpy_rows(Isa isa) {
  return isa_table(isa_supported(isa) ? isa : Isa::kScalar).axpy_rows;
}
AxpyColsFn axpy_cols(Isa isa, DType t) {
  return isa_table(isa_supported(isa) ? isa : Isa::kScalar).axpy_cols[static_cast<int>(t)];
}
AxpyColsFn axpy_cols(DType t) {
  return isa_table(active_isa()).axpy_cols[static_cast<int>(t)];
}
double axpy_cols_pays_below(Isa isa, DType copy) {
  return isa_table(isa_supported(isa) ? isa : Isa::kScalar)
      .axpy_cols_pays_below[static_cast<int>(copy)];
}
ColsAlgo axpy_cols_algo(Isa isa) {
  return isa_table(isa_supported(isa) ? isa : Isa::kScalar).axpy_cols_algo;
}

AxpyRowsFn axpy_rows() {
  return isa_table(active_isa()).axpy_rows;
}
AxpyRowsNFn axpy_rows_n(Isa isa) {
  return isa_table(isa_supported(isa) ? isa : Isa::kScalar).axpy_rows_n;
}
AxpyRowsNFn axpy_rows_n() {
  return isa_table(active_isa()).axpy_rows_n;
}

const LoraKernels& lora_kernels(Isa isa) {
  return isa_table(isa_supported(isa) ? isa : Isa::kScalar).lora;
}
const LoraKernels& lora_kernels() {
  return isa_table(active_isa()).lora;
}
const LoraQ8Kernels& lora_q8_kernels(Isa isa) {
  return isa_table(isa_supported(isa) ? isa : Isa::kScalar).lora_q8;
}
const LoraQ8Kernels& lora_q8_kernels() {
  return isa_table(active_isa()).lora_q8;
}

}  // namespace slm::kernels

namespace slm::kernels {

QuantizeWeightedFn quantize_row_weighted(DType t) {
  if (QuantizeWeightedFn f = weighted_kquant(t)) return f;
  return weighted_legacy(t);
}

}  // namespace slm::kernels
