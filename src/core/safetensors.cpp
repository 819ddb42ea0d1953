#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/check.h"
#include "core/dtype.h"
#include "core/json.h"

namespace topk {

int64_t StTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

static std::string shape_string(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
std::string StTensor::shape_str() const { return shape_string(shape); }

static const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::i32: return "I32";
    case DType::f8e4m3: return "F8_E4M3";
  }
  return "?";
}

const StTensor* SafeTensors::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const StTensor& SafeTensors::get(const std::string& name, const std::vector<int64_t>& shape) const {
  const StTensor* t = find(name);
  TOPK_CHECK(t, "%s: missing tensor '%s' (the file has %zu tensors)", path.c_str(), name.c_str(),
             tensors.size());
  TOPK_CHECK(t->shape == shape, "%s: tensor '%s' has shape %s, expected %s", path.c_str(),
             name.c_str(), t->shape_str().c_str(), shape_string(shape).c_str());
  return *t;
}

static SafeTensors parse(std::shared_ptr<const uint8_t> bytes, size_t size, const std::string& what) {
  const char* p = what.c_str();
  TOPK_CHECK(size >= 8, "%s: not a safetensors file: %zu bytes, shorter than the 8-byte header "
             "length (truncated?)", p, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | bytes.get()[i];
  TOPK_CHECK(n >= 2 && n <= 100000000 && n <= size - 8,
             "%s: header length %llu does not fit a %zu-byte file (truncated or not safetensors)", p,
             (unsigned long long)n, size);
  const char* hdr = reinterpret_cast<const char*>(bytes.get() + 8);
  json j;
  try {
    j = json::parse(hdr, hdr + n);
  } catch (const json::exception& e) {
    throw Error(what + ": header is not valid JSON: " + e.what());
  }
  TOPK_CHECK(j.is_object(), "%s: header must be a JSON object", p);
  SafeTensors st;
  st.path = what;
  st.bytes = bytes;
  st.size = size;
  size_t data_size = size - 8 - n;
  const uint8_t* data = bytes.get() + 8 + n;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      TOPK_CHECK(e.is_object(), "%s: __metadata__ must be an object of strings", p);
      for (auto m = e.begin(); m != e.end(); ++m) {
        TOPK_CHECK(m.value().is_string(), "%s: __metadata__ value '%s' is not a string", p,
                   m.key().c_str());
        st.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const char* nm = name.c_str();
    TOPK_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") &&
                   e.contains("data_offsets"),
               "%s: tensor '%s' needs dtype, shape and data_offsets", p, nm);
    TOPK_CHECK(e["dtype"].is_string(), "%s: tensor '%s': dtype is not a string", p, nm);
    std::string dt = e["dtype"].get<std::string>();
    StTensor t;
    t.name = name;
    if (dt == "F32") t.dtype = DType::f32;
    else if (dt == "BF16") t.dtype = DType::bf16;
    else if (dt == "F16") t.dtype = DType::f16;
    else if (dt == "I32") t.dtype = DType::i32;
    else TOPK_CHECK(false, "%s: tensor '%s' has dtype %s; supported: F32, BF16, F16, I32", p, nm,
                    dt.c_str());
    const json& sh = e["shape"];
    TOPK_CHECK(sh.is_array() && sh.size() <= 8, "%s: tensor '%s': shape must be a list of at most "
               "8 dims", p, nm);
    uint64_t numel = 1;
    for (const auto& d : sh) {
      TOPK_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
                 "%s: tensor '%s': shape entries must be non-negative integers", p, nm);
      uint64_t v = d.get<uint64_t>();
      TOPK_CHECK(v <= (uint64_t(1) << 40) && (v == 0 || numel <= (uint64_t(1) << 40) / v),
                 "%s: tensor '%s': shape is absurdly large", p, nm);
      numel *= v;
      t.shape.push_back(int64_t(v));
    }
    const json& off = e["data_offsets"];
    TOPK_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                   off[1].is_number_unsigned(),
               "%s: tensor '%s': data_offsets must be two non-negative integers", p, nm);
    uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    TOPK_CHECK(b <= en && en <= data_size,
               "%s: tensor '%s': data_offsets [%llu, %llu] outside the %zu data bytes (truncated?)",
               p, nm, (unsigned long long)b, (unsigned long long)en, data_size);
    uint64_t want = numel * dtype_size(t.dtype);
    TOPK_CHECK(en - b == want, "%s: tensor '%s': %s %s needs %llu bytes, data_offsets give %llu", p,
               nm, dt.c_str(), t.shape_str().c_str(), (unsigned long long)want,
               (unsigned long long)(en - b));
    t.data = data + b;
    t.nbytes = size_t(want);
    ranges.push_back({b, en});
    st.tensors.push_back(std::move(t));
  }
  std::vector<size_t> order(st.tensors.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  uint64_t at = 0;
  std::vector<StTensor> sorted;
  for (size_t i : order) {
    TOPK_CHECK(ranges[i].first == at, "%s: tensor '%s' starts at byte %llu of the data, expected %llu"
               " (%s)", p, st.tensors[i].name.c_str(), (unsigned long long)ranges[i].first,
               (unsigned long long)at, ranges[i].first < at ? "overlap" : "gap");
    at = ranges[i].second;
    sorted.push_back(std::move(st.tensors[i]));
  }
  TOPK_CHECK(at == data_size, "%s: tensors cover %llu of the %zu data bytes (trailing garbage)", p,
             (unsigned long long)at, data_size);
  st.tensors = std::move(sorted);
  return st;
}

