// What the two AMX files (x86_amx.cpp: Q4_0 / Q5_0 / Q8_0; x86_amx_kquants.cpp:
// Q4_K / Q5_K) share: LDTILECFG's operand and the compiler barrier their tile
// loads and stores need. Include only from files built with -mamx-*.
#pragma once

#include <cstdint>

namespace slm::kernels::amx {

// The 64-byte operand of LDTILECFG (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

// The compiler knows of no memory the tile intrinsics read or write (GCC 12:
// LDTILECFG / STTILECFG name 8 of their 64 bytes, TILELOADD / TILESTORED
// none), so the stores that fill a buffer for them could be dropped or sunk
// past them: this barrier, with the buffer's address escaping into it, orders
// plain loads and stores against them.
inline void tile_memory(const void* p) {
  __asm__ volatile("" : : "r"(p) : "memory");
}

}  // namespace slm::kernels::amx
