// safetensors reader and writer: round trips, the Hugging Face fixtures, and rejection of
// truncated or corrupt files with messages that say what is wrong.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"

using namespace topk;

static std::string tmpdir() {
  std::string d = testing::TempDir() + "topk_st_" + std::to_string(getpid());
  mkdir(d.c_str(), 0755);
  return d;
}

static std::string make_file(const std::string& header, size_t data_bytes) {
  std::string s(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; i++) s[i] = char((n >> (8 * i)) & 0xff);
  return s + header + std::string(data_bytes, '\x01');
}

static std::string error_of(const std::string& bytes) {
  try {
    st_parse(bytes.data(), bytes.size(), "x.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, RoundTripAllDtypes) {
  std::string path = tmpdir() + "/rt.safetensors";
  std::vector<float> a = {1.5f, -2.25f, 3.0f, 0.0f, 1e-3f, 65504.0f};
  std::vector<int32_t> ids = {7, -1, 300};
  st_save(path, {{"a.f32", DType::f32, {2, 3}, a.data()},
                 {"a.bf16", DType::bf16, {3, 2}, a.data()},
                 {"a.f16", DType::f16, {6}, a.data()},
                 {"ids", DType::i32, {3}, ids.data()},
                 {"empty", DType::f32, {0, 4}, nullptr}},
          {{"format", "pt"}});
  EXPECT_NE(access((path + ".tmp").c_str(), F_OK), 0) << "temp file left behind";
  SafeTensors st = st_load(path);
  ASSERT_EQ(st.tensors.size(), 5u);
  EXPECT_EQ(st.metadata.at("format"), "pt");
  std::vector<float> out(6);
  st_to_f32(st.get("a.f32", {2, 3}), out.data(), 6);
  EXPECT_EQ(out, a);
  st_to_f32(st.get("a.bf16", {3, 2}), out.data(), 6);
  for (int i = 0; i < 6; i++) EXPECT_NEAR(out[i], a[i], std::abs(a[i]) * 4e-3) << i;
  st_to_f32(st.get("a.f16", {6}), out.data(), 6);
  for (int i = 0; i < 6; i++) EXPECT_NEAR(out[i], a[i], std::abs(a[i]) * 1e-3) << i;
  const StTensor& t = st.get("ids", {3});
  EXPECT_EQ(t.dtype, DType::i32);
  int32_t back[3];
  std::memcpy(back, t.data, 12);
  EXPECT_EQ(back[2], 300);
  EXPECT_EQ(st.get("empty", {0, 4}).nbytes, 0u);
  // The data starts 8-byte aligned, as Hugging Face writes it.
  uint64_t n = 0;
  std::memcpy(&n, st.bytes.get(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
}

TEST(Safetensors, ReadsHuggingFaceFile) {
  SafeTensors st = st_load(std::string(TOPK_SOURCE_DIR) + "/tests/data/hf_tiny_llama/model.safetensors");
  const StTensor& e = st.get("model.embed_tokens.weight", {300, 256});
  EXPECT_EQ(e.dtype, DType::bf16);
  EXPECT_TRUE(st.find("lm_head.weight"));
  EXPECT_FALSE(st.find("nope"));
}

TEST(Safetensors, MissingTensorAndWrongShapeAreClear) {
  std::string path = tmpdir() + "/m.safetensors";
  float x[4] = {1, 2, 3, 4};
  st_save(path, {{"w", DType::f32, {2, 2}, x}});
  SafeTensors st = st_load(path);
  try {
    st.get("v", {2, 2});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'v'"), std::string::npos) << e.what();
  }
  try {
    st.get("w", {4});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has shape [2, 2], expected [4]"), std::string::npos)
        << e.what();
  }
}

TEST(Safetensors, RejectsCorruptFiles) {
  auto has = [](const std::string& err, const char* what) {
    EXPECT_NE(err.find(what), std::string::npos) << "error was: '" << err << "'";
  };
  has(error_of(""), "shorter than the 8-byte header");
  has(error_of(std::string("\x10\0\0\0", 4)), "shorter than the 8-byte header");
  // Header length past the end of the file.
  std::string good = make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8);
  EXPECT_EQ(error_of(good), "");
  std::string big = good;
  big[0] = char(0xff);
  big[3] = char(0x7f);
  has(error_of(big), "does not fit");
  // Truncated data.
  has(error_of(good.substr(0, good.size() - 3)), "outside the");
  // Not JSON.
  has(error_of(make_file("{\"w\": [", 0)), "not valid JSON");
  has(error_of(make_file("[1, 2]", 0)), "must be a JSON object");
  // Bad dtype, bad shape, size mismatch, missing fields.
  has(error_of(make_file(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8)),
      "dtype F64");
  has(error_of(make_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)),
      "non-negative");
  has(error_of(make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
      "needs 12 bytes");
  has(error_of(make_file(R"({"w":{"dtype":"F32","shape":[2]}})", 8)), "data_offsets");
  has(error_of(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8)),
      "outside the");
  // Overlap, gap, trailing bytes.
  has(error_of(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12)),
      "overlap");
  has(error_of(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12)),
      "gap");
  has(error_of(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 12)),
      "trailing");
  has(error_of(make_file(R"({"__metadata__":{"a":1}})", 0)), "not a string");
}

TEST(Safetensors, RejectsTruncatedFileOnDisk) {
  std::string path = tmpdir() + "/t.safetensors";
  std::vector<float> x(100, 1.0f);
  st_save(path, {{"w", DType::f32, {100}, x.data()}});
  std::string bytes = read_file(path);
  write_file_atomic(path, bytes.substr(0, bytes.size() - 10));
  try {
    st_load(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_THROW(st_load(path + ".does-not-exist"), Error);
}