SafeTensors st_parse(const void* data, size_t size, const std::string& what) {
  uint8_t* copy = new uint8_t[size ? size : 1];
  if (size) std::memcpy(copy, data, size);
  return parse(std::shared_ptr<const uint8_t>(copy, [](const uint8_t* q) { delete[] q; }), size,
               what);
}

SafeTensors st_load(const std::string& path) {
  int fd = open_regular_file(path);  // a FIFO would block the open, a device never end
  struct stat sb = {};
  fstat(fd, &sb);
  size_t size = size_t(sb.st_size);
  if (size == 0) {
    ::close(fd);
    return parse(std::shared_ptr<const uint8_t>(new uint8_t[1], [](const uint8_t* q) { delete[] q; }),
                 0, path);
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  TOPK_CHECK(m != MAP_FAILED, "cannot map %s: %s", path.c_str(), std::strerror(errno));
  std::shared_ptr<const uint8_t> bytes(static_cast<const uint8_t*>(m),
                                       [size](const uint8_t* q) { ::munmap((void*)q, size); });
  return parse(bytes, size, path);
}

void st_to_f32(const StTensor& t, float* dst, int64_t n) {
  TOPK_CHECK(t.numel() == n, "tensor '%s': %lld elements, expected %lld", t.name.c_str(),
             (long long)t.numel(), (long long)n);
  TOPK_CHECK(t.dtype != DType::i32, "tensor '%s' is I32, expected a float dtype", t.name.c_str());
  if (n == 0) return;
  if (t.dtype == DType::f32) {
    std::memcpy(dst, t.data, size_t(n) * 4);
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    uint16_t h;
    std::memcpy(&h, t.data + 2 * i, 2);
    dst[i] = t.dtype == DType::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
  }
}

void st_save(const std::string& path, const std::vector<StWrite>& tensors,
             const std::map<std::string, std::string>& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t at = 0;
  for (const auto& t : tensors) {
    TOPK_CHECK(!h.contains(t.name), "st_save %s: duplicate tensor name '%s'", path.c_str(),
               t.name.c_str());
    uint64_t n = 1;
    for (int64_t s : t.shape) n *= uint64_t(s);
    uint64_t nb = n * dtype_size(t.dtype);
    h[t.name] = {{"dtype", st_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {at, at + nb}}};
    at += nb;
  }
  std::string hs = h.dump();
  while ((hs.size() + 8) % 8) hs += ' ';  // keep the data 8-byte aligned
  write_file_atomic(path, [&](std::FILE* f) {
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = uint8_t(uint64_t(hs.size()) >> (8 * i));
    bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(hs.data(), 1, hs.size(), f) == hs.size();
    std::vector<uint16_t> half;
    for (const auto& t : tensors) {
      int64_t n = 1;
      for (int64_t s : t.shape) n *= s;
      if (n == 0) continue;  // an empty tensor has no bytes (and may have no pointer)
      if (t.dtype == DType::f32 || t.dtype == DType::i32) {
        ok = ok && std::fwrite(t.src, 4, size_t(n), f) == size_t(n);
      } else {
        half.resize(size_t(n));
        const float* s = static_cast<const float*>(t.src);
        for (int64_t i = 0; i < n; i++)
          half[i] = t.dtype == DType::bf16 ? f32_to_bf16(s[i]) : f32_to_f16(s[i]);
        ok = ok && std::fwrite(half.data(), 2, size_t(n), f) == size_t(n);
      }
    }
    return ok;
  });
}

}  // namespace topk
