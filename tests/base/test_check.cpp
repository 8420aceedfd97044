// SLM_DCHECK: aborts with file:line and the condition when on (Debug, or
// -DSLM_DCHECKS=ON); compiles to nothing and evaluates nothing when off.
#include <gtest/gtest.h>

#include <cstdint>

#include "base/check.h"

namespace slm {
namespace {

TEST(Check, PassingChecksDoNothing) {
  const int64_t cols = 64;
  SLM_DCHECK(cols % 32 == 0);
  SLM_DCHECK_EQ(cols % 32, 0);
  SLM_DCHECK_LT(cols, 65);
  SLM_DCHECK_LE(cols, 64);
  SLM_DCHECK_GT(cols, 0);
  SLM_DCHECK_GE(cols, 64);
  SLM_DCHECK_NE(cols, 0);
}

#if SLM_DCHECK_IS_ON
TEST(CheckDeathTest, FailingCheckAbortsWithItsText) {
  const int64_t cols = 40;
  EXPECT_DEATH(SLM_DCHECK(cols % 32 == 0),
               "test_check.cpp:[0-9]+: SLM_DCHECK failed: cols % 32 == 0");
  EXPECT_DEATH(SLM_DCHECK_LT(cols, 8), "cols < 8 \\(40 vs 8\\)");
}
#else
TEST(Check, OffChecksDoNotEvaluate) {
  int calls = 0;
  auto touch = [&] { return ++calls > 0; };
  SLM_DCHECK(touch());
  SLM_DCHECK_EQ(touch(), true);
  EXPECT_EQ(calls, 0);
}
#endif

}  // namespace
}  // namespace slm
