// The byte tokenizer: every UTF-8 byte is its own id (0..255); BOS, EOS and PAD follow.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"

namespace topk {

std::vector<int> tok_encode(const TokenizerConfig& t, const std::string& text, bool add_bos);
// Bytes of the ids below 256; special ids are dropped.
std::string tok_decode(const TokenizerConfig& t, const std::vector<int>& ids);
std::string tok_piece(const TokenizerConfig& t, int id);  // one id ("" for specials)

}  // namespace topk
