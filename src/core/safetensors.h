// safetensors files: a u64 little-endian header length N, N bytes of JSON
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
// then the data. The reader maps the file and checks everything before handing out a tensor:
// header length, JSON, dtypes (F32, BF16, F16, I32), shapes, and that the tensors' byte ranges
// lie in the file, do not overlap and cover the data exactly.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "topk/core.h"

namespace topk {

struct StTensor {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside the mapping; not aligned in general
  size_t nbytes = 0;
  int64_t numel() const;
  std::string shape_str() const;  // "[300, 64]"
};

struct SafeTensors {
  std::string path;                      // for messages
  std::shared_ptr<const uint8_t> bytes;  // the mapping (or a copy), kept alive by the tensors' users
  size_t size = 0;
  std::vector<StTensor> tensors;  // in file order of their data
  std::map<std::string, std::string> metadata;

  const StTensor* find(const std::string& name) const;
  // The tensor `name`; raises a clear error when it is missing or its shape differs.
  const StTensor& get(const std::string& name, const std::vector<int64_t>& shape) const;
};

SafeTensors st_load(const std::string& path);  // mmap
// Parses bytes already in memory (copied); `what` names them in errors.
SafeTensors st_parse(const void* data, size_t size, const std::string& what);

// Converts a float tensor (F32, BF16, F16) into n floats; n must equal its numel.
void st_to_f32(const StTensor& t, float* dst, int64_t n);

struct StWrite {
  std::string name;
  DType dtype = DType::f32;  // stored dtype; src is always f32 for float dtypes, i32 for I32
  std::vector<int64_t> shape;
  const void* src = nullptr;
};
// Writes the tensors in the given order to path.tmp, then renames it to path.
void st_save(const std::string& path, const std::vector<StWrite>& tensors,
             const std::map<std::string, std::string>& metadata = {});

}  // namespace topk
