// Debug-only checks for hot paths (style.md §8): preconditions of kernels and
// ops (shapes, alignment, block multiples) that callers already guarantee and
// that would cost time to test in every call of a release build.
//
//   SLM_DCHECK(cond)          aborts with file:line and the condition text
//   SLM_DCHECK_EQ/NE/LT/LE/GT/GE(a, b)  the same, printing both values
//
// Active when NDEBUG is not defined (CMAKE_BUILD_TYPE=Debug) or when built
// with -DSLM_DCHECKS=ON (defines SLM_ENABLE_DCHECK, so an optimised test build
// can keep them); otherwise they compile to nothing and do not evaluate their
// arguments. Not error handling: user input and model files are checked with
// always-on code that throws slm::Error.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <type_traits>

#if !defined(NDEBUG) || defined(SLM_ENABLE_DCHECK)
#define SLM_DCHECK_IS_ON 1
#else
#define SLM_DCHECK_IS_ON 0
#endif

namespace slm::detail {

[[noreturn]] inline void dcheck_failed(const char* file, int line, const char* text) {
  std::fprintf(stderr, "%s:%d: SLM_DCHECK failed: %s\n", file, line, text);
  std::fflush(stderr);
  std::abort();
}

template <typename T>
void dcheck_print(const T& v) {
  if constexpr (std::is_floating_point_v<T>)
    std::fprintf(stderr, "%g", static_cast<double>(v));
  else if constexpr (std::is_signed_v<T>)
    std::fprintf(stderr, "%lld", static_cast<long long>(v));
  else
    std::fprintf(stderr, "%llu", static_cast<unsigned long long>(v));
}

template <typename A, typename B>
[[noreturn]] void dcheck_op_failed(const char* file, int line, const char* text, const A& a,
                                   const B& b) {
  std::fprintf(stderr, "%s:%d: SLM_DCHECK failed: %s (", file, line, text);
  dcheck_print(a);
  std::fprintf(stderr, " vs ");
  dcheck_print(b);
  std::fprintf(stderr, ")\n");
  std::fflush(stderr);
  std::abort();
}

}  // namespace slm::detail

#if SLM_DCHECK_IS_ON
#define SLM_DCHECK(cond)                                                  \
  do {                                                                    \
    if (!(cond)) ::slm::detail::dcheck_failed(__FILE__, __LINE__, #cond); \
  } while (0)
#define SLM_DCHECK_OP_(a, op, b)                                                            \
  do {                                                                                      \
    const auto& slm_dcheck_a_ = (a);                                                        \
    const auto& slm_dcheck_b_ = (b);                                                        \
    if (!(slm_dcheck_a_ op slm_dcheck_b_))                                                  \
      ::slm::detail::dcheck_op_failed(__FILE__, __LINE__, #a " " #op " " #b, slm_dcheck_a_, \
                                      slm_dcheck_b_);                                       \
  } while (0)
#else
// sizeof keeps the expression compiled (and its variables "used") without
// evaluating it.
#define SLM_DCHECK(cond) static_cast<void>(sizeof(!(cond)))
#define SLM_DCHECK_OP_(a, op, b) static_cast<void>(sizeof((a)op(b)))
#endif

#define SLM_DCHECK_EQ(a, b) SLM_DCHECK_OP_(a, ==, b)
#define SLM_DCHECK_NE(a, b) SLM_DCHECK_OP_(a, !=, b)
#define SLM_DCHECK_LT(a, b) SLM_DCHECK_OP_(a, <, b)
#define SLM_DCHECK_LE(a, b) SLM_DCHECK_OP_(a, <=, b)
#define SLM_DCHECK_GT(a, b) SLM_DCHECK_OP_(a, >, b)
#define SLM_DCHECK_GE(a, b) SLM_DCHECK_OP_(a, >=, b)
