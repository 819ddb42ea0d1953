#include <gtest/gtest.h>

#include "topk/attention.h"

TEST(Smoke, Builds) { EXPECT_EQ(topk::dtype_size(topk::DType::bf16), 2u); }
