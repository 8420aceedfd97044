// Run-time choice of the kernel table (style.md §6): each ISA table is built
// once, the scalar one always; the active one is picked from CPU features at
// first use (or SLM_ISA=scalar|avx2|avx512|neon for debugging) and may be
// switched by tests with set_active_isa.
#include <atomic>
#include <cstdlib>
#include <string_view>

#include "kernels/internal.h"

#if defined(SLM_KERNELS_X86)
#include <cpuid.h>
#elif defined(SLM_KERNELS_NEON)
#include <sys/auxv.h>
#endif

namespace slm::kernels {
namespace {

struct CpuFeatures {
  bool avx2 = false;    // AVX2 + FMA + F16C with OS-saved YMM state
  bool avx512 = false;  // F + BW + VL + DQ + VNNI with OS-saved ZMM state
  bool neon = false;
  bool dotprod = false;  // armv8.2 SDOT/UDOT
};

#if defined(SLM_KERNELS_X86)
uint64_t read_xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;    // SSE + AVX
  const bool zmm_state = (xcr0 & 0xE6) == 0xE6;  // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31);
  const bool vnni = c & (1u << 11);
  f.avx2 = ymm_state && avx2 && fma && f16c && bmi2;
  f.avx512 = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl && vnni;
  return f;
}
#elif defined(SLM_KERNELS_NEON)
CpuFeatures detect() {
  CpuFeatures f;
  f.neon = true;  // Advanced SIMD is mandatory on AArch64
  const unsigned long hwcap = getauxval(AT_HWCAP);
  f.dotprod = hwcap & (1ul << 20);  // HWCAP_ASIMDDP
  return f;
}
#else
CpuFeatures detect() {
  return {};
}
#endif

const CpuFeatures& cpu() {
  static const CpuFeatures features = detect();
  return features;
}

TypeTable build_scalar() {
  TypeTable t;
  fill_scalar_float(t);
  fill_scalar_legacy(t);
  fill_scalar_kquants(t);
  fill_scalar_packed(t);
  return t;
}

const TypeTable& scalar_table() {
  static const TypeTable table = build_scalar();
  return table;
}

#if defined(SLM_KERNELS_X86)
const TypeTable& avx2_table() {
  static const TypeTable table = [] {
    TypeTable t = scalar_table();
    fill_avx2(t);
    fill_avx2_packed(t);
    return t;
  }();
  return table;
}
const TypeTable& avx512_table() {
  static const TypeTable table = [] {
    TypeTable t = avx2_table();  // what AVX-512 does not override runs the AVX2 kernel
    fill_avx512(t);
    fill_avx512_packed(t);
    return t;
  }();
  return table;
}
#elif defined(SLM_KERNELS_NEON)
const TypeTable& neon_table() {
  static const TypeTable table = [] {
    TypeTable t = scalar_table();
    fill_neon(t);
    if (cpu().dotprod) fill_neon_dotprod(t);
    return t;
  }();
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
      return cpu().avx512;
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
  }
  return "unknown";
}

std::string_view isa_detail(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
      return "avx2+fma+f16c";
    case Isa::kAvx512:
      return "avx512+vnni";
    case Isa::kNeon:
      return cpu().dotprod ? "neon+dotprod" : "neon";
    default:
      return isa_name(isa);
  }
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kNeon})
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

}  // namespace slm::kernels
