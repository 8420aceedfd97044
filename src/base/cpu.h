// CPU feature detection: the one place that asks the processor (cpuid/xgetbv
// on x86-64, the auxiliary vector on aarch64) what it can run. Kernels and
// ops pick their per-ISA tables from these flags (style.md §6); nothing else
// should probe the CPU. Detection runs once, on first use; the result is
// immutable and safe to read from any thread.
#pragma once

namespace slm {

struct CpuFeatures {
  // x86-64: each flag already includes the OS-saved register state it needs.
  bool avx2 = false;         // AVX2 + FMA + F16C + BMI2 with OS-saved YMM state
  bool avx512 = false;       // AVX-512 F + BW + VL + DQ with OS-saved ZMM state
  bool avx512_vnni = false;  // avx512 plus AVX512-VNNI (what the AVX-512 kernels need)
  bool avx512_vbmi = false;  // avx512_vnni plus AVX512-VBMI (byte permutes: int8 column kernels)
  // AMX (Sapphire Rapids and later): the "amx" kernels need amx_int8 (and
  // avx512_vnni), and Linux also wants arch_prctl(ARCH_REQ_XCOMP_PERM) before
  // the first tile instruction (kernels::amx_permitted asks); amx_bf16 is
  // reported for information only.
  bool amx_tile = false;  // CPUID.(7,0):EDX[24], with OS-saved XTILECFG/XTILEDATA
  bool amx_int8 = false;  // CPUID.(7,0):EDX[25]
  bool amx_bf16 = false;  // CPUID.(7,0):EDX[22]
  // aarch64.
  bool neon = false;     // Advanced SIMD (mandatory on AArch64)
  bool dotprod = false;  // ARMv8.2 SDOT/UDOT (HWCAP_ASIMDDP)
};

// The running CPU's features, detected on first call.
const CpuFeatures& cpu_features();

}  // namespace slm
