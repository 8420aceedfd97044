# Instruction-set detection for per-ISA kernel files. Only the files named in
# slm_isa_sources() get ISA flags; everything else is built for the baseline of
# the target (x86-64 or armv8-a) so the binary runs on any CPU of that family.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set(SLM_ARCH_X86 ON)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64|ARM64")
  set(SLM_ARCH_ARM64 ON)
endif()

# slm_isa_source(<file> <flags...>): compile one kernel file with extra ISA flags.
# Fuzz builds leave these files uninstrumented: under AddressSanitizer, UBSan
# and coverage clang-14 spent 808 s on x86_amx_kquants.cpp alone (34 s
# without), which pushed the bounded fuzz test past its CI timeout. They hold
# arithmetic over buffers that the instrumented loaders and packers have
# already sized; the scalar kernels they must match stay instrumented.
function(slm_isa_source file)
  set(flags ${ARGN})
  if(SLM_FUZZ)
    list(APPEND flags -fno-sanitize=all)
  endif()
  set_source_files_properties(${file} PROPERTIES COMPILE_OPTIONS "${flags}")
endfunction()
