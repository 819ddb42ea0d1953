#include "model/tokenizer.h"

#include "topk/core.h"

namespace topk {

std::vector<int> tok_encode(const TokenizerConfig& t, const std::string& text, bool add_bos) {
  TOPK_CHECK(t.present, "this checkpoint has no topk byte tokenizer (no \"topk_tokenizer\" in its "
             "config.json); pass token ids instead of text");
  std::vector<int> ids;
  if (add_bos) ids.push_back(t.bos);
  for (unsigned char ch : text) ids.push_back(int(ch));
  return ids;
}

std::string tok_piece(const TokenizerConfig& t, int id) {
  return id >= 0 && id < 256 ? std::string(1, char(id)) : std::string();
}

std::string tok_decode(const TokenizerConfig& t, const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += tok_piece(t, id);
  return s;
}

}  // namespace topk
