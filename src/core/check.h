// Input validation shared by every reader of user input (command line, run files, config.json,
// policy strings, model files): strict numbers, range checks, regular files, memory budgets.
// Each raises topk::Error with a message that names the field, the value and the allowed range,
// e.g. "--max-new must be an integer in [0, 1073741824], got 'abc'".
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/json.h"

namespace topk {

// An interval of real numbers; open ends exclude the bound ("(0, 10]", "[0, 1)").
struct Range {
  double lo, hi;
  bool lo_open = false, hi_open = false;
  bool contains(double v) const;
  std::string str() const;
};

// Text -> number, strictly: the whole text is a base-10 integer (an optional '-', digits; no
// '+', spaces, hex, octal or fraction) within [lo, hi]. `what` names the field.
int64_t parse_int(const std::string& text, const std::string& what, int64_t lo, int64_t hi);
// A non-negative base-10 integer up to 2^64 - 1 (seeds).
uint64_t parse_u64(const std::string& text, const std::string& what);
// A finite decimal number (no nan, inf or hex floats) within `r`.
double parse_real(const std::string& text, const std::string& what, const Range& r);
// "1,2,3": every item an integer in [lo, hi]; an empty item ("1,,3") is an error.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what, int64_t lo,
                                    int64_t hi);

// JSON fields: j[key] when present and not null, else `dflt`. `what` names the file.
// Integers may be written as integral reals (1e5); 2.7 is an error.
int64_t json_int(const json& j, const char* key, const std::string& what, int64_t lo, int64_t hi,
                 int64_t dflt);
uint64_t json_u64(const json& j, const char* key, const std::string& what, uint64_t dflt);
double json_real(const json& j, const char* key, const std::string& what, const Range& r,
                 double dflt);
bool json_bool(const json& j, const char* key, const std::string& what, bool dflt);
std::string json_string(const json& j, const char* key, const std::string& what,
                        const std::string& dflt);

// Opens `path` for reading after checking that it is a regular file (a FIFO or a device would
// block or never end); returns the descriptor. The caller closes it.
int open_regular_file(const std::string& path);

// Memory: the machine's physical memory, and a check that `bytes` fit in it before allocating
// ("a model of 8.03e+09 parameters (fp32 weights): 32.1 GB needed, more than the 16.0 GB of
// memory here").
uint64_t memory_bytes();
void check_memory(double bytes, const std::string& what);

}  // namespace topk
