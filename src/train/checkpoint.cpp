#include "train/checkpoint.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/safetensors.h"

namespace topk {

static bool exists(const std::string& p) {
  struct stat sb;
  return stat(p.c_str(), &sb) == 0;
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  TOPK_CHECK(!ec, "cannot remove %s: %s", path.c_str(), ec.message().c_str());
}

void save_checkpoint(const std::string& dir, const Model& m, const AdamW& opt, const json& state) {
  std::string tmp = dir + ".tmp", old = dir + ".old";
  remove_tree(tmp);
  model_save(tmp, m);
  const int64_t n = m.numel;
  std::vector<float> w = model_host_weights(m), am(static_cast<size_t>(n)), av(static_cast<size_t>(n));
  copy(make_view(am.data(), DType::f32, {n}), opt.m);
  copy(make_view(av.data(), DType::f32, {n}), opt.v);
  st_save(tmp + "/optimizer.safetensors",
          {{"master_weights", DType::f32, {n}, w.data()},
           {"adam_m", DType::f32, {n}, am.data()},
           {"adam_v", DType::f32, {n}, av.data()}},
          {{"adam_t", std::to_string(opt.t)}});
  write_json_file(tmp + "/trainer_state.json", state);
  remove_tree(old);
  if (exists(dir))
    TOPK_CHECK(std::rename(dir.c_str(), old.c_str()) == 0, "cannot rename %s to %s: %s",
               dir.c_str(), old.c_str(), std::strerror(errno));
  TOPK_CHECK(std::rename(tmp.c_str(), dir.c_str()) == 0, "cannot rename %s to %s: %s", tmp.c_str(),
             dir.c_str(), std::strerror(errno));
  remove_tree(old);
}

bool find_checkpoint(const std::string& dir, std::string* found) {
  for (const std::string& d : {dir, dir + ".old"}) {
    if (exists(d + "/trainer_state.json") && exists(d + "/optimizer.safetensors")) {
      *found = d;
      return true;
    }
  }
  return false;
}

void load_checkpoint(const std::string& dir, Model& m, AdamW& opt, json& state, Device device) {
  m = model_create(load_config(dir));
  model_load_tokenizer(m, dir);
  SafeTensors st = st_load(dir + "/optimizer.safetensors");
  const int64_t n = m.numel;
  st_to_f32(st.get("master_weights", {n}), m.host(), n);
  opt = adamw_create(m);
  st_to_f32(st.get("adam_m", {n}), opt.m.ptr<float>(), n);
  st_to_f32(st.get("adam_v", {n}), opt.v.ptr<float>(), n);
  auto it = st.metadata.find("adam_t");
  TOPK_CHECK(it != st.metadata.end(), "%s/optimizer.safetensors: no adam_t in its metadata",
             dir.c_str());
  opt.t = std::stoll(it->second);
  state = read_json_file(dir + "/trainer_state.json");
  model_to(m, device);
  adamw_to(opt, device);
}

}  // namespace topk
