// base/format.h: the human-readable numbers every command prints.
#include "base/format.h"

#include <gtest/gtest.h>

namespace slm {
namespace {

TEST(Format, HumanCountWritesParameterCountsAsPeopleDo) {
  EXPECT_EQ(human_count(0), "0");
  EXPECT_EQ(human_count(999), "999");
  EXPECT_EQ(human_count(260e3), "260K");
  EXPECT_EQ(human_count(494.03e6), "494M");
  EXPECT_EQ(human_count(999.6e6), "1.0B");
  EXPECT_EQ(human_count(1.544e9), "1.5B");
  EXPECT_EQ(human_count(7.24e9), "7.2B");
  EXPECT_EQ(human_count(14.66e9), "15B");
}

TEST(Format, HumanBytesUsesBinaryUnits) {
  EXPECT_EQ(human_bytes(512), "512 B");
  EXPECT_EQ(human_bytes(1536), "1.5 KiB");
  EXPECT_EQ(human_bytes(3.5 * 1024 * 1024 * 1024), "3.5 GiB");
}

}  // namespace
}  // namespace slm
