// The shared input checks (src/core/check.h): strict numbers from text and JSON, ranges, files.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/check.h"
#include "topk/core.h"

using namespace topk;

namespace {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Check, IntegersFromTextAreStrict) {
  EXPECT_EQ(parse_int("42", "--n", 0, 100), 42);
  EXPECT_EQ(parse_int("-3", "--n", -5, 5), -3);
  EXPECT_EQ(parse_int("010", "--n", 0, 100), 10);  // decimal, not octal
  for (const char* bad : {"", "abc", "0x10", "+5", " 5", "5 ", "2.7", "1e3", "5abc",
                          "99999999999999999999", "101", "-1"})
    EXPECT_EQ(error_of([&] { parse_int(bad, "--n", 0, 100); }),
              std::string("--n must be an integer in [0, 100], got '") + bad + "'")
        << bad;
  EXPECT_EQ(parse_u64("18446744073709551615", "--seed"), UINT64_MAX);
  EXPECT_NE(error_of([&] { parse_u64("-1", "--seed"); }), "");
}

TEST(Check, RealsAreFiniteAndInRange) {
  EXPECT_EQ(parse_real("0.5", "--t", {0, 1}), 0.5);
  EXPECT_EQ(parse_real("1e-3", "--t", {0, 1}), 1e-3);
  for (const char* bad : {"nan", "inf", "-inf", "0x1p3", "", "1.5", "abc", " 0.5"})
    EXPECT_NE(error_of([&] { parse_real(bad, "--t", {0, 1}); }), "") << bad;
  EXPECT_EQ(error_of([&] { parse_real("0", "--lr", {0, 10, true}); }),
            "--lr must be a number in (0, 10], got '0'");
  EXPECT_EQ(error_of([&] { parse_real("1", "beta", {0, 1, false, true}); }),
            "beta must be a number in [0, 1), got '1'");
}

TEST(Check, IntegerLists) {
  EXPECT_EQ(parse_int_list("1,2,3", "--ids", 0, 9), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(error_of([&] { parse_int_list("1,,3", "--ids", 0, 9); }),
            "--ids: empty item at character 3 of '1,,3' (write 1,2,3)");
  EXPECT_NE(error_of([&] { parse_int_list("", "--ids", 0, 9); }), "");
  EXPECT_NE(error_of([&] { parse_int_list(",1", "--ids", 0, 9); }), "");
  EXPECT_NE(error_of([&] { parse_int_list("1,a", "--ids", 0, 9); }).find("got 'a'"), std::string::npos);
}

TEST(Check, JsonFields) {
  json j = json::parse(R"({"a": 5, "b": 2.7, "c": 1e5, "d": "x", "e": null, "f": 4294967298,
                           "g": 18446744073709551615, "h": true, "r": 0.5})");
  EXPECT_EQ(json_int(j, "a", "run", 0, 10, 0), 5);
  EXPECT_EQ(json_int(j, "c", "run", 0, 1000000, 0), 100000);
  EXPECT_EQ(json_int(j, "e", "run", 0, 10, 7), 7);
  EXPECT_EQ(json_int(j, "missing", "run", 0, 10, 7), 7);
  EXPECT_EQ(error_of([&] { json_int(j, "b", "run", 0, 10, 0); }),
            "run: 'b' must be an integer in [0, 10], got 2.7");
  EXPECT_NE(error_of([&] { json_int(j, "d", "run", 0, 10, 0); }), "");
  EXPECT_NE(error_of([&] { json_int(j, "f", "run", 0, INT32_MAX, 0); }).find("got 4294967298"),
            std::string::npos);
  EXPECT_NE(error_of([&] { json_int(j, "g", "run", 0, INT64_MAX, 0); }), "");
  EXPECT_EQ(json_u64(j, "g", "run", 0), UINT64_MAX);
  EXPECT_EQ(json_real(j, "r", "run", {0, 1}, 0), 0.5);
  EXPECT_EQ(error_of([&] { json_real(j, "a", "run", {0, 1, false, true}, 0); }),
            "run: 'a' must be a number in [0, 1), got 5");
  EXPECT_EQ(json_real(j, "missing", "run", {0, 1}, 0.25), 0.25);
  EXPECT_EQ(error_of([&] { json_real(j, "d", "run", {0, 1}, 0); }),
            "run: 'd' must be a number in [0, 1], got \"x\"");
  EXPECT_TRUE(json_bool(j, "h", "run", false));
  EXPECT_EQ(error_of([&] { json_bool(j, "a", "run", false); }), "run: 'a' must be true or false, got 5");
  EXPECT_EQ(json_string(j, "d", "run", ""), "x");
  EXPECT_EQ(error_of([&] { json_string(j, "a", "run", ""); }), "run: 'a' must be a string, got 5");
}

TEST(Check, OnlyRegularFilesAreOpened) {
  namespace fs = std::filesystem;
  fs::path d = fs::temp_directory_path() / ("topk_check_" + std::to_string(getpid()));
  fs::create_directories(d);
  std::string fifo = (d / "fifo").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(error_of([&] { open_regular_file(fifo); }), fifo + " is a FIFO; expected a regular file");
  EXPECT_EQ(error_of([&] { open_regular_file(d.string()); }),
            d.string() + " is a folder; expected a regular file");
  EXPECT_NE(error_of([&] { open_regular_file("/dev/zero"); }).find("is a device"), std::string::npos);
  EXPECT_NE(error_of([&] { open_regular_file((d / "none").string()); }).find("cannot open"),
            std::string::npos);
  fs::remove_all(d);
}

TEST(Check, MemoryBudget) {
  EXPECT_GT(memory_bytes(), uint64_t(1) << 26);
  check_memory(1e6, "a small buffer");
  EXPECT_NE(error_of([] { check_memory(1e30, "a huge buffer"); }).find("a huge buffer: "),
            std::string::npos);
}

}  // namespace
